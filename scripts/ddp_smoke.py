"""2-process CPU DDP (gloo) run of the tiny demo with both monitors; used by tests/callbacks/test_ddp.py.

    python scripts/ddp_smoke.py OUT_DIR

Writes OUT_DIR/result_rank<R>.json per rank with the monitors' history and the logged XAI scalars, so the test can
check that rank 0 explained, every rank received the broadcast scalars, and nothing deadlocked.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from lit_xai.callbacks import ExplanationMonitor, ShortcutBudget, ShortcutMonitor
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.explainers import CRP
from lit_xai.models import ImageClassifier
from lit_xai.schedule import Schedule


def main(out: str) -> None:
    torch.set_num_threads(1)
    seed_everything(0)
    dm = SyntheticShortcutDataModule(num_train=128, num_val=64, num_test=0, image_size=32, batch_size=32)
    model = ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=list(dm.class_names))
    xai = ExplanationMonitor(explainers=("lrp", CRP(top_k=2), "gradcam"), probes=4, verbose=False)
    shortcut = ShortcutMonitor(
        budget=ShortcutBudget(audit_max_samples=64, pool_size=32, num_counterfactual=8, spray_samples=0), verbose=False
    )
    # a time budget no measurement fits: rank 0 alone keeps the account, and every rank must follow its decision (a
    # rank that measured while rank 0 postponed would wait for rank 0 in the broadcast until the timeout)
    thrifty = ExplanationMonitor(
        explainers=("lrp",), probes=2, verbose=False, tag="XAI_budget",
        every_n_epochs=Schedule(1, "even", time_budget=1e-6),
    )  # fmt: skip
    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=60))
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_epochs=2,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(out, name="ddp"),
        callbacks=[xai, shortcut, thrifty],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, dm)
    result = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "xai_history": [h["epoch"] for h in xai.history],
        "budget_history": [h["epoch"] for h in thrifty.history],
        "metrics": sorted(k for k in trainer.callback_metrics if k.startswith(("XAI_drift/", "XAI_shortcut/"))),
        "alerts": len(shortcut.alerts),
        "time_s": float(trainer.callback_metrics.get("XAI_drift/time_s", -1)),
        # the reliance pools, each rank having decoded half of them: identical to one process reading everything
        "pools": {
            pool.split: {"ids": pool.ids, "sum": float(pool.inputs.double().sum()), "labels": pool.labels.tolist()}
            for pool in (shortcut._pool, shortcut._train_pool)
            if pool is not None
        },
    }
    with open(os.path.join(out, f"result_rank{trainer.global_rank}.json"), "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv[1])

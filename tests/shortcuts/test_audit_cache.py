"""Audit at scale: shards merge into exactly the one-process audit, and the on-disk cache hits only when nothing that
the counts depend on has changed."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from _artifact_images import skin_images
from _dataset_trees import melanoma_folder
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Subset

from lit_xai.artifacts import audit as audit_mod
from lit_xai.artifacts import insert_ring
from lit_xai.artifacts.audit import (
    AuditCounts,
    audit_dataset,
    count_dataset,
    count_sample,
    dataset_files,
    dataset_fingerprint,
    eval_dataset,
    merge_counts,
    report_from_counts,
    sample_indices,
)
from lit_xai.shortcuts.audit import scan as audit_scan  # count_sample looks count_dataset up there

NAMES = ["benign", "melanoma"]


class _Items:
    """Map-style dataset: dict items (ring in 40 % of class 1, annotated), every 7th item unreadable."""

    def __init__(self, n: int = 60, fail_every: int = 7, annotate: bool = True, seed: int = 0) -> None:
        images = skin_images(n, size=32, seed=seed)
        self.targets = np.arange(n) % 2
        ringed = (self.targets == 1) & (np.arange(n) % 5 < 2)
        images[ringed] = insert_ring(images[ringed], torch.Generator().manual_seed(seed))[0]
        self.images, self.ringed, self.fail_every, self.annotate = images, ringed, fail_every, annotate

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict:
        if self.fail_every and i % self.fail_every == 3:
            raise OSError(f"cannot decode image {i}")
        item = {"image": self.images[i], "target": torch.tensor(int(self.targets[i])), "index": i}
        if self.annotate:
            item["artifact"] = bool(self.ringed[i])
        return item


def _kwargs(**extra) -> dict:
    return {"class_names": NAMES, "task": "binary", "detectors": ("ring", "dark_corners"), **extra}


@pytest.mark.parametrize("world", [2, 3])
def test_shards_merge_into_the_one_process_counts_and_report(world: int) -> None:
    data = _Items()
    whole = count_sample(data, **_kwargs())
    assert whole.n_failed == len([i for i in range(60) if i % 7 == 3]) and whole.artifacts["ring"]["n_with"] > 5
    parts = [count_sample(data, shard=(r, world), **_kwargs()) for r in range(world)]
    assert sum(p.n_images + p.n_failed for p in parts) == 60
    merged = merge_counts(parts)
    assert merged == whole  # counts, failure messages (in index order), annotations, thresholds
    assert report_from_counts(merged).to_dict() == report_from_counts(whole).to_dict()
    # the same through one flat tensor summed over "ranks" (what trainer.strategy.reduce(..., "sum") does)
    summed = sum(p.to_tensor(num_classes=2) for p in parts)
    via_tensor = parts[0].from_tensor(summed)
    assert via_tensor.to_dict() | {"failures": []} == whole.to_dict() | {"failures": []}
    # a subset audit shards the same subset
    sub = [count_sample(data, max_samples=30, seed=4, shard=(r, world), **_kwargs()) for r in range(world)]
    assert merge_counts(sub) == count_sample(data, max_samples=30, seed=4, **_kwargs())


def test_audit_dataset_unchanged_by_the_counts_route() -> None:
    # report_from_counts(count_dataset(...)) is audit_dataset; its statistics equal association_table's on the flags
    data = _Items(fail_every=0)
    items = [data[i] for i in range(len(data))]
    report = audit_dataset(items, **_kwargs())
    ring = report.artifacts["ring"]
    assert report.n_images == 60 and ring.agreement["precision"] >= 0.9 and ring.label_predictive
    direct = audit_mod.association_table(
        _ring_flags(items), data.targets, NAMES, "binary", name="ring", threshold=ring.threshold
    )
    assert report.to_dict()["artifacts"]["ring"] == audit_mod.to_jsonable(vars(direct) | {"agreement": ring.agreement})


def _ring_flags(items: list[dict]) -> np.ndarray:
    fn, t = audit_mod._resolve_detectors(("ring",), None)["ring"]
    scores, _ = fn(torch.stack([it["image"] for it in items]))
    return (scores >= t).numpy()


def test_merge_pads_inferred_classes_and_handles_missing_annotations() -> None:
    data = _Items(fail_every=0)
    items = [data[i] for i in range(len(data))]
    class0 = [it for it in items if int(it["target"]) == 0]
    # without class names a shard holding only class 0 counts one class; merging pads it
    a, b = count_dataset(class0[:10]), count_dataset(items)
    assert len(a.class_counts) == 1 and len(b.class_counts) == 2
    merged = merge_counts([a, b])
    assert merged.class_counts == [b.class_counts[0] + 10, b.class_counts[1]]
    # annotations count only when every shard has them
    plain = [{k: v for k, v in it.items() if k != "artifact"} for it in items[:10]]
    assert merge_counts([count_dataset(plain), b]).annotated is None
    assert merge_counts([count_dataset([]), b]).annotated == b.annotated  # an empty shard is neutral
    with pytest.raises(ValueError, match="different detectors or thresholds"):
        merge_counts([b, count_dataset(items, threshold=0.9)])
    with pytest.raises(ValueError, match="class names"):
        merge_counts([count_dataset(items, class_names=["x", "y"]), count_dataset(items, class_names=NAMES)])


def test_sample_indices_partition() -> None:
    for n, max_samples, world in ((10, None, 3), (1000, 97, 4), (3, None, 5)):
        whole = sample_indices(n, max_samples, seed=2)
        shards = [sample_indices(n, max_samples, seed=2, shard=(r, world)) for r in range(world)]
        assert sum(shards, []) == whole  # contiguous blocks in order: a partition
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="rank"):
        sample_indices(10, shard=(2, 2))


def test_counts_round_trip_json() -> None:
    counts = count_sample(_Items(), **_kwargs())
    assert AuditCounts.from_dict(counts.to_dict()) == counts


# ------------------------------------------------------------------------------------------------- cache
def _count_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = audit_scan.count_dataset

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(audit_scan, "count_dataset", counting)
    return calls


def test_cache_hits_only_for_the_same_data_and_settings(tmp_path, monkeypatch) -> None:
    calls = _count_calls(monkeypatch)
    data = _Items()
    first = count_sample(data, cache_dir=tmp_path, cache_key="items v1", **_kwargs())
    again = count_sample(data, cache_dir=tmp_path, cache_key="items v1", **_kwargs())
    assert len(calls) == 1 and again.from_cache and not first.from_cache and again == first
    # every setting the counts depend on is part of the key
    count_sample(data, cache_dir=tmp_path, cache_key="items v1", **_kwargs(threshold={"ring": 0.3}))
    count_sample(data, cache_dir=tmp_path, cache_key="items v1", max_samples=20, **_kwargs())
    count_sample(data, cache_dir=tmp_path, cache_key="items v1", shard=(0, 2), **_kwargs())
    count_sample(data, cache_dir=tmp_path, cache_key="items v1", **_kwargs(detectors=("ring",)))
    count_sample(data, cache_dir=tmp_path, cache_key="items v1", **_kwargs(denormalize=lambda x: x * 0.5))
    assert len(calls) == 6
    # changed pixels (same length, same targets): the item hash catches it
    changed = _Items()
    changed.images = changed.images.flip(-1)
    count_sample(changed, cache_dir=tmp_path, cache_key="items v1", **_kwargs())
    assert len(calls) == 7
    # a torn cache file is recomputed, not an error
    for path in tmp_path.glob("audit-*.json"):
        path.write_text("{not json")
    assert not count_sample(data, cache_dir=tmp_path, cache_key="items v1", **_kwargs()).from_cache and len(calls) == 8
    # another key is another entry; and a dataset without files is never cached without a key (no trusted identity)
    assert not count_sample(data, cache_dir=tmp_path, cache_key="items v2", **_kwargs()).from_cache
    for _ in range(2):
        assert not count_sample(data, cache_dir=tmp_path, **_kwargs()).from_cache
    assert len(calls) == 11


def test_file_datasets_are_keyed_by_names_sizes_and_times(tmp_path, monkeypatch) -> None:
    from lit_xai.datamodules import MelanomaFolderDataModule

    root = melanoma_folder(tmp_path / "data", per_class=8)
    dm = MelanomaFolderDataModule(str(root), image_size=24, val_fraction=0.25, test_fraction=0.0)
    dm.setup("fit")
    train = eval_dataset(dm.dataset("train"), dm)
    files = dataset_files(train)
    assert files and all(os.path.isfile(f) for f in files) and len(files) == len(train)
    assert dataset_files(Subset(train, [2, 0])) == [files[2], files[0]]
    kwargs = {"class_names": list(dm.class_names), "task": "binary", "denormalize": dm.denormalize}
    calls = _count_calls(monkeypatch)
    cache = tmp_path / "cache"
    count_sample(train, cache_dir=cache, **kwargs)
    assert count_sample(train, cache_dir=cache, **kwargs).from_cache and len(calls) == 1
    before = dataset_fingerprint(train, dm.denormalize)
    # touching a file that is not among the hashed sample items still invalidates: the file list is hashed
    sampled = set(sample_indices(len(train), 4, seed=1))
    other = next(i for i in range(len(train)) if i not in sampled)
    st = os.stat(files[other])
    os.utime(files[other], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after = dataset_fingerprint(train, dm.denormalize)
    assert after["files"] != before["files"] and after["items"] == before["items"]
    assert not count_sample(train, cache_dir=cache, **kwargs).from_cache and len(calls) == 2


class _CountingAudit(Callback):
    """The test's own shell: count the training split at fit start, sharded by rank, cached (as ShortcutMonitor
    will)."""

    def __init__(self, cache_dir: str) -> None:
        self.cache_dir, self.counts, self.seconds = cache_dir, None, 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dm = trainer.datamodule
        start = time.perf_counter()
        self.counts = count_sample(
            eval_dataset(dm.dataset("train"), dm), max_samples=64, cache_dir=self.cache_dir,
            shard=(trainer.global_rank, trainer.world_size), class_names=list(dm.class_names), task=str(dm.task),
            denormalize=dm.denormalize,
        )  # fmt: skip
        self.seconds = time.perf_counter() - start


class _Tiny(LightningModule):
    def __init__(self, side: int = 32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * side * side, 2))

    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(self.net(batch["image"]), batch["target"].long())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_second_fit_hits_the_cache(tmp_path) -> None:
    from lit_xai.datamodules import SyntheticShortcutDataModule

    runs = []
    for _ in range(2):
        dm = SyntheticShortcutDataModule(num_train=96, num_val=8, num_test=8, image_size=32, batch_size=32)
        cb = _CountingAudit(str(tmp_path / "cache"))
        trainer = Trainer(
            max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[cb], default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(_Tiny(), dm)
        runs.append(cb)
    assert not runs[0].counts.from_cache and runs[1].counts.from_cache
    assert runs[0].counts == runs[1].counts and runs[0].counts.n_images == 64
    ring = report_from_counts(runs[1].counts).artifacts["ring"]
    assert ring.count_by_class[0] == 0 and ring.count_by_class[1] > 0 and ring.agreement["recall"] > 0.8


def test_loader_batches_count_like_items() -> None:
    data = _Items(fail_every=0)
    items = [data[i] for i in range(len(data))]
    assert count_dataset(DataLoader(items, batch_size=16), **_kwargs()) == count_dataset(items, **_kwargs())


class _ShardedAudit(Callback):
    """Each rank counts its shard; the counts are summed through Lightning's strategy (a tensor ``reduce``) and,
    with the failure messages, gathered as objects (one ``broadcast`` per rank); every rank writes what it got."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        import json

        dm = trainer.datamodule
        rank, world = trainer.global_rank, trainer.world_size
        counts = count_sample(_Items(), shard=(rank, world), **_kwargs())
        summed = trainer.strategy.reduce(counts.to_tensor(num_classes=len(dm.class_names)), reduce_op="sum")
        parts = [trainer.strategy.broadcast(counts if r == rank else None, src=r) for r in range(world)]
        result = {
            "world": world, "own": counts.n_images + counts.n_failed,
            "reduced": counts.from_tensor(summed).to_dict(), "gathered": merge_counts(parts).to_dict(),
        }  # fmt: skip
        with open(os.path.join(self.out, f"rank{rank}.json"), "w") as fh:
            json.dump(result, fh)


@pytest.mark.slow
def test_two_ddp_ranks_count_what_one_process_counts(tmp_path) -> None:
    import json
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    from lit_xai.datamodules import SyntheticShortcutDataModule

    dm = SyntheticShortcutDataModule(num_train=32, num_val=8, num_test=8, image_size=16, batch_size=16)
    strategy = DDPStrategy(start_method="spawn", process_group_backend="gloo", timeout=timedelta(seconds=120))
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_epochs=1, limit_train_batches=1, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[_ShardedAudit(str(tmp_path))], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(_Tiny(side=16), dm)
    whole = count_sample(_Items(), **_kwargs())
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in results] == [2, 2] and sum(r["own"] for r in results) == 60
    for r in results:
        assert AuditCounts.from_dict(r["gathered"]) == whole  # messages too, in index order
        reduced = AuditCounts.from_dict(r["reduced"])
        assert reduced.to_dict() | {"failures": []} == whole.to_dict() | {"failures": []}
        assert report_from_counts(reduced).verdicts == report_from_counts(whole).verdicts


def test_generated_data_is_keyed_by_every_pixel(tmp_path, monkeypatch) -> None:
    """The synthetic splits name no files: their identity is a hash of all their pixels, so a control set of the same
    length and seed (no ring) never reads the shortcut set's counts, while the same set does."""
    from lit_xai.artifacts.audit import dataset_identity
    from lit_xai.datamodules import SyntheticShortcutDataModule

    calls = _count_calls(monkeypatch)

    def train(fraction: float):
        dm = SyntheticShortcutDataModule(
            num_train=48, num_val=8, num_test=8, image_size=32, ring_fraction_melanoma=fraction
        )
        dm.setup("fit")
        return eval_dataset(dm.dataset("train"), dm), dm

    kwargs = {"max_samples": 32, "cache_dir": tmp_path, "detectors": ("ring",), "task": "binary"}
    (shortcut, dm), (control, _) = train(0.6), train(0.0)
    assert dataset_identity(shortcut) != dataset_identity(control) and dataset_identity(shortcut).startswith("pixels-")
    first = count_sample(shortcut, denormalize=dm.denormalize, **kwargs)
    assert count_sample(train(0.6)[0], denormalize=dm.denormalize, **kwargs).from_cache and len(calls) == 1
    other = count_sample(control, denormalize=dm.denormalize, **kwargs)
    assert not other.from_cache and len(calls) == 2 and other != first

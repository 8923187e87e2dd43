"""``ImageClassifier``: one LightningModule for every registered architecture and task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Optional, Union

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    AUROC,
    Accuracy,
    F1Score,
)

from ..contracts import TASKS, check_task, probabilities, split_batch
from .architectures import build_architecture, get_spec

__all__ = ["ImageClassifier", "TASKS", "split_batch", "check_task"]

Task = Literal["binary", "multiclass", "multilabel"]


class ImageClassifier(LightningModule):
    """Image classifier over the architecture registry, for binary, multi-class and multi-label tasks.

    Args:
        architecture: a key of :data:`lit_xai.models.ARCHITECTURES` (e.g. ``"resnet50"``, ``"tiny_resnet"``).
        num_classes: number of logits; binary tasks use 2 (softmax, class 1 = positive).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"`` (sigmoid per class; NaN targets are ignored).
        class_names: names for per-class metrics (``val/f1/<name>``, multi-class and multi-label tasks; a binary
            task logs one ``val/auroc``, ``val/acc`` and ``val/f1`` of the positive class); defaults to
            ``class_<i>``.
        lr: learning rate. weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"`` (momentum 0.9, nesterov).
        scheduler: ``"cosine"`` (per epoch to ``max_epochs``), ``"step"`` (x0.1 every ``step_size`` epochs),
            ``"plateau"`` (on ``val/loss``) or ``"none"``.
        weights_path: optional local state dict to start from (nothing is downloaded).
        class_weights: per-class loss weights (binary/multiclass cross-entropy).
        pos_weight: positive-class weight: a float for binary, one per class for multilabel.
        label_smoothing: cross-entropy label smoothing.

    Example:
        >>> model = ImageClassifier("tiny_resnet", num_classes=3, task="multiclass")
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        architecture: str = "tiny_resnet",
        num_classes: int = 2,
        task: Task = "binary",
        class_names: Optional[Sequence[str]] = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        scheduler: Literal["cosine", "step", "plateau", "none"] = "cosine",
        step_size: int = 10,
        weights_path: Optional[str] = None,
        class_weights: Optional[list[float]] = None,
        pos_weight: Optional[Union[float, list[float]]] = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        get_spec(architecture)  # fail early with the list of valid names
        check_task(task, num_classes)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} entries but num_classes={num_classes}")
        if optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: adamw, adam, sgd")
        if scheduler not in ("cosine", "step", "plateau", "none"):
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of: cosine, step, plateau, none")
        self.save_hyperparameters()
        self.architecture = architecture
        self.num_classes = num_classes
        self.task = task
        self.class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        self.net = build_architecture(architecture, num_classes, weights_path=weights_path)
        self._build_loss(class_weights, pos_weight)
        self.val_metrics = self._metrics("val")
        self.test_metrics = self._metrics("test")

    # ------------------------------------------------------------------ setup helpers
    def _build_loss(
        self, class_weights: Optional[list[float]], pos_weight: Optional[Union[float, list[float]]]
    ) -> None:
        weight = None
        if class_weights is not None:
            if len(class_weights) != self.num_classes:
                raise ValueError(f"class_weights needs {self.num_classes} values, got {len(class_weights)}")
            weight = torch.tensor(class_weights, dtype=torch.float32)
        pw = None
        if pos_weight is not None:
            if self.task == "binary":
                if not isinstance(pos_weight, (int, float)):
                    raise ValueError("for task='binary', pos_weight is one float (weight of the positive class)")
                base = weight if weight is not None else torch.ones(2)
                weight = base * torch.tensor([1.0, float(pos_weight)])
            elif self.task == "multilabel":
                values = [float(pos_weight)] * self.num_classes if isinstance(pos_weight, (int, float)) else pos_weight
                if len(values) != self.num_classes:
                    raise ValueError(f"pos_weight needs {self.num_classes} values, got {len(values)}")
                pw = torch.tensor(values, dtype=torch.float32)
            else:
                raise ValueError("pos_weight applies to binary and multilabel tasks; use class_weights for multiclass")
        self.register_buffer("class_weight", weight, persistent=False)
        self.register_buffer("pos_weight", pw, persistent=False)

    def _metrics(self, stage: str) -> nn.ModuleDict:
        # Binary: one AUROC, accuracy and F1 of the positive class (P(class 1)); per-class values would only repeat
        # them (both classes of a two-way softmax have the same AUROC). Multi-class / multi-label: macro summaries
        # plus one value per class.
        if self.task == "binary":
            summary = MetricCollection(
                {"auroc": AUROC(task="binary"), "acc": Accuracy(task="binary"), "f1": F1Score(task="binary")},
                prefix=f"{stage}/",
            )
            return nn.ModuleDict({"summary": summary})
        k = self.num_classes
        if self.task == "multilabel":
            common: dict[str, Any] = {"task": "multilabel", "num_labels": k, "ignore_index": -1}
        else:
            common = {"task": "multiclass", "num_classes": k}
        summary = MetricCollection(
            {
                "auroc": AUROC(**common, average="macro"),
                "acc": Accuracy(**common, average="micro"),
                "f1": F1Score(**common, average="macro"),
            },
            prefix=f"{stage}/",
        )
        per_class = MetricCollection({"auroc": AUROC(**common, average=None), "f1": F1Score(**common, average=None)})
        return nn.ModuleDict({"summary": summary, "per_class": per_class})

    # ------------------------------------------------------------------ forward / loss
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax for binary/multiclass, sigmoid for multilabel."""
        return probabilities(logits, self.task)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.task == "multilabel":
            targets = targets.float()
            valid = ~torch.isnan(targets) & (targets >= 0)
            per = F.binary_cross_entropy_with_logits(
                logits,
                torch.where(valid, targets, torch.zeros_like(targets)),
                pos_weight=self.pos_weight,
                reduction="none",
            )
            return (per * valid).sum() / valid.sum().clamp_min(1)
        return F.cross_entropy(
            logits, targets.long(), weight=self.class_weight, label_smoothing=self.hparams.label_smoothing
        )

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = split_batch(batch)
        logits = self(x)
        loss = self.loss(logits, y)
        bs = x.shape[0]
        self.log(
            f"{stage}/loss", loss, prog_bar=stage != "train", batch_size=bs, on_epoch=True, on_step=stage == "train"
        )
        if stage == "train":
            return loss
        probs = self.probabilities(logits.detach().float())
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        if self.task == "multilabel":
            target = torch.nan_to_num(y.float(), nan=-1.0).long()
        else:
            target = y.long()
        if "per_class" in metrics:
            metrics["summary"].update(probs, target)
            metrics["per_class"].update(probs, target)
        else:
            metrics["summary"].update(probs[:, 1], target)  # binary: P(class 1)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        self.log_dict(metrics["summary"].compute(), prog_bar=True)
        metrics["summary"].reset()
        if "per_class" in metrics:
            for name, values in metrics["per_class"].compute().items():
                for cls, value in zip(self.class_names, values):
                    self.log(f"{stage}/{name}/{cls}", value)
            metrics["per_class"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, _ = split_batch(batch) if not isinstance(batch, torch.Tensor) else (batch, None)
        return self.probabilities(self(x))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, nesterov=True, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "cosine":
            t_max = max(1, int(self.trainer.max_epochs or 1)) if self._trainer is not None else 10
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=0.1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss"}}

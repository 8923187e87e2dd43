"""CUDA: every explainer agrees with the CPU, the monitors run under mixed precision and in the background, never
change training, and leave nothing on the GPU in what they log or checkpoint.

Marked ``cuda``: skipped (and counted as skipped) where ``torch.cuda.is_available()`` is false (tests/conftest.py);
``python -m pytest -m cuda`` runs only these. Tiny models at 32 px, a few seconds each on a GPU.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from lit_xai.callbacks import ExplanationMonitor, ShortcutMonitor
from lit_xai.callbacks.base import preserve_rng
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.explainers import EXPLAINERS, Concepts, build_explainer
from lit_xai.models import ImageClassifier
from lit_xai.models.architectures import build_architecture

pytestmark = pytest.mark.cuda

#: explainers that need another architecture than tiny_resnet (every other registered one runs on it)
ARCHITECTURE_FOR = {"attention_gradcam": "tiny_resnet_attention"}
PRECISIONS = ("16-mixed", "bf16-mixed")
NAMES = ["benign", "melanoma"]


@pytest.fixture
def exact_cuda():
    """fp32 matmuls and convolutions without TF32, deterministic cuDNN (restored afterwards)."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
    torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])


class CaptureLogger(Logger):
    """Records everything logged through Lightning's logger API (what the monitors' scalars go through)."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[dict[str, Any], int | None]] = []

    @property
    def name(self) -> str:
        return "capture"

    @property
    def version(self) -> int:
        return 0

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))


def off_cpu(obj: Any, path: str = "") -> list[str]:
    """Paths of every tensor in ``obj`` (nested containers, dataclass-like objects) that is not on the CPU."""
    if isinstance(obj, torch.Tensor):
        return [] if obj.device.type == "cpu" else [f"{path} on {obj.device}"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in off_cpu(v, f"{path}.{k}")]
    if isinstance(obj, (list, tuple, set)):
        return [p for i, v in enumerate(obj) for p in off_cpu(v, f"{path}[{i}]")]
    if hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)):
        return [p for k, v in vars(obj).items() for p in off_cpu(v, f"{path}.{k}")]
    return []


def tiny_dm() -> SyntheticShortcutDataModule:
    return SyntheticShortcutDataModule(num_train=64, num_val=32, num_test=16, image_size=32, batch_size=32, seed=0)


def tiny_model() -> ImageClassifier:
    return ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=NAMES)


def quality_monitor() -> Any:
    from lit_xai.callbacks import ExplanationQualityMonitor

    return ExplanationQualityMonitor(explainers=("lrp", "gradcam"), every_n_epochs=1)


MONITORS = {
    "explanation": lambda: ExplanationMonitor(explainers=("lrp", "crp", "gradcam"), every_n_epochs=1),
    "shortcut": lambda: ShortcutMonitor(detectors=("ring",), every_n_epochs=1),
    "quality": quality_monitor,
}


def fit(tmp_path, callbacks: list, precision: str = "32-true", epochs: int = 2, **kw: Any) -> tuple[Trainer, Any]:
    seed_everything(0)
    model = tiny_model()
    capture = CaptureLogger()
    trainer = Trainer(
        accelerator="gpu",
        devices=1,
        precision=precision,
        max_epochs=epochs,
        num_sanity_val_steps=0,
        logger=[TensorBoardLogger(str(tmp_path), name="run", default_hp_metric=False), capture],
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        **kw,
    )
    trainer.fit(model, tiny_dm())
    return trainer, capture


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in trainer.lightning_module.state_dict().items()}


def assert_nothing_left_on_the_gpu(trainer: Trainer, capture: CaptureLogger, monitors: list, tmp_path) -> None:
    logged = [(name, value) for metrics, _ in capture.metrics for name, value in metrics.items()]
    assert logged, "nothing was logged"
    bad = [f"{name}: {value.device}" for name, value in logged if isinstance(value, torch.Tensor) and value.is_cuda]
    assert not bad, f"logged CUDA tensors: {bad[:5]}"
    assert not [k for k, v in trainer.callback_metrics.items() if v.is_cuda and not k.startswith(("train", "val"))]
    for mon in monitors:
        assert not off_cpu(mon.state_dict(), type(mon).__name__), off_cpu(mon.state_dict(), type(mon).__name__)[:5]
    # the checkpoint's callback states load on a CPU-only machine (no CUDA tensor inside; loaded without
    # map_location, so tensors come back on the device they were saved from)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(str(path))
    ckpt = torch.load(str(path), weights_only=False)
    assert not off_cpu(ckpt.get("callbacks", {}), "callbacks")
    no_hooks = all(not m._forward_hooks and not m._backward_hooks for m in trainer.lightning_module.modules())
    assert no_hooks, "a monitor left a hook on the model"
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in trainer.lightning_module.parameters())


# ------------------------------------------------------------------------------------------------- explainers
@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_explainer_on_cuda_equals_cpu(name: str, exact_cuda) -> None:
    torch.manual_seed(0)
    net = build_architecture(ARCHITECTURE_FOR.get(name, "tiny_resnet"), num_classes=3).eval()
    images = torch.rand(4, 3, 32, 32)
    targets = torch.tensor([0, 1, 2, 1])
    explainer = build_explainer(name)
    on_cpu = explainer(net, images, targets)
    gpu_net = copy.deepcopy(net).cuda()
    on_gpu = explainer(gpu_net, images.cuda(), targets.cuda())
    # the monitors' pattern: probes stay on the CPU, the model is on the GPU -> result on the images' device
    mixed = explainer(gpu_net, images, targets)
    if isinstance(on_cpu, Concepts):
        assert on_gpu.maps.device.type == "cuda" and mixed.maps.device.type == "cpu"
        same = (on_gpu.channels.cpu() == on_cpu.channels).all(1)  # near-ties may reorder a concept: compare the rest
        assert same.float().mean() >= 0.5, (on_gpu.channels, on_cpu.channels)
        got, want, other = on_gpu.maps.cpu()[same], on_cpu.maps[same], mixed.maps[same]
    else:
        assert on_gpu.device.type == "cuda" and mixed.device.type == "cpu"
        got, want, other = on_gpu.cpu(), on_cpu, mixed
    assert got.dtype == want.dtype == torch.float32
    scale = want.abs().amax().clamp_min(1e-12)
    torch.testing.assert_close(got / scale, want / scale, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(other / scale, want / scale, rtol=1e-3, atol=1e-4)
    assert next(gpu_net.parameters()).device.type == "cuda" and not gpu_net.training


def test_preserve_rng_restores_the_cuda_generator() -> None:
    torch.cuda.manual_seed(3)
    torch.randn(1, device="cuda")  # CUDA initialised, generator moved on
    expected = torch.randn(4, device="cuda", generator=None)
    torch.cuda.manual_seed(3)
    torch.randn(1, device="cuda")
    with preserve_rng():
        torch.randn(1000, device="cuda")
        torch.rand(10)
    assert torch.equal(torch.randn(4, device="cuda"), expected)


# ------------------------------------------------------------------------------------------------- monitors
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", sorted(MONITORS))
def test_monitor_under_mixed_precision_on_gpu(kind: str, precision: str, tmp_path) -> None:
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    mon = MONITORS[kind]()
    trainer, capture = fit(tmp_path, [mon], precision=precision)
    assert trainer.state.finished and trainer.current_epoch == 2
    names = {name for metrics, _ in capture.metrics for name in metrics}
    prefix = {"explanation": "XAI_drift/", "shortcut": "XAI_shortcut/", "quality": "quality/"}[kind]
    assert any(n.startswith(prefix) for n in names), sorted(names)[:20]
    values = [float(v) for metrics, _ in capture.metrics for n, v in metrics.items() if n.startswith(prefix)]
    assert any(math.isfinite(v) for v in values), "no finite scalar from the monitor"
    assert_nothing_left_on_the_gpu(trainer, capture, [mon], tmp_path)


def test_all_monitors_leave_nothing_on_the_gpu(tmp_path) -> None:
    monitors = [make() for make in MONITORS.values()]
    trainer, capture = fit(tmp_path, monitors)
    assert_nothing_left_on_the_gpu(trainer, capture, monitors, tmp_path)
    # TensorBoard received the pictures (rendered from CPU copies)
    assert list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("kind", ["explanation", "shortcut"])
def test_asynchronous_on_cuda_matches_synchronous(kind: str, tmp_path, exact_cuda) -> None:
    def make(asynchronous: bool) -> Any:
        if kind == "explanation":
            return ExplanationMonitor(explainers=("lrp",), every_n_epochs=1, asynchronous=asynchronous)
        return ShortcutMonitor(detectors=("ring",), every_n_epochs=1, asynchronous=asynchronous)

    sync, async_ = make(False), make(True)
    t_sync, _ = fit(tmp_path / "sync", [sync])
    t_async, capture = fit(tmp_path / "async", [async_])
    assert async_._background.pending == 0  # fit end waited for the last job
    assert [h["epoch"] for h in async_.history] == [h["epoch"] for h in sync.history]
    for a, s in zip(async_.history, sync.history):
        for key, value in s.items():
            if key.endswith("time_s") or not isinstance(value, float) or key in ("epoch", "step"):
                continue
            assert a[key] == pytest.approx(value, rel=1e-3, abs=1e-5, nan_ok=True), key
    assert_nothing_left_on_the_gpu(t_async, capture, [async_], tmp_path)


def test_monitors_leave_training_bit_identical_on_the_gpu(tmp_path, exact_cuda, monkeypatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    plain = weights(fit(tmp_path / "a", [], deterministic="warn")[0])
    again = weights(fit(tmp_path / "b", [], deterministic="warn")[0])
    if any(not torch.equal(plain[k], again[k]) for k in plain):
        pytest.skip("training alone is not bit-reproducible on this GPU (non-deterministic kernels)")
    monitors = [make() for make in MONITORS.values()]
    watched = weights(fit(tmp_path / "c", monitors, deterministic="warn")[0])
    changed = [k for k in plain if not torch.equal(plain[k], watched[k])]
    assert not changed, f"the monitors changed training: {changed[:5]}"


# ------------------------------------------------------------------------------------------------- pure functions
def test_pure_measures_accept_cuda_tensors() -> None:
    """The public measures take heatmaps wherever the caller computed them (tied values exercise the rank code)."""
    from lit_xai.artifacts import artifact_cluster, relevance_in_mask, spray
    from lit_xai.metrics import spearman, ssim, topk_iou

    gen = torch.Generator().manual_seed(0)
    a = torch.zeros(3, 16, 16)
    a[:, 4:9, 4:9] = torch.rand(3, 5, 5, generator=gen)  # mostly zeros: ties
    b = a.roll(1, -1) + 0.1 * (torch.rand(3, 16, 16, generator=gen) > 0.8)
    for measure in (spearman, ssim, topk_iou):
        torch.testing.assert_close(measure(a.cuda(), b.cuda()).cpu(), measure(a, b), rtol=1e-4, atol=1e-5)
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, :8] = True
    torch.testing.assert_close(relevance_in_mask(a.cuda(), masks.cuda()).cpu(), relevance_in_mask(a, masks))
    maps = torch.zeros(24, 16, 16)
    maps[:18, 6:10, 6:10] = 1.0
    maps[18:, :3, :3] = 1.0
    maps += 0.01 * torch.rand(24, 16, 16, generator=gen)
    masks = torch.zeros(24, 16, 16, dtype=torch.bool)
    masks[:, :4, :4] = True
    on_cpu = artifact_cluster(spray(maps, n_neighbors=5), maps, masks)
    on_gpu = artifact_cluster(spray(maps.cuda(), n_neighbors=5), maps.cuda(), masks.cuda())
    assert on_gpu.flagged == on_cpu.flagged and on_gpu.cluster == on_cpu.cluster

"""Bad input (issue 33), the second probe: dtypes, layouts, sizes, degenerate images, odd targets, models that change
state in forward or train mode, odd validation sets. Each case: the correct result or a clear error."""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import pytest
import torch
from _tolerance import float64_twin, rounding_atol
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lit_xai.callbacks import ExplanationMonitor, Pictures
from lit_xai.explainers import CRP, LRP, GradCAM
from lit_xai.models.architectures import build_architecture


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("tiny_resnet", num_classes=3).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


T = torch.tensor([0, 2])


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-3, rtol: float = 1e-2) -> None:
    torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=rtol)


# ---------------------------------------------------------------------------------------------------- dtypes, layouts
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("make", [LRP, GradCAM], ids=["lrp", "gradcam"])
def test_other_float_dtypes_give_the_float32_maps(net, x, dtype, make):
    # the explained copy runs in float32; the input's rounding to dtype is all that differs
    rounded = x.to(dtype)
    out = make()(net, rounded, T)
    assert out.dtype == torch.float32
    close(out, make()(net, rounded.float(), T), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["non_contiguous", "channels_last"])
@pytest.mark.parametrize("make", [LRP, GradCAM, lambda: CRP(top_k=2)], ids=["lrp", "gradcam", "crp"])
def test_memory_layouts_give_the_same_maps(net, x, layout, make):
    y = (
        x.transpose(2, 3).contiguous().transpose(2, 3)
        if layout == "non_contiguous"
        else x.contiguous(memory_format=torch.channels_last)
    )
    assert not y.is_contiguous()
    a, b = make()(net, y, T), make()(net, x, T)
    close(a.maps if hasattr(a, "maps") else a, b.maps if hasattr(b, "maps") else b, atol=1e-5, rtol=1e-4)


def test_half_precision_model_is_explained_in_float32_and_left_as_it_was(net, x):
    half = build_architecture("tiny_resnet", num_classes=3).eval()
    half.load_state_dict(net.state_dict())
    half.half()
    out = LRP()(half, x, T)
    assert out.dtype == torch.float32 and bool(out.isfinite().all())
    assert all(p.dtype == torch.float16 for p in half.parameters())
    ref = LRP()(half.float(), x, T)  # the same float32 weights: equal up to this run's float32 rounding
    close(out, ref, atol=rounding_atol(ref, LRP()(float64_twin(half), x.double(), T)), rtol=0)


# ---------------------------------------------------------------------------------------------------- sizes, content
def test_one_image_equals_its_row_of_a_batch(net, x):
    close(LRP()(net, x[:1], 0), LRP()(net, x, torch.tensor([0, 0]))[:1], atol=1e-5, rtol=1e-4)


def test_huge_image_gives_a_finite_map_at_input_size(net):
    cam = GradCAM()(net, torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)), 0)
    assert cam.shape == (1, 512, 512) and bool(cam.isfinite().all())


def test_tiny_image_of_four_pixels_is_explained(net):
    maps = LRP()(net, torch.rand(2, 3, 4, 4), T)
    assert maps.shape == (2, 4, 4) and bool(maps.isfinite().all())


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_zero_variance_image_gives_finite_maps_and_a_judged_check(net, value):
    image = torch.full((1, 3, 32, 32), value)
    lrp = LRP()
    maps = lrp(net, image, 0)
    assert bool(maps.isfinite().all()) and lrp.last_check.all_ok
    assert bool(GradCAM()(net, image, 0).isfinite().all())


def test_gradcam_normalised_constant_map_is_zero_not_nan(net):
    cam = GradCAM(normalize=True)(net, torch.zeros(1, 3, 32, 32), 0)
    assert bool((cam == 0).all())


def test_huge_pixel_values_never_pass_as_conserved_when_not_finite(net, x):
    lrp = LRP()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = lrp(net, x * 1e30, T)
    finite = maps.flatten(1).isfinite().all(1)
    assert bool((lrp.last_check.ok <= finite).all())  # a non-finite map is never "ok"


# ---------------------------------------------------------------------------------------------------- input tensors
def test_input_that_requires_grad_is_explained_and_keeps_no_grad(net, x):
    y = x.clone().requires_grad_(True)
    close(LRP()(net, y, T), LRP()(net, x, T), atol=0, rtol=0)
    assert y.grad is None


def test_inference_mode_tensor_is_explained(net, x):
    with torch.inference_mode():
        y = x.clone()
    close(LRP()(net, y, T), LRP()(net, x, T), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("targets", [np.array([0, 2]), [0, 2], (0, 2), torch.tensor([0, 2], dtype=torch.int32)])
def test_numpy_list_tuple_and_int32_targets_equal_long_tensor_targets(net, x, targets):
    close(GradCAM()(net, x, targets), GradCAM()(net, x, T), atol=0, rtol=0)


def test_bool_targets_are_class_zero_and_one(net, x):
    close(GradCAM()(net, x, torch.tensor([False, True])), GradCAM()(net, x, torch.tensor([0, 1])), atol=0, rtol=0)


def test_nan_target_is_refused(net, x):
    with pytest.raises(ValueError, match="whole class indices"):
        LRP()(net, x, torch.tensor([0.0, float("nan")]))


@pytest.mark.parametrize("targets", [torch.tensor([[0], [1]]), torch.tensor([0, 1, 2])])
def test_targets_of_the_wrong_shape_are_named(net, x, targets):
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        GradCAM()(net, x, targets)


# ---------------------------------------------------------------------------------------------------- model state
@pytest.mark.parametrize("copy_model", [True, False])
def test_model_in_train_mode_stays_in_train_mode_with_its_batchnorm_statistics(x, copy_model):
    torch.manual_seed(0)
    model = build_architecture("tiny_resnet", num_classes=3).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    LRP(copy_model=copy_model)(model, x, T)
    GradCAM(copy_model=copy_model)(model, x, T)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


class Counting(torch.nn.Module):
    """Buffers its forward changes: a call counter and a running input mean."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("ema", torch.zeros(3))
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        self.calls += 1
        self.ema.mul_(0.9).add_(0.1 * x.detach().mean((0, 2, 3)))
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("make", [lambda: GradCAM(layer="conv", copy_model=False), lambda: LRP(canonizers=[],
                                  copy_model=False)], ids=["gradcam", "lrp"])  # fmt: skip
def test_buffers_changed_in_forward_are_restored_when_explaining_in_place(x, make):
    # explaining in place used to leave the counter at 1-3 and the running mean moved
    torch.manual_seed(0)
    model = Counting()
    ema = model.ema
    make()(model, x, T)
    assert int(model.calls) == 0 and bool((model.ema == 0).all()) and model.ema is ema


# ---------------------------------------------------------------------------------------------------- validation sets
class Plain(LightningModule):
    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(8, num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1].long())

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit_with(val: TensorDataset, num_classes: int = 2, **monitor_args) -> ExplanationMonitor:
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.rand(16, 3, 16, 16, generator=g), torch.arange(16) % num_classes)
    args = dict(explainers=("lrp", "gradcam"), probes=3, verbose=False, pictures=Pictures(tile=32))
    mon = ExplanationMonitor(**(args | monitor_args))
    trainer = Trainer(
        default_root_dir=tempfile.mkdtemp(), logger=False, callbacks=[mon], max_epochs=1, limit_train_batches=2,
        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(Plain(num_classes), DataLoader(train, batch_size=8), DataLoader(val, batch_size=8))
    return mon


def test_a_class_missing_from_the_validation_set_is_named(tmp_path):
    g = torch.Generator().manual_seed(1)
    val = TensorDataset(torch.rand(8, 3, 16, 16, generator=g), torch.arange(8) % 2)  # class 2 never occurs
    with pytest.warns(UserWarning, match="no probe of class '2'"):
        mon = fit_with(val, num_classes=3)
    assert sorted(set(mon.probes.targets.tolist())) == [0, 1] and len(mon.history) == 2


def test_an_empty_validation_set_is_a_clear_error():
    val = TensorDataset(torch.rand(0, 3, 16, 16), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="validation dataset is empty"):
        fit_with(val)


def test_a_validation_set_of_one_image_is_explained():
    mon = fit_with(TensorDataset(torch.rand(1, 3, 16, 16), torch.ones(1, dtype=torch.long)))
    assert mon.probes.ids == [0] and [h["epoch"] for h in mon.history] == [-1, 0]


def test_float_labels_in_the_validation_set_are_read_as_classes():
    g = torch.Generator().manual_seed(1)
    mon = fit_with(TensorDataset(torch.rand(8, 3, 16, 16, generator=g), (torch.arange(8) % 2).float()), probes=4)
    assert sorted(mon.probes.targets.tolist()) == [0, 0, 1, 1] and mon.contract.task == "binary"


def test_zero_probes_are_refused_at_construction():
    with pytest.raises(ValueError, match="num_probes must be >= 1"):
        ExplanationMonitor(probes=0)


# ---------------------------------------------------------------------------------------------------- audit
def test_audit_of_raw_uint8_pixels_is_a_clear_error():
    from lit_xai.artifacts import audit_dataset

    items = [((torch.rand(3, 16, 16) * 255).to(torch.uint8), i % 2) for i in range(6)]
    with pytest.raises(ValueError, match=r"must be in \[0, 1\].*denormalize"):
        audit_dataset(items, class_names=["a", "b"])


@pytest.mark.parametrize("channels", [1, 4])
def test_audit_counts_grey_and_four_channel_images(channels):
    from lit_xai.artifacts import audit_dataset

    items = [(torch.rand(channels, 16, 16), i % 2) for i in range(6)]
    report = audit_dataset(items, class_names=["a", "b"])
    assert (report.n_images, report.n_failed) == (6, 0)

"""The explainer contract, checked for every explainer: shapes, no trace on the caller's model (also on errors),
grad modes, and flat memory.

"No trace" means: bit-identical parameters and buffers, ``.grad`` and ``requires_grad`` as before, every module's
``training`` flag as before, and no forward/backward hooks left — in both the copying (default) and the in-place
(``copy_model=False``) modes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import inspect
import os
import weakref
from collections.abc import Callable

import pytest
import torch
from torch import nn

import lit_xai.explainers.crp as crp_module
from lit_xai.explainers import CRP, EXPLAINERS, Concepts, Explainer, GradCAM
from lit_xai.models.architectures import ARCHITECTURES, build_architecture, get_spec

N, SIZE, CLASSES = 2, 32, 3
#: every registered explainer runs on this network: a narrow ResNet with a channel-attention gate (the attention
#: explainers need the gate, the others ignore it)
ARCH = "tiny_resnet_attention"
#: test-only settings of registered explainers (fewer concepts keep CRP fast); the rest run at their defaults
SETTINGS: dict[str, dict] = {"crp": {"top_k": 3}}
#: extra cases beyond the registry: name -> (registered explainer, settings)
EXTRA: dict[str, tuple[str, dict]] = {"crp_in_branch": ("crp", {"layer": "layer4.0.conv2", "top_k": 2})}


def _make(name: str, settings: dict) -> Callable[..., Explainer]:
    cls = EXPLAINERS[name]

    def factory(copy_model: bool, **overrides) -> Explainer:
        kwargs = {**settings, **overrides}
        if "copy_model" in inspect.signature(cls).parameters:
            return cls(copy_model=copy_model, **kwargs)
        explainer = cls(**kwargs)
        explainer.copy_model = copy_model
        return explainer

    return factory


#: name -> factory(copy_model, **overrides); every registered explainer, so a new one is tested with no extra code
FACTORIES: dict[str, Callable[..., Explainer]] = {
    **{name: _make(name, SETTINGS.get(name, {})) for name in sorted(EXPLAINERS)},
    **{name: _make(base, settings) for name, (base, settings) in EXTRA.items()},
}
NAMES = list(FACTORIES)


def expected_shapes(explainer: Explainer) -> tuple:
    if explainer.kind == "concept":
        k = explainer.top_k  # type: ignore[attr-defined]
        return ((N, k, SIZE, SIZE), (N, k))
    return ((N, SIZE, SIZE),)


def test_every_registered_explainer_is_covered():
    assert set(EXPLAINERS) <= set(NAMES)


pytestmark = pytest.mark.usefixtures("single_thread")


def training_model(arch: str) -> nn.Module:
    """A model mid-training: train mode with one BatchNorm frozen in eval, mixed requires_grad, filled .grad."""
    torch.manual_seed(0)
    net = build_architecture(arch, num_classes=CLASSES)
    net.train()
    net.layer2[0].bn1.eval()
    net.layer1.requires_grad_(False)
    with torch.no_grad():
        net(torch.randn(4, 3, SIZE, SIZE))  # non-trivial running statistics
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    return net


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()},
        "grad": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "param_ids": {n: id(p) for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        },
        "modules": [n for n, _ in model.named_modules()],
    }


def assert_untouched(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"], "modules were added or removed (canonizer left behind?)"
    assert after["param_ids"] == before["param_ids"], "parameters were replaced"
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), f"{k} changed"
    for n, g in before["grad"].items():
        assert (g is None and after["grad"][n] is None) or torch.equal(g, after["grad"][n]), f"{n}.grad changed"
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert all(v == (0, 0, 0) for v in after["hooks"].values()), "hooks left on the model"


def run(explainer: Callable, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = explainer(model, x, t)
    if isinstance(out, Concepts):
        return (out.maps, out.channels)
    return out if isinstance(out, tuple) else (out,)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(N, 3, SIZE, SIZE), torch.tensor([0, 2])


@pytest.mark.parametrize("copy_model", [True, False], ids=["copy", "in_place"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_no_trace(name, copy_model):
    factory = FACTORIES[name]
    model = training_model(ARCH)
    x, t = inputs()
    before = snapshot(model)
    explainer = factory(copy_model)
    out = run(explainer, model, x, t)
    assert tuple(o.shape for o in out) == expected_shapes(explainer)
    assert torch.isfinite(out[0]).all() and out[0].abs().sum() > 0
    assert not out[0].requires_grad
    # an explainer declaring non-negative maps delivers them (renderers choose a one-sided colour scale from it;
    # signed maps may happen to be non-negative, e.g. CRP through ZPlus rules)
    assert explainer.signed or bool((out[0] >= 0).all())
    assert_untouched(before, model)
    # the explanation describes the eval-mode model, whatever mode the caller's model is in
    eval_model = training_model(ARCH).eval()
    expected = run(factory(True), eval_model, x, t)
    torch.testing.assert_close(out[0], expected[0])


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom: forward failed mid-way")


@pytest.mark.parametrize("failure", ["bad_argument", "forward_raises"])
@pytest.mark.parametrize("copy_model", [True, False], ids=["copy", "in_place"])
@pytest.mark.parametrize("name", NAMES)
def test_no_trace_when_the_call_raises(name, copy_model, failure):
    factory = FACTORIES[name]
    model = training_model(ARCH)
    x, t = inputs()
    parameters = inspect.signature(EXPLAINERS[EXTRA.get(name, (name,))[0]]).parameters
    if failure == "forward_raises":
        model.layer4 = nn.Sequential(*model.layer4, Boom())  # after layer3 and the in-branch concept layer
        explainer, error = factory(copy_model), RuntimeError
    elif "layer" in parameters:
        explainer, error = factory(copy_model, layer="layer9.nope"), ValueError
    elif "composite_kwargs" in parameters:
        # an unknown composite name is refused by the constructor; bad composite arguments only at call time
        with pytest.raises(ValueError, match="unknown LRP composite"):
            factory(copy_model, composite="no_such_composite")
        explainer, error = factory(copy_model, composite_kwargs={"no_such_argument": 1}), TypeError
    else:
        pytest.skip(f"{name} takes neither a layer nor composite arguments: only the failing forward applies")
    before = snapshot(model)
    with pytest.raises(error):
        run(explainer, model, x, t)
    assert_untouched(before, model)


@pytest.mark.parametrize("name", NAMES)
def test_grad_modes(name):
    """Lightning validates under no_grad (fit) and inference_mode (trainer.validate)."""
    factory = FACTORIES[name]
    model = training_model(ARCH)
    x, t = inputs()
    expected = run(factory(True), model, x, t)
    with torch.no_grad():
        got = run(factory(True), model, x, t)
    torch.testing.assert_close(got[0], expected[0])
    with torch.inference_mode():
        x_inf, t_inf = x.clone(), t.clone()  # inference tensors, as a validation batch would be
        got = run(factory(True), model, x_inf, t_inf)
        got_in_place = run(factory(False), model, x_inf, t_inf)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got_in_place[0], expected[0])


_libc = ctypes.CDLL("libc.so.6")


def rss_mb() -> float:
    gc.collect()
    _libc.malloc_trim(0)  # glibc keeps freed blocks; without trimming RSS measures the allocator, not leaks
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def survivors(explainer: Callable, model: nn.Module, x: torch.Tensor, t: torch.Tensor, monkeypatch) -> list[str]:
    """What of the explanation outlives the call when only reference counting frees memory.

    Spies (forward hooks, copied into the explained deep copy) keep weak references to the copy, its parameters and
    the ``layer3`` output. The cyclic collector is disabled, so anything kept alive by a reference cycle (the
    hook-closure/state/tensor cycle of a CRP mask hook that is not cleared) shows up here instead of being swept up by
    a collection that happens to run.
    """
    refs: list[tuple[str, weakref.ref]] = []

    def spy_root(mod, inputs, output):
        if mod is not model:
            refs.append(("model copy", weakref.ref(mod)))
            refs.extend((f"parameter {n}", weakref.ref(p)) for n, p in mod.named_parameters())

    def spy_layer(mod, inputs, output):
        refs.append(("layer3 output", weakref.ref(output)))

    handles = [model.register_forward_hook(spy_root), model.layer3.register_forward_hook(spy_layer)]
    gc.collect()
    gc.disable()
    try:
        run(explainer, model, x, t)
        assert refs, "the spies never ran"
        return sorted({name for name, ref in refs if ref() is not None})
    finally:
        gc.enable()
        for h in handles:
            h.remove()
        monkeypatch.undo()
        gc.collect()


@pytest.mark.parametrize("name", NAMES)
def test_memory_stays_flat(name, monkeypatch):
    factory = FACTORIES[name]
    model = training_model(ARCH)
    torch.manual_seed(2)
    x, t = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    explainer = factory(True)
    assert survivors(explainer, model, x, t, monkeypatch) == []
    usage = []
    for _ in range(15):
        run(explainer, model, x, t)
        usage.append(rss_mb())
    # measured growth 0.0-0.1 MB; keeping one chunk's captured layer output + graph per call grows ~3.5 MB
    assert usage[-1] - usage[4] < 2.0, f"RSS grew {usage[-1] - usage[4]:.1f} MB from call 5 to 15: {usage}"


def test_leak_detector_catches_the_hook_state_cycle(monkeypatch):
    """Negative control: the mask-hook pattern whose state is never cleared (zennit-crp cleans up outside
    ``finally``) forms the cycle state -> layer output -> its tensor hook -> closure -> state; the check must see
    the layer output (and the graph and parameters it holds) survive."""

    class Uncleared(dict):
        def clear(self) -> None:  # the caller's cleanup never reaches this state
            pass

    @contextlib.contextmanager
    def leaky_capture(module: nn.Module):
        state: dict = Uncleared(mask=1.0)

        def hook(mod, inputs, output):
            state["out"] = output
            output.register_hook(lambda grad: grad * state["mask"])
            return output.clone()

        module.register_forward_hook(hook)  # never removed, state never cleared
        yield state

    model = training_model("tiny_resnet")
    x, t = inputs()
    assert survivors(CRP(layer="layer3", top_k=2), model, x, t, monkeypatch) == []
    monkeypatch.setattr(crp_module, "capture_output", leaky_capture)
    assert "layer3 output" in survivors(CRP(layer="layer3", top_k=2), model, x, t, monkeypatch)


SMALL = sorted(name for name, spec in ARCHITECTURES.items() if spec.small)


@pytest.mark.parametrize("arch", SMALL)
def test_registry_defaults_resolve_for_every_small_architecture(arch):
    """``layer=None`` takes the registry's layers; every candidate concept layer works with CRP."""
    spec = get_spec(arch)
    torch.manual_seed(0)
    net = build_architecture(arch, num_classes=CLASSES)
    x, t = torch.randn(2, 3, max(32, spec.min_size), max(32, spec.min_size)), torch.tensor([0, 2])
    cam = GradCAM()(net, x, t)
    assert cam.shape == (2, *x.shape[-2:]) and (cam >= 0).all() and torch.isfinite(cam).all()
    torch.testing.assert_close(cam, GradCAM(layer=spec.gradcam_layer)(net, x, t))
    for layer in spec.concept_layers:
        heat, ids = CRP(layer=layer, top_k=2)(net, x, t)
        assert heat.shape == (2, 2, *x.shape[-2:]) and ids.shape == (2, 2), layer
        assert torch.isfinite(heat).all() and heat.abs().sum() > 0, layer
    default, _ = CRP(top_k=2)(net, x, t)
    first, _ = CRP(layer=spec.concept_layers[0], top_k=2)(net, x, t)
    torch.testing.assert_close(default, first)

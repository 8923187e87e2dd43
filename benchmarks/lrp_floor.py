"""LRP against a plain input gradient at 224 px (issue 35): ratios side by side, agreement, where the time goes.

For each architecture the calls are interleaved within every repeat after one warm-up round (so background load on a
shared machine hits them alike); the figure is the ratio of the minima, the median of per-repeat ratios beside it:

* ``gradient``: forward + ``torch.autograd.grad`` of the target logits w.r.t. the input on the model in ``eval()``
  with ``requires_grad_(False)`` parameters (no parameter gradient is computed: autograd would prune them anyway
  since only the input is asked for) — what a saliency / Grad-CAM style callback pays;
* ``lrp_relevance``: :func:`lit_xai.explainers.lrp_relevance` on the same model (canonizers, fast rule layers);
* ``LRP()``: the public explainer as the callbacks call it (model copy sharing weight storage, eval mode, conservation
  guard);
* with ``--zennit``: ``lrp_relevance(fast_rules=False)``, zennit 0.5.1's own hooks (slow: 3-4x the fast path).

Agreement (once, same inputs): max |fast - zennit| / max |zennit| of the maps, and the conservation ratios of the
public call. ``--macs`` counts the multiply-accumulates both calls execute (convolutions and matrix products, from
the dispatched aten operators' shapes: the floor a faster kernel cannot beat). ``--profile`` adds a torch.profiler
breakdown of one gradient and one ``lrp_relevance`` call by operator class (forward convolutions, transposed
convolutions, element-wise, pooling, the rest).

Run:
    python -m benchmarks lrp_floor                                   # resnet50 + vgg16, 224 px, batch 8, 2 threads
    python -m benchmarks lrp_floor --arch resnet50 --profile --json floor.json
    python -m benchmarks lrp_floor --side 64 --repeats 2 --zennit   # quick
    python -m benchmarks lrp_floor --repeats 0 --macs                # multiply-accumulate counts only
    python -m benchmarks lrp_floor --repeats 0 --save-maps old.pt     # on one checkout, then on another:
    python -m benchmarks lrp_floor --repeats 0 --compare-maps old.pt  # the maps' max relative difference
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lit_xai, not whichever is installed

import torch  # noqa: E402

from benchmarks.lrp_timing import input_gradient  # noqa: E402  (the one plain-gradient baseline)
from benchmarks.timing import ratio, summary, time_interleaved, write_json  # noqa: E402
from lit_xai.explainers import LRP, lrp_relevance  # noqa: E402
from lit_xai.models.architectures import build_architecture, get_spec  # noqa: E402

__all__ = ["input_gradient", "measure", "profile_breakdown"]


#: operator name fragments -> class, first match wins (torch.profiler's CPU operator names)
_CLASSES = (
    ("convolution_backward", "transposed conv (backward)"),
    ("mkldnn_convolution", "conv forward"),
    ("convolution", "conv forward"),
    ("addmm", "linear"),
    ("aten::mm", "linear"),
    ("pool", "pooling"),
    ("batch_norm", "batch norm"),
)
_ELEMENTWISE = ("mul", "div", "add", "sub", "sign", "abs", "clamp", "relu", "threshold", "copy", "copysign", "fill")


def _operator_class(name: str) -> str:
    for fragment, label in _CLASSES:
        if fragment in name:
            return label
    if name.startswith("aten::") and any(name[6:].rstrip("_").startswith(op) for op in _ELEMENTWISE):
        return "element-wise"
    return "other"


def profile_breakdown(call: Callable[[], object]) -> dict[str, float]:
    """Seconds of self CPU time of one ``call`` per operator class (torch.profiler; classes in ``_CLASSES``)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        seconds[_operator_class(event.key)] += event.self_cpu_time_total / 1e6
    seconds["total"] = sum(seconds.values())
    return dict(seconds)


def count_macs(call: Callable[[], object]) -> dict[str, float]:
    """Multiply-accumulates (billions) one ``call`` executes in convolutions (forward / input-gradient / weight-
    gradient) and matrix products, counted from the shapes of the aten operators it dispatches."""
    import math

    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.macs: dict[str, float] = defaultdict(float)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            if func is aten.convolution.default:
                self.macs["conv forward"] += out.numel() * math.prod(args[1].shape[1:]) / 1e9
            elif func is aten.convolution_backward.default:
                per = args[0].numel() * math.prod(args[2].shape[1:]) / 1e9
                mask = args[-1]
                self.macs["conv input-gradient"] += per if mask[0] else 0.0
                self.macs["conv weight-gradient"] += per if mask[1] else 0.0
            elif func is aten.mm.default:
                self.macs["matmul"] += args[0].shape[0] * args[0].shape[1] * args[1].shape[1] / 1e9
            elif func is aten.addmm.default:
                self.macs["matmul"] += args[1].shape[0] * args[1].shape[1] * args[2].shape[1] / 1e9
            return out

    with Count() as counter:
        call()
    macs = dict(counter.macs)
    macs["total"] = sum(macs.values())
    return macs


def measure(
    arch: str,
    side: int,
    batch: int,
    repeats: int,
    zennit: bool,
    profile: bool,
    macs: bool = False,
    maps: dict | None = None,
) -> dict:
    """Times, ratios, agreement and (optionally) the profile of one architecture; also printed."""
    torch.manual_seed(0)
    net = build_architecture(arch, num_classes=10).eval().requires_grad_(False)
    composite = get_spec(arch).default_composite
    images = torch.randn(batch, 3, side, side)
    targets = torch.randint(0, 10, (batch,))
    explainer = LRP(composite, batch_size=batch)
    fast = lrp_relevance(net, images, targets, composite=composite)
    if maps is not None:
        maps[arch] = fast
    reference = lrp_relevance(net, images, targets, composite=composite, fast_rules=False)
    explainer(net, images, targets)
    check = explainer.last_check
    result: dict = {
        "composite": composite,
        "rel_diff_vs_zennit": float((fast - reference).abs().max() / reference.abs().max()),
        "conservation_ratio": [float(v) for v in check.ratios.aminmax()] if check is not None else None,
        "conservation_all_ok": bool(check.all_ok) if check is not None else None,
    }
    calls: dict[str, Callable[[], object]] = {
        "gradient": lambda: input_gradient(net, images, targets),
        "lrp_relevance": lambda: lrp_relevance(net, images, targets, composite=composite),
        "LRP()": lambda: explainer(net, images, targets),
    }
    if zennit:
        calls["zennit hooks"] = lambda: lrp_relevance(net, images, targets, composite=composite, fast_rules=False)
    times = time_interleaved(calls, repeats=repeats) if repeats > 0 else {}  # --repeats 0: no timing
    print(f"{arch} {side} px batch {batch} ({composite}), min / median seconds, ratio to the gradient (min / median)")
    for name, values in times.items():
        s, r = summary(values), ratio(values, times["gradient"])
        result[f"secs.{name}"] = {"min": s["min"], "median": s["median"]}
        result[f"over_grad.{name}"] = r
        print(f"  {name:14s} {s['min']:8.3f} {s['median']:8.3f}   x{r['min']:5.2f}  x{r['median']:5.2f}", flush=True)
    print(f"  max rel. diff to zennit's hooks {result['rel_diff_vs_zennit']:.2e}; conservation Σ R / logit "
          f"{result['conservation_ratio']} (all in band: {result['conservation_all_ok']})")  # fmt: skip
    if macs:
        grad_macs, lrp_macs = count_macs(calls["gradient"]), count_macs(calls["lrp_relevance"])
        result["gmacs.gradient"], result["gmacs.lrp_relevance"] = grad_macs, lrp_macs
        print(f"  multiply-accumulates (G)     {'gradient':>9s} {'lrp':>9s}")
        for key in sorted(set(grad_macs) | set(lrp_macs)):
            print(f"    {key:26s} {grad_macs.get(key, 0.0):9.2f} {lrp_macs.get(key, 0.0):9.2f}")
        print(f"    LRP / gradient in multiply-accumulates: {lrp_macs['total'] / grad_macs['total']:.3f}")
    if profile:
        grad_prof = profile_breakdown(calls["gradient"])
        lrp_prof = profile_breakdown(calls["lrp_relevance"])
        result["profile.gradient"], result["profile.lrp_relevance"] = grad_prof, lrp_prof
        print(f"  profile (self CPU seconds)  {'gradient':>9s} {'lrp':>9s}")
        for key in sorted(set(grad_prof) | set(lrp_prof), key=lambda k: -lrp_prof.get(k, 0.0)):
            print(f"    {key:26s} {grad_prof.get(key, 0.0):9.3f} {lrp_prof.get(key, 0.0):9.3f}")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--zennit", action="store_true", help="also time zennit's own hooks (slow)")
    parser.add_argument("--profile", action="store_true", help="torch.profiler breakdown by operator class")
    parser.add_argument("--macs", action="store_true", help="count the multiply-accumulates of both calls")
    parser.add_argument("--save-maps", help="save each architecture's lrp_relevance map here (torch.save)")
    parser.add_argument("--compare-maps", help="max relative difference of the maps to those saved by --save-maps")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} batch={args.batch} side={args.side} repeats={args.repeats} (after 1 warm-up)")
    maps: dict[str, torch.Tensor] = {}
    results = {
        arch: measure(arch, args.side, args.batch, args.repeats, args.zennit, args.profile, args.macs, maps)
        for arch in args.arch
    }
    if args.save_maps:
        torch.save(maps, args.save_maps)
    if args.compare_maps:
        saved = torch.load(args.compare_maps)
        for arch, new in maps.items():
            old = saved[arch]
            diff = float((new - old).abs().max() / old.abs().max())
            results[arch]["rel_diff_vs_saved_maps"] = diff
            print(f"{arch}: max |map - saved map| / max |saved map| = {diff:.2e} ({args.compare_maps})")
    if args.json:
        write_json(args.json, {"args": vars(args), **results}, suite="lrp_floor")


if __name__ == "__main__":
    main()

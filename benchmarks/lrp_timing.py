"""LRP cost relative to a plain input gradient, measured side by side in one run.

For each architecture the three calls are interleaved within every repeat (so background load affects them alike):

* ``gradient``: forward + ``autograd.grad`` of the target logits w.r.t. the input (what Grad-CAM/saliency cost);
* ``lrp_relevance``: the same with the zennit composite and canonizers registered (hooks + rule backward);
* ``LRP()``: the public explainer, which additionally deep-copies the model and switches it to eval mode.

Reported: min and median seconds over the repeats, and the ratios to the gradient's min and median.

Run:
    python -m benchmarks lrp_timing                                   # tiny_resnet 32 px, resnet50 64 px, 1 thread
    python -m benchmarks lrp_timing --arch resnet50 --side 112 --batch 8 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lit_xai, not whichever is installed

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.timing import summary, time_interleaved  # noqa: E402
from lit_xai.explainers import LRP, lrp_relevance  # noqa: E402
from lit_xai.models.architectures import build_architecture, get_spec  # noqa: E402

__all__ = ["input_gradient", "measure", "time_side_by_side"]


def input_gradient(net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of the target logits w.r.t. the input (the plain-gradient baseline)."""
    x = images.detach().clone().requires_grad_(True)
    out = net(x)
    (grad,) = torch.autograd.grad(out[torch.arange(len(targets)), targets].sum(), x)
    return grad


#: the shared interleaved timing (benchmarks/timing.py) under this script's earlier name
time_side_by_side = time_interleaved


def measure(arch: str, side: int, batch: int, repeats: int, composite: str) -> dict[str, list[float]]:
    """Side-by-side seconds of ``gradient``, ``lrp_relevance`` and ``LRP()`` on a random-init ``arch``."""
    torch.manual_seed(0)
    net = build_architecture(arch, num_classes=10).eval()
    images = torch.randn(batch, 3, side, side)
    targets = torch.randint(0, 10, (batch,))
    explainer = LRP(composite, batch_size=batch)
    return time_side_by_side(
        {
            "gradient": partial(input_gradient, net, images, targets),
            "lrp_relevance": partial(lrp_relevance, net, images, targets, composite=composite),
            "LRP()": partial(explainer, net, images, targets),
        },
        repeats=repeats,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["tiny_resnet", "resnet50"])
    parser.add_argument("--side", type=int, nargs="+", default=None, help="input side per architecture")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--composite", default=None, help="default: each architecture's registry default")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sides = args.side or [32 if get_spec(a).small else 64 for a in args.arch]
    print(f"threads={args.threads} batch={args.batch} repeats={args.repeats} (min / median seconds)")
    header = f"{'architecture':16s} {'px':>4s} {'composite':20s} {'call':14s} {'min':>8s} {'median':>8s}"
    print(f"{header} {'x grad (min)':>13s} {'x grad (med)':>13s}")
    for arch, side in zip(args.arch, sides):
        composite = args.composite or get_spec(arch).default_composite
        times = measure(arch, side, args.batch, args.repeats, composite)
        base = summary(times["gradient"])
        base_min, base_median = base["min"], base["median"]
        for name, values in times.items():
            low, median = summary(values)["min"], summary(values)["median"]
            print(
                f"{arch:16s} {side:4d} {composite:20s} {name:14s} {low:8.4f} {median:8.4f} "
                f"{low / base_min:13.2f} {median / base_median:13.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

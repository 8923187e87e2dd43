"""Cost of CRP relative to LRP: conditional heatmaps of 8 concepts for one image vs one LRP heatmap of that image.

    python -m benchmarks crp_timing [--arch resnet18] [--size 224] [--layer layer4.0.conv2] [--repeats 5]

Each repeat times both through the public API (deep copy + canonizers + explanation, what a callback pays) and on an
already prepared eval copy (the explanation alone), interleaved so machine load affects both alike; the first
repeat is a warm-up and not reported. Prints min and median seconds and the ratio CRP(8) / LRP(1).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lit_xai, not whichever is installed

import torch  # noqa: E402

from benchmarks.timing import summary, time_interleaved  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--layer", default="layer4.0.conv2")
    parser.add_argument("--concepts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from lit_xai.explainers import CRP, LRP, explanation_model
    from lit_xai.explainers.crp import channel_relevances, crp_heatmaps
    from lit_xai.explainers.lrp import lrp_relevance
    from lit_xai.models.architectures import build_architecture

    gc.collect()
    gc.freeze()  # import-time objects out of the way of explanation_model's gc.collect(); see README
    torch.manual_seed(0)
    net = build_architecture(args.arch, num_classes=10)
    x, t = torch.randn(1, 3, args.size, args.size), torch.tensor([3])
    crp = CRP(layer=args.layer, top_k=args.concepts, batch_size=args.concepts)
    with explanation_model(net) as prepared:
        ids = channel_relevances(prepared, x, t, args.layer).topk(args.concepts, dim=1).indices
        calls = {
            "lrp_api": lambda: LRP()(net, x, t),
            "crp_api": lambda: crp(net, x, t),
            "lrp_core": lambda: lrp_relevance(prepared, x, t),
            # the API ranks concepts with one LRP pass first; the core number is the conditional pass alone
            "crp_core": lambda: crp_heatmaps(prepared, x, t, args.layer, ids, batch_size=args.concepts),
        }
        timings = time_interleaved(calls, repeats=args.repeats, warmup=1)
    print(f"{args.arch} {args.size}px, layer {args.layer}, {args.concepts} concepts, {args.threads} thread(s)")
    for key, values in timings.items():
        s = summary(values)
        print(f"  {key:9s} min {s['min']:.3f}s  median {s['median']:.3f}s")
    for kind in ("api", "core"):
        crp_s, lrp_s = timings[f"crp_{kind}"], timings[f"lrp_{kind}"]
        ratios = [c / lo for c, lo in zip(crp_s, lrp_s)]
        med = statistics.median
        print(
            f"  CRP({args.concepts}) / LRP(1) [{kind}]: min {min(ratios):.2f}  median {statistics.median(ratios):.2f}  "
            f"(min/min {min(crp_s) / min(lrp_s):.2f}, median/median {med(crp_s) / med(lrp_s):.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

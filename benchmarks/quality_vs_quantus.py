"""AOPC, max-sensitivity and infidelity on 64 images: ours vs Quantus 0.6's batched metrics, same settings, same values.

    python -m benchmarks quality_vs_quantus [--images 64] [--size 32] [--repeats 3] [--threads 1] [--json OUT.json]

Issue 35, item 5. Each metric is computed by :mod:`lit_xai.metrics` and by Quantus 0.6 (a test-only oracle,
``pip install quantus==0.6.0``) on the same ``tiny_resnet`` (seeded, batch norm calibrated), the same images,
targets and LRP heatmaps; the two calls are interleaved in every repeat after one warm-up round
(:func:`benchmarks.timing.time_interleaved`) and the ratio ours / Quantus is reported as min over repeats (and the
median of the per-repeat ratios). Quantus runs with its default ``batch_size=64``: all 64 images in one batch.

Same settings, and how "equal values" is made exact for the random metrics:

* **AOPC** (``pixel_flipping`` vs ``quantus.RegionPerturbation``): 8 px patches, every region flipped one per step
  (``steps = regions_evaluation = P``), baseline 0, MoRF, logits; deterministic. Quantus returns the drops
  ``f(x) - f(x_k)``, k = 1..P; ours the curve k = 0..P: compared as drops, and our AOPC against
  ``sum(drops) / (P + 1)``.
* **max-sensitivity** (``max_sensitivity`` vs ``quantus.MaxSensitivity``): uniform L-inf noise of radius 0.02,
  10 samples, LRP explanations, no normalisation or abs, Frobenius norm relative to ``||Phi(x)||``. Quantus draws one
  perturbation per sample step; its ``perturb_func`` is handed ours
  (:func:`lit_xai.metrics.sensitivity.sensitivity_noise`, the same seed), step by step, so both explain exactly the
  same noisy images.
* **infidelity** (``infidelity(normalize=False)`` vs ``quantus.Infidelity``): Gaussian noise ``I`` (std 0.1, shared by
  the channels), 10 samples, ``mse``. Quantus' default perturbs square patches with a baseline; with
  ``perturb_patch_sizes=[H]`` (one patch, the whole image) and a ``perturb_func`` returning ``x - I`` for our noise
  (:func:`lit_xai.metrics.infidelity.infidelity_noise`) it computes Yeh et al.'s Gaussian infidelity
  ``mean_s (sum(Phi * I_s) - (f(x) - f(x - I_s)))^2``, the same as ours. Quantus gets the channel-resolved LRP
  relevance ``(N, C, H, W)``, ours its channel sum (equal dot products, the noise being shared by channels).

"Equal" is checked with a tolerance derived from float32 and the reduction size (:func:`tolerance`); the suite exits
non-zero when a value differs. ``--threads`` sets torch's intra-op threads for both (default 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's lit_xai, not whichever is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.timing import machine_info, ratio, summary, time_interleaved, write_json  # noqa: E402

__all__ = ["METRICS", "compare", "main", "setup", "tolerance"]


def setup(images: int = 64, size: int = 32, seed: int = 0) -> dict[str, Any]:
    """The shared inputs: a seeded, calibrated ``tiny_resnet``, images, targets (the predicted class) and LRP maps."""
    from lit_xai.explainers import LRP
    from lit_xai.models.architectures import build_architecture
    from lit_xai.models.batchnorm import calibrate_batch_norm

    torch.manual_seed(seed)
    net = build_architecture("tiny_resnet", num_classes=2)
    calibrate_batch_norm(net, torch.randn(32, 3, size, size))
    net.eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(images, 3, size, size, generator=g)
    with torch.no_grad():
        t = net(x).argmax(1)
    lrp = LRP()
    relevance = lrp.relevance(net, x, t)  # (N, C, H, W)
    return {"net": net, "x": x, "t": t, "lrp": lrp, "relevance": relevance, "heat": relevance.sum(1)}


def tolerance(reduction: int, scale: float) -> float:
    """Absolute tolerance for two float32 evaluations of the same quantity: ``reduction`` terms summed in a
    different order (and batch composition) give errors up to ~ sqrt(reduction) * eps * scale; a factor 10 margin."""
    eps = float(torch.finfo(torch.float32).eps)
    return 10.0 * math.sqrt(reduction) * eps * max(scale, 1.0)


# -------------------------------------------------------------------------------------------------------- AOPC
def aopc_pair(d: dict[str, Any], patch: int = 8) -> tuple[Callable[[], Any], Callable[[], Any], Callable]:
    import quantus

    from lit_xai.metrics import pixel_flipping

    net, x, t, heat = d["net"], d["x"], d["t"], d["heat"]
    side = x.shape[-1]
    regions = math.ceil(side / patch) ** 2

    def ours():
        return pixel_flipping(net, x, t, heat, patch=patch, steps=regions, order="morf", replacement=0.0)

    metric = quantus.RegionPerturbation(
        patch_size=patch, order="morf", regions_evaluation=regions, perturb_baseline=0.0, normalise=False,
        abs=False, disable_warnings=True, display_progressbar=False,
    )  # fmt: skip
    x_np, t_np, a_np = x.numpy(), t.numpy(), heat[:, None].numpy()

    def theirs():
        return np.asarray(
            metric(model=net, x_batch=x_np, y_batch=t_np, a_batch=a_np, device="cpu", softmax=False,
                   channel_first=True)
        )  # fmt: skip

    def check(mine, ref) -> dict[str, float]:
        curve, aopc = mine
        drops = (curve[:, :1] - curve[:, 1:]).double().numpy()
        scale = float(np.abs(curve.numpy()).max())
        aopc_diff = np.abs(aopc.numpy() - ref.sum(1) / (regions + 1)).max()
        diff = float(max(np.abs(drops - ref).max(), aopc_diff))
        return {"max_abs_diff": diff, "tolerance": tolerance(x[0].numel(), scale)}

    return ours, theirs, check


# ------------------------------------------------------------------------------------------- max-sensitivity
def sensitivity_pair(
    d: dict[str, Any], samples: int = 10, radius: float = 0.02, seed: int = 0
) -> tuple[Callable[[], Any], Callable[[], Any], Callable]:
    import quantus

    from lit_xai.metrics import max_sensitivity
    from lit_xai.metrics.sensitivity import sensitivity_noise

    net, x, t, lrp, heat = d["net"], d["x"], d["t"], d["lrp"], d["heat"]

    def ours():
        return max_sensitivity(lrp, net, x, t, radius=radius, samples=samples, seed=seed, heatmaps=heat)

    state = {"step": 0}
    noise = sensitivity_noise(tuple(x.shape), samples, radius, seed).numpy()  # drawn once, outside the timing

    def perturb(arr, indices, **kwargs):  # Quantus draws one perturbation per step: hand it ours, in order
        step = noise[:, state["step"] % samples]
        state["step"] += 1
        return arr + step.reshape(arr.shape)

    def explain(model, inputs, targets, **kwargs):
        return lrp(net, torch.as_tensor(inputs).float(), torch.as_tensor(targets))[:, None].numpy()

    metric = quantus.MaxSensitivity(
        nr_samples=samples, perturb_func=perturb, normalise=False, abs=False, disable_warnings=True,
        return_nan_when_prediction_changes=False, display_progressbar=False,
    )  # fmt: skip
    x_np, t_np, a_np = x.numpy(), t.numpy(), heat[:, None].numpy()

    def theirs():
        state["step"] = 0
        return np.asarray(
            metric(model=net, x_batch=x_np, y_batch=t_np, a_batch=a_np, explain_func=explain, device="cpu")
        )

    def check(mine, ref) -> dict[str, float]:
        # relative values ~ 1: float32 LRP of identical inputs in different batch compositions
        return {"max_abs_diff": float(np.abs(mine.double().numpy() - ref).max()), "tolerance": 1e-4}

    return ours, theirs, check


# ------------------------------------------------------------------------------------------------- infidelity
def infidelity_pair(
    d: dict[str, Any], samples: int = 10, noise_std: float = 0.1, seed: int = 0
) -> tuple[Callable[[], Any], Callable[[], Any], Callable]:
    import quantus

    from lit_xai.metrics import infidelity
    from lit_xai.metrics.infidelity import infidelity_noise

    net, x, t, relevance, heat = d["net"], d["x"], d["t"], d["relevance"], d["heat"]
    c, side = x.shape[1], x.shape[-1]

    def ours():
        return infidelity(net, x, t, heat, samples=samples, noise_std=noise_std, normalize=False, seed=seed)

    state = {"step": 0}
    # drawn once, outside the timing; expanded to every channel (ours shares one noise plane by the channels)
    noise = infidelity_noise(tuple(x.shape), samples, noise_std, seed).expand(-1, -1, c, -1, -1).numpy()

    def perturb(arr, indices, **kwargs):  # called once per sample (one patch covers the image): x - I_s
        step = noise[:, state["step"] % samples]
        state["step"] += 1
        return arr - step.reshape(arr.shape)

    metric = quantus.Infidelity(
        perturb_patch_sizes=[side], n_perturb_samples=samples, perturb_func=perturb, normalise=False, abs=False,
        disable_warnings=True, display_progressbar=False,
    )  # fmt: skip
    x_np, t_np, a_np = x.numpy(), t.numpy(), relevance.numpy()

    def theirs():
        state["step"] = 0
        return np.asarray(
            metric(model=net, x_batch=x_np, y_batch=t_np, a_batch=a_np, device="cpu", softmax=False,
                   channel_first=True)
        )  # fmt: skip

    def check(mine, ref) -> dict[str, float]:
        # squared errors: the tolerance scales with the value (relative) over the dot product's length
        scale = float(np.abs(ref).max())
        return {
            "max_abs_diff": float(np.abs(mine.double().numpy() - ref).max()),
            "tolerance": 10 * math.sqrt(x[0].numel()) * float(torch.finfo(torch.float32).eps) * max(scale, 1e-6) + 1e-7,
        }

    return ours, theirs, check


METRICS: dict[str, Callable[[dict[str, Any]], tuple]] = {
    "aopc": aopc_pair,
    "max_sensitivity": sensitivity_pair,
    "infidelity": infidelity_pair,
}


def compare(d: dict[str, Any], metric: str) -> dict[str, float]:
    """One evaluation of ``metric`` by both: ``max_abs_diff`` between the values and the ``tolerance`` it must meet."""
    ours, theirs, check = METRICS[metric](d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check(ours(), theirs())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    d = setup(args.images, args.size)
    results: dict[str, Any] = {"images": args.images, "size": args.size, "threads": args.threads, "notes": []}
    failed = False
    print(f"{args.images} images {args.size} px, tiny_resnet, {args.threads} thread(s), {args.repeats} repeats")
    head = f"{'metric':16s} {'ours/quantus':>12s} {'(median)':>9s} {'ours s':>8s} {'quantus s':>9s} {'max|diff|':>10s}"
    print(head + " tol")
    for name in args.metrics.split(","):
        ours, theirs, check = METRICS[name](d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agreement = check(ours(), theirs())
            times = time_interleaved({"ours": ours, "quantus": theirs}, args.repeats)
        r = ratio(times["ours"], times["quantus"])
        equal = agreement["max_abs_diff"] <= agreement["tolerance"]
        failed |= not equal
        results[name] = {
            "ours_over_quantus": r["min"], "ours_over_quantus.median": r["median"],
            "ours_s": summary(times["ours"]), "quantus_s": summary(times["quantus"]), **agreement, "equal": equal,
        }  # fmt: skip
        print(
            f"{name:16s} {r['min']:12.3f} {r['median']:9.3f} {min(times['ours']):8.3f} {min(times['quantus']):9.3f} "
            f"{agreement['max_abs_diff']:10.2e} {agreement['tolerance']:.1e}{'' if equal else '  NOT EQUAL'}",
            flush=True,
        )
    if args.json:
        write_json(args.json, results, suite="quality_vs_quantus")
    else:
        print(json.dumps({"machine": machine_info()}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

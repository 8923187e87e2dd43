"""Foreign backbones: LRP conservation per family, and LRP time against a plain input gradient.

Two parts:

* ``--conservation``: the tiny configurations of ``tests/helpers/_backbones.py`` (every supported family), random and
  "trained-like" weights (random norm affine parameters, calibrated batch-norm statistics, layer scales 0.1-1,
  random biases). Per family: ``Σ R / logit`` with biases (the profile's default composite, as explained), the same
  on the network with every additive constant removed (float64: the exact check), and the conservation guard's
  verdict (:func:`lit_xai.explainers.check_conservation`).
* ``--speed``: full-size backbones with random weights (nothing is downloaded): timm ViT-S/16 and ConvNeXt-T,
  torchvision EfficientNetV2-S and MobileNetV3-small, MONAI DenseNet121 (``--backbones`` picks), batch 8 at 224 px
  (``--batch``, ``--side``): LRP (profile defaults, on the prepared network, as the explainers run it) and a plain
  input gradient of the same logits on the same frozen copy, interleaved after a warm-up round, ``--repeats`` times
  each; min and median seconds, the ratio of the minima, the median of per-round ratios and the conservation ratios.

Run:
    OMP_NUM_THREADS=2 python -m benchmarks backbones --conservation
    OMP_NUM_THREADS=2 python -m benchmarks backbones --speed --repeats 5
    OMP_NUM_THREADS=2 python -m benchmarks backbones --speed --repeats 3 --side 160 --backbones convnext_tiny
    OMP_NUM_THREADS=1 python -m benchmarks backbones --full-conservation --seeds 3   # full size, exact + guard per seed
    OMP_NUM_THREADS=2 python -m benchmarks backbones --speed --side 128 --calibrate \
        --composite efficientnet_v2_s=epsilon_alpha2_beta1       # BN statistics of the batch; another composite
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lit_xai, not whichever is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

import torch  # noqa: E402
from _backbones import BACKBONES, trained_like, zero_biases  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.timing import ratio, summary, time_interleaved, write_json  # noqa: E402
from lit_xai.explainers import LRP, ConservationWarning, check_conservation, find_profile, lrp_relevance  # noqa: E402
from lit_xai.explainers._core import explanation_model  # noqa: E402

__all__ = ["conservation_table", "full_size_conservation", "speed_table"]


def _ratio(net: nn.Module, x: torch.Tensor, t: torch.Tensor, composite: str, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        logits = net(x)[torch.arange(len(t)), t]
    relevance = lrp_relevance(net, x, t, composite, composite_kwargs=kwargs or None)
    return relevance.flatten(1).sum(1) / logits


def conservation_table(n: int = 4, side: int = 32) -> list[dict]:
    rows = []
    warnings.simplefilter("ignore", ConservationWarning)
    for name, (build, family) in BACKBONES.items():
        for weights in ("random", "trained-like"):
            torch.manual_seed(1)
            x = torch.randn(n, 3, side, side, dtype=torch.float64)
            torch.manual_seed(0)
            net = build().double().eval()
            if weights != "random":
                trained_like(net, x)
            composite = find_profile(net).profile.default_composite
            t = net(x).argmax(1)
            biased = _ratio(net, x, t, composite)
            exact = _ratio(zero_biases(copy.deepcopy(net)), x, t, composite, epsilon=1e-12)
            check = check_conservation(net.float(), LRP(), x.float(), t)
            rows.append(
                {
                    "backbone": name,
                    "family": family,
                    "weights": weights,
                    "with_biases": [round(v, 3) for v in biased.tolist()],
                    "exact": [round(v, 4) for v in exact.tolist()],
                    "guard_ok": bool(check.all_ok),
                }
            )
            r = rows[-1]
            print(
                f"{name:24s} {weights:13s} with biases {str(r['with_biases']):38s} exact {str(r['exact']):40s} "
                f"guard {'ok' if r['guard_ok'] else 'FLAGGED'}",
                flush=True,
            )
    return rows


def _timm(name: str, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=1000, **kwargs).eval()


def _torchvision(name: str) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, name)(weights=None).eval()


def _monai_densenet121() -> nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=2, in_channels=3, out_channels=10).eval()


#: the full-size backbones of the speed table (issue 35), random weights, nothing downloaded; built for an input side
SPEED_BACKBONES = {
    "vit_small_patch16_224": lambda side: _timm("vit_small_patch16_224", img_size=side),
    "convnext_tiny": lambda side: _timm("convnext_tiny"),
    "efficientnet_v2_s": lambda side: _torchvision("efficientnet_v2_s"),
    "mobilenet_v3_small": lambda side: _torchvision("mobilenet_v3_small"),
    "monai_densenet121": lambda side: _monai_densenet121(),
}


def speed_table(
    repeats: int = 5,
    batch: int = 8,
    side: int = 224,
    names: list[str] | None = None,
    calibrate: bool = False,
    composites: dict[str, str] | None = None,
) -> list[dict]:
    """One row per backbone; ``calibrate``: batch-norm statistics of the measured batch first (random-init
    torchvision mobile nets otherwise shrink their activations to logits of about 1e-9, below the rules' epsilon, and
    conservation cannot be read); ``composites``: ``{backbone: composite}`` instead of the profile default."""
    rows = []
    for name in names or list(SPEED_BACKBONES):
        torch.manual_seed(0)
        model = SPEED_BACKBONES[name](side)
        x = torch.randn(batch, 3, side, side)
        if calibrate:
            from lit_xai.models.batchnorm import calibrate_batch_norm

            calibrate_batch_norm(model, x).eval()
        with explanation_model(model, True, share_tensors=True) as net:
            t = net(x).argmax(1)
            lrp = LRP(composite=(composites or {}).get(name))
            composite = lrp.composite_for(net)

            def gradient(net: nn.Module = net, x: torch.Tensor = x, t: torch.Tensor = t) -> None:
                xi = x.clone().requires_grad_(True)
                out = net(xi)
                torch.autograd.grad(out[torch.arange(batch), t].sum(), xi)

            def relevance(net: nn.Module = net, x: torch.Tensor = x, t: torch.Tensor = t, lrp: LRP = lrp) -> None:
                lrp.relevance_on(net, x, t)

            def one_pass(net: nn.Module = net, x: torch.Tensor = x, t: torch.Tensor = t, c: str = composite) -> None:
                lrp_relevance(net, x, t, c)  # the rules alone: no conservation guard

            times = time_interleaved({"gradient": gradient, "lrp": relevance, "pass": one_pass}, repeats, warmup=1)
            check = lrp.last_check
        grad_s, lrp_s = summary(times["gradient"]), summary(times["lrp"])
        row = {
            "backbone": name,
            "composite": composite,
            "calibrated": calibrate,
            "side": side,
            "batch": batch,
            "gradient_min_s": grad_s["min"],
            "gradient_median_s": grad_s["median"],
            "lrp_min_s": lrp_s["min"],
            "lrp_median_s": lrp_s["median"],
            "conservation": [round(float(v), 4) for v in check.ratios.aminmax()] if check is not None else None,
            "conservation_ok": bool(check.all_ok) if check is not None else None,
        }
        row["ratio_min"] = row["lrp_min_s"] / row["gradient_min_s"]
        row["ratio_median"] = ratio(times["lrp"], times["gradient"])["median"]
        row["pass_min_s"] = summary(times["pass"])["min"]
        row["pass_ratio_min"] = row["pass_min_s"] / row["gradient_min_s"]
        row["pass_ratio_median"] = ratio(times["pass"], times["gradient"])["median"]
        # the guard re-explains maps outside its band (biases absorbing over half the relevance) without biases
        row["maps_re_explained"] = int((~torch.isnan(check.exact_ratios)).sum()) if check is not None else None
        rows.append(row)
        print(
            f"{name:24s} {composite:22s} {side} px  "
            f"gradient {row['gradient_min_s']:.3f}/{row['gradient_median_s']:.3f} s  "
            f"LRP {row['lrp_min_s']:.3f}/{row['lrp_median_s']:.3f} s (min/median)  "
            f"LRP/gradient {row['ratio_min']:.2f} (min) {row['ratio_median']:.2f} (median)  "
            f"one pass/gradient {row['pass_ratio_min']:.2f} (min) {row['pass_ratio_median']:.2f} (median)  "
            f"re-explained {row['maps_re_explained']}  "
            f"Σ R / logit {row['conservation']} ({'ok' if row['conservation_ok'] else 'FLAGGED'})",
            flush=True,
        )
    return rows


def full_size_conservation(
    names: list[str] | None = None, seeds: tuple[int, ...] = (0, 1, 2), side: int = 64, n: int = 2
) -> list[dict]:
    """Per full-size backbone and seed (weights and images): the exact ``Σ R / logit`` (float64, every additive
    constant removed, epsilon and stabiliser 1e-12, the profile's composite) on random init, and the conservation
    guard's verdict on the float32 network with biases, random init and with calibrated batch norm."""
    from lit_xai.models.batchnorm import calibrate_batch_norm

    rows = []
    warnings.simplefilter("ignore", ConservationWarning)
    for name in names or list(SPEED_BACKBONES):
        for seed in seeds:
            torch.manual_seed(seed)
            net = SPEED_BACKBONES[name](side).eval().requires_grad_(False)
            x = torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed + 100))
            composite = find_profile(net).profile.default_composite
            exact_net = zero_biases(copy.deepcopy(net)).double()
            t = exact_net(x.double()).argmax(1)
            # both stabilisers at 1e-12: random-init torchvision mobile nets have logits of 1e-6 to 1e-9, which the
            # ZPlus / Gamma stabiliser's default 1e-6 would absorb
            exact = _ratio(exact_net, x.double(), t, composite, epsilon=1e-12, stabilizer=1e-12)
            guard = [bool(check_conservation(net, LRP(), x, t).all_ok)]
            calibrate_batch_norm(net, torch.randn(8, 3, side, side, generator=torch.Generator().manual_seed(seed)))
            check = check_conservation(net, LRP(), x, net(x).argmax(1))
            guard.append(bool(check.all_ok))
            rows.append(
                {
                    "backbone": name,
                    "composite": composite,
                    "seed": seed,
                    "exact": [round(v, 4) for v in exact.tolist()],
                    "calibrated_with_biases": [round(v, 3) for v in check.ratios.tolist()],
                    "guard_ok_random": guard[0],
                    "guard_ok_calibrated": guard[1],
                }
            )
            r = rows[-1]
            print(
                f"{name:24s} {composite:22s} seed {seed}  exact {str(r['exact']):20s}  calibrated with biases "
                f"{str(r['calibrated_with_biases']):16s} guard {'ok' if guard[0] else 'FLAGGED'} (random) / "
                f"{'ok' if guard[1] else 'FLAGGED'} (calibrated)",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conservation", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", type=int, default=224, help="--speed: input side")
    parser.add_argument("--batch", type=int, default=8, help="--speed: batch size")
    parser.add_argument("--backbones", nargs="+", default=None, help=f"--speed: any of {', '.join(SPEED_BACKBONES)}")
    parser.add_argument("--json", help="--speed: write the rows here")
    parser.add_argument("--calibrate", action="store_true", help="--speed: batch-norm statistics of the batch first")
    parser.add_argument(
        "--full-conservation", action="store_true", help="exact ratios and guard of the full-size backbones per seed"
    )
    parser.add_argument("--seeds", type=int, default=3, help="--full-conservation: seeds 0..N-1")
    parser.add_argument(
        "--composite", nargs="+", default=[], metavar="BACKBONE=COMPOSITE", help="--speed: instead of the default"
    )
    args = parser.parse_args(argv)
    if args.full_conservation:
        rows = full_size_conservation(args.backbones, tuple(range(args.seeds)), side=64)
        if args.json:
            write_json(args.json, {"args": vars(args), "rows": rows}, suite="backbones")
        return
    if args.conservation or not args.speed:
        conservation_table()
    if args.speed or not args.conservation:
        chosen = dict(item.split("=", 1) for item in args.composite)
        rows = speed_table(args.repeats, args.batch, args.side, args.backbones, args.calibrate, chosen)
        if args.json:
            write_json(args.json, {"args": vars(args), "rows": rows}, suite="backbones")


if __name__ == "__main__":
    main()

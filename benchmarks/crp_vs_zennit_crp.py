"""lit_xai's CRP against zennit-crp's ``CondAttribution`` (the reference implementation) on VGG-style nets.

zennit-crp 0.6.0 pins ``zennit<=0.4.6`` while lit_xai uses zennit 0.5.1, so the oracle runs in a separate, clean venv
(never install it into the project env). One-time setup (pip takes torch from the machine's local wheel files):

    python -m venv /tmp/crp_oracle_venv
    /tmp/crp_oracle_venv/bin/pip install torch==2.14.1 torchvision==0.29.1 zennit==0.4.6 zennit-crp==0.6.0

Then, from the repository root:

    python -m benchmarks crp_vs_zennit_crp [--oracle-python /tmp/crp_oracle_venv/bin/python] [--nets tiny_vgg,vgg16]

The script builds lit_xai's ``tiny_vgg`` and ``vgg16`` (registry entries, no BatchNorm) with deterministic weights,
checks that a torchvision-only replica (the oracle venv has no lit_xai) computes the identical function, saves state
dicts and inputs to a temporary file, computes our CRP
heatmaps here and zennit-crp's in a subprocess (this same file with ``--worker``), and prints max abs / max relative
differences per (net, layer). zennit 0.4.6 and 0.5.1 differ for BatchNorm (0.5.1 maps it to ``Pass``), which is why
the nets have none; ``EpsilonPlusFlat`` is otherwise the same rule set in both. Target: relative difference < 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn
from torchvision.models import vgg16
from torchvision.models.vgg import make_layers

#: compared nets: lit_xai registry name, input side, concept layers (registry names) -> channels to compare
NETS: dict[str, dict] = {
    "tiny_vgg": {"size": 32, "layers": {"features.9": [0, 5, 17, 40], "features.7": [1, 3, 33, 60],
                                        "features.4": [2, 7, 20, 31]}},
    "vgg16": {"size": 64, "layers": {"features.22": [0, 9, 100, 200], "features.29": [4, 50, 300, 511]}},
}  # fmt: skip
NUM_CLASSES = 5
#: tiny_vgg's structure (lit_xai.models.architectures.vgg.TinyVGG), rebuilt without lit_xai for the oracle venv
TINY_VGG = {"cfg": [16, "M", 32, "M", 64, 64, "M"], "hidden": 64}


class TinyVGGReplica(nn.Module):
    """Module-for-module copy of lit_xai's ``TinyVGG`` (``VGG.forward``: features -> avgpool -> classifier)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = make_layers(list(TINY_VGG["cfg"]), batch_norm=False)
        width, hidden = TINY_VGG["cfg"][-2], TINY_VGG["hidden"]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build_replica(name: str) -> nn.Module:
    """The oracle-side net: the same module tree as the registry entry, built from torchvision only."""
    if name == "tiny_vgg":
        return TinyVGGReplica(NUM_CLASSES).eval()
    if name == "vgg16":
        return vgg16(weights=None, num_classes=NUM_CLASSES).eval()
    raise ValueError(f"unknown net {name!r}; choose from {sorted(NETS)}")


def make_case(name: str, n_images: int = 2, seed: int = 0) -> dict:
    """Deterministic weights of the registry net + inputs; checks the replica computes the same function."""
    from lit_xai.models.architectures import build_architecture

    torch.manual_seed(seed)
    net = build_architecture(name, num_classes=NUM_CLASSES).eval()
    for m in net.classifier:
        if isinstance(m, nn.Linear):  # torchvision's N(0, 0.01) head gives ~1e-4 logits; keep values O(1)
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
    size = NETS[name]["size"]
    x = torch.randn(n_images, 3, size, size)
    replica = build_replica(name)
    replica.load_state_dict(net.state_dict())  # strict: same parameter names and shapes
    with torch.no_grad():
        logits = net(x)
        if not torch.equal(logits, replica(x)):
            raise RuntimeError(f"the oracle replica of {name} does not compute the registry net's function")
    return {
        "name": name,
        "net": net,
        "state_dict": net.state_dict(),
        "x": x,
        "targets": logits.argmax(1),
        "layers": NETS[name]["layers"],
    }


def ours(case: dict) -> tuple[dict, dict]:
    """lit_xai CRP (zennit 0.5.1) per layer: heatmaps (N, K, H, W) and seconds."""
    from lit_xai.explainers import CRP

    maps, secs = {}, {}
    net = case["net"]
    for layer, channels in case["layers"].items():
        # registry defaults: VGGCanonizer (a no-op without BatchNorm), the registry's composite
        crp = CRP(layer=layer, composite="epsilon_plus_flat", batch_size=len(channels))
        start = time.perf_counter()
        maps[layer], _ = crp(net, case["x"], case["targets"], channels=channels)
        secs[layer] = time.perf_counter() - start
    return maps, secs


def ours_float64(case: dict) -> dict:
    """lit_xai CRP in float64 (the explainer API casts to float32, so the core function on a float64 copy)."""
    import copy

    from lit_xai.explainers.crp import crp_heatmaps

    net = copy.deepcopy(case["net"]).double().eval().requires_grad_(False)
    x = case["x"].double()
    maps = {}
    for layer, channels in case["layers"].items():
        ids = torch.tensor(channels)[None].expand(x.shape[0], -1)
        maps[layer], _ = crp_heatmaps(net, x, case["targets"], layer, ids, "epsilon_plus_flat", None, len(channels))
    return maps


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a - ref| / max |ref| over all maps of a layer."""
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def _rel_per_map(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max over maps of max |a - ref| / max |ref| of that map (stricter for weak maps)."""
    diff = (a.double() - ref.double()).flatten(2).abs().amax(2)
    return (diff / ref.double().flatten(2).abs().amax(2).clamp_min(1e-300)).max().item()


def worker(inp: str, out: str) -> None:
    """Runs in the oracle venv: zennit-crp 0.6.0 ``CondAttribution`` with ``exclude_parallel=True``."""
    from crp.attribution import CondAttribution
    from zennit.composites import EpsilonPlusFlat

    case = torch.load(inp, weights_only=False)
    results: dict[str, dict] = {}
    # float32 (timed: the comparison of speed) and float64 (untimed: the reference both float32 results are
    # measured against, so the float32 rounding of each implementation can be told apart)
    for dtype, key in ((torch.float32, "maps"), (torch.float64, "maps64")):
        net = build_replica(case["name"])
        net.load_state_dict(case["state_dict"])
        net = net.to(dtype)
        attribution = CondAttribution(net)
        maps, secs = {}, {}
        for layer, channels in case["layers"].items():
            start = time.perf_counter()
            rows = []
            for i in range(case["x"].shape[0]):
                x = case["x"][i : i + 1].to(dtype).clone().requires_grad_(True)
                conditions = [{"y": [int(case["targets"][i])], layer: [c]} for c in channels]
                result = attribution(x, conditions, EpsilonPlusFlat(), exclude_parallel=True)
                rows.append(result.heatmap.detach())
            secs[layer] = time.perf_counter() - start
            maps[layer] = torch.stack(rows)
        results[key] = maps
        if dtype == torch.float32:
            results["secs"] = secs
    from importlib.metadata import version

    torch.save({**results, "versions": {p: version(p) for p in ("zennit", "zennit-crp")}}, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_python = os.environ.get("CRP_ORACLE_PYTHON", "/tmp/crp_oracle_venv/bin/python")
    parser.add_argument("--oracle-python", default=default_python)
    parser.add_argument("--nets", default="tiny_vgg,vgg16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(*args.worker)
        return 0
    if not os.path.exists(args.oracle_python):
        print(f"oracle python {args.oracle_python} not found; create the venv as described in the module docstring")
        return 2
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets.split(","):
            case = make_case(name)
            inp, out = os.path.join(tmp, f"{name}_in.pt"), os.path.join(tmp, f"{name}_out.pt")
            torch.save({k: v for k, v in case.items() if k != "net"}, inp)
            env = {**os.environ, "PYTHONPATH": ""}  # the oracle must not see lit_xai's zennit 0.5.1
            subprocess.run(
                [args.oracle_python, os.path.abspath(__file__), "--worker", inp, out, "--threads", str(args.threads)],
                check=True,
                env=env,
            )
            oracle = torch.load(out, weights_only=False)
            print(f"oracle: {oracle['versions']}")
            mine, secs = ours(case)
            mine64 = ours_float64(case)
            for layer, ref in oracle["maps"].items():
                diff = (mine[layer] - ref).abs().max().item()
                scale = ref.abs().max().item()
                # guard against a vacuous match: maps of different channels must differ by far more
                between = (ref[:, 1:] - ref[:, :1]).abs().amax().item()
                ref64 = oracle["maps64"][layer]
                row = {
                    "net": name,
                    "layer": layer,
                    "channels": case["layers"][layer],
                    "max_abs_diff": diff,
                    "max_rel_diff": diff / scale,
                    "max_rel_diff_per_map": _rel_per_map(mine[layer], ref),
                    # float32 rounding of each implementation against zennit-crp in float64, and the two
                    # implementations' float64 results against each other (the algorithmic difference)
                    "f32_err_ours": _rel(mine[layer], ref64),
                    "f32_err_zennit_crp": _rel(ref, ref64),
                    "f64_rel_diff": _rel(mine64[layer], ref64),
                    "max_abs_ref": scale,
                    "max_abs_between_channels": between,
                    "sec_ours": secs[layer],
                    "sec_zennit_crp": oracle["secs"][layer],
                }
                results.append(row)
                print(
                    f"{name:9s} {layer:12s} max|ours-ref| {diff:.2e}  max|ref| {scale:.2e}  rel {diff / scale:.2e}  "
                    f"(per map {row['max_rel_diff_per_map']:.2e}; channels differ by {between:.2e}); float32 "
                    f"error vs float64: ours {row['f32_err_ours']:.2e}, zennit-crp {row['f32_err_zennit_crp']:.2e}; "
                    f"float64 ours vs zennit-crp {row['f64_rel_diff']:.2e}; "
                    f"time ours {secs[layer]:.2f}s zennit-crp {oracle['secs'][layer]:.2f}s"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    worst = max(r["max_rel_diff"] for r in results)
    worst64 = max(r["f64_rel_diff"] for r in results)
    # the algorithms agree when the float64 results do; float32 rounding of each is judged against 1e-5
    same_algorithm = worst64 < 1e-9
    err_ours, err_oracle = (max(r[k] for r in results) for k in ("f32_err_ours", "f32_err_zennit_crp"))
    print(
        f"worst relative difference float32 {worst:.2e}, float64 {worst64:.2e} "
        f"({'same algorithm' if same_algorithm else 'ALGORITHMS DIFFER'}); float32 error vs float64: ours "
        f"{err_ours:.2e}, zennit-crp {err_oracle:.2e} ({'within' if err_ours <= 1e-5 else 'ABOVE'} 1e-5)"
    )
    return 0 if same_algorithm and worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

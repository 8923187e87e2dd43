"""Calibrate ShortcutMonitor's alert rule on shortcuts and controls built in code (not part of the default tests).

    python -m benchmarks calibration                  # the table in benchmarks/README.md (~5-10 min on one core)
    python -m benchmarks calibration --seeds 3 --quick  # a smoke run
    python -m benchmarks calibration --json calib.json  # also every measurement

Each case trains a tiny CNN (plain torch loop, one thread) on 32 px images drawn here: a skin-coloured background
with a brown disc; the class cue is the orientation of stripes in the disc (class 0 horizontal, class 1 vertical;
the per-image cue strength ``s`` scales their contrast; ``s = 0`` makes an image ambiguous). A dark ring
(:func:`lit_xai.artifacts.insert_ring`) is planted at a per-class rate. After every epoch
:func:`lit_xai.shortcuts.measure_reliance` runs on a validation pool (class 1 watched, removal pool = training
images), and :class:`lit_xai.shortcuts.AlertRule` decides. Cases:

shortcuts (the ring is learnable and used)
* ``both``: ring in 50 % of class 1, a weak cue everywhere: insertion and removal both move P(class 1);
* ``ring_decides``: ring in 50 % of class 1 on *ambiguous* images (s = 0), strong cue elsewhere: the ring is the only
  evidence on those, so removing it matters (meant as the removal-only case of issue 17; the tiny CNN is additive
  enough that inserting the ring into clear class-0 images moves them too, so both tests show it);
* ``insertion_only``: ring in 50 % of class 1 on images with a strong cue (removal changes nothing: the cue
  saturates P), class 0 ambiguous (inserting the ring tips them);
* ``synthetic``: lit_xai's SyntheticShortcutDataModule images (ring in 40 % of melanomas), 32 px;

controls (no reliance to find)
* ``none``: no ring anywhere (the insertion test puts an object the model never saw into its images);
* ``balanced``: ring in 40 % of both classes (salient, not predictive);
* ``rare``: ring in 1 % of class 1 with a strong cue (predictive on paper, too rare to be learned; at 4 % the tiny
  CNN did learn it in the first epochs, before the cue).

Reported per case: alert rate over seeds (sensitivity on shortcuts, false alarms on controls) and the first-alert
epoch; then the sweep the defaults of AlertRule were chosen from.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_xai.artifacts import AlertRule, ReliancePool, insert_ring, measure_reliance  # noqa: E402

SIZE = 32
#: the fields of each test kept per measurement (what AlertRule reads, and what the tables show)
KEPT = ("effect", "interval", "n", "n_sham", "mean_shift", "sham_shift", "split", "p_before", "logit_effect",
        "logit_interval", "reach")  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    shortcut: bool
    ring0: float  # ring rate in class 0
    ring1: float  # ring rate in class 1
    cue: tuple[float, float] = (0.4, 1.0)  # cue strength range of unremarkable images
    cue_ringed1: tuple[float, float] | None = None  # cue strength of ringed class-1 images (None: as cue)
    cue_class0: tuple[float, float] | None = None  # cue strength of class-0 images (None: as cue)
    synthetic: bool = False
    ring_radius: tuple[float, float] = (0.8, 1.02)  # radius range of the rings in the data (the inserter's default)


CASES = (
    Case("both", True, 0.0, 0.5, cue=(0.0, 0.5)),
    Case("ring_decides", True, 0.0, 0.5, cue=(0.6, 1.0), cue_ringed1=(0.0, 0.0)),
    Case("insertion_only", True, 0.0, 0.5, cue=(0.8, 1.0), cue_class0=(0.0, 0.1)),
    Case("synthetic", True, 0.0, 0.4, synthetic=True),
    Case("none", False, 0.0, 0.0),
    Case("balanced", False, 0.4, 0.4),
    Case("rare", False, 0.0, 0.01, cue=(0.6, 1.0)),
)


def draw(case: Case, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images in [0, 1] and labels of ``case`` (seeded)."""
    if case.synthetic:
        return _synthetic(case, n, seed)
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=g)]
    ringed = torch.rand(n, generator=g) < torch.where(labels == 1, case.ring1, case.ring0)
    lo, hi = torch.full((n,), case.cue[0]), torch.full((n,), case.cue[1])
    if case.cue_class0 is not None:
        lo[labels == 0], hi[labels == 0] = case.cue_class0
    if case.cue_ringed1 is not None:
        sel = ringed & (labels == 1)
        lo[sel], hi[sel] = case.cue_ringed1
    strength = lo + (hi - lo) * torch.rand(n, generator=g)
    # the class cue is the orientation of stripes in a brown disc: horizontal (class 0) or vertical (class 1), with
    # contrast ``0.3 * strength`` (strength 0: a plain disc, ambiguous). A ring is rotation-symmetric, so it is no
    # class evidence to a model that never learned it (a colour or darkness cue would make any dark ring evidence)
    ax = torch.linspace(-1, 1, SIZE)
    yy, xx = ax[:, None], ax[None, :]
    skin = torch.tensor([0.85, 0.70, 0.60]) + 0.04 * torch.randn(n, 3, generator=g)
    img = skin[:, :, None, None] + 0.03 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    centre = 0.1 * (2 * torch.rand(n, 2, generator=g) - 1)
    radius = 0.4 + 0.15 * torch.rand(n, generator=g)
    dist = ((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2).sqrt()
    disc = torch.sigmoid((radius[:, None, None] - dist) / 0.04)[:, None]
    brown = torch.tensor([0.55, 0.38, 0.25]) + 0.04 * torch.randn(n, 3, generator=g)
    freq = (3.0 + 1.5 * torch.rand(n, generator=g))[:, None, None] * math.pi
    phase = (2 * math.pi * torch.rand(n, generator=g))[:, None, None]
    along = torch.where((labels == 1)[:, None, None], xx.expand(n, SIZE, SIZE), yy.expand(n, SIZE, SIZE))
    stripes = 0.3 * strength[:, None, None] * torch.sin(freq * along + phase)
    lesion = brown[:, :, None, None] * (1 + stripes[:, None])
    img = img * (1 - disc) + lesion * disc
    # nuisance illumination: a smooth vignette (dark or light border, up to 60 % darkening) on every image, as
    # dermatoscopes shade; a model then meets border darkness in training, so an inserted ring is a specific
    # pattern (sharp, near black), not an image unlike any it has seen
    r2 = (yy**2 + xx**2)[None]
    amount = (1.2 * torch.rand(n, generator=g) - 0.6)[:, None, None]
    start = (0.3 + 0.5 * torch.rand(n, generator=g))[:, None, None]
    shade = 1 - amount * ((r2.sqrt() - start) / (1.42 - start)).clamp(0, 1)
    img = (img * shade[:, None]).clamp(0, 1)
    rows = ringed.nonzero().flatten()
    if len(rows):
        img[rows] = insert_ring(img[rows], g, radius_range=case.ring_radius)[0]
    return img, labels


def _synthetic(case: Case, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from lit_xai.datamodules.synthetic import ShortcutImageGenerator

    gen = ShortcutImageGenerator(
        image_size=SIZE, seed=seed, ring_fraction_benign=case.ring0, ring_fraction_melanoma=case.ring1
    )
    idx = np.arange(n)
    labels, _ = gen.plan("train", idx)
    images, _ = gen.render("train", idx)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(labels)


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 2),
    )


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.25


def run_case(case: Case, seed: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(seed)
    train_x, train_y = draw(case, args.train, 1000 + seed)
    val_x, val_y = draw(case, args.val, 2000 + seed)
    pool = ReliancePool(val_x, normalize(val_x), val_y, list(range(len(val_y))), split="val")
    pool.detect("ring")
    train_pool = ReliancePool(train_x, normalize(train_x), train_y, list(range(len(train_y))), split="train")
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    measurements = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_y))
        for i in range(0, len(order), 32):
            b = order[i : i + 32]
            loss = nn.functional.cross_entropy(model(normalize(train_x[b])), train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(normalize(val_x)).argmax(1) == val_y).float().mean())
        entry = {"epoch": epoch, "val_acc": acc}
        for sham in args.shams:
            ev = measure_reliance(
                model,
                pool,
                "ring",
                1,
                normalize,
                task="binary",
                num_probes=0,
                num_counterfactual=args.num_counterfactual,
                seed=seed,
                removal_pool=train_pool,
                sham=sham,
            )
            entry[sham] = {
                key: {k: ev[key][k] for k in KEPT if k in ev[key]}
                for key in ("counterfactual", "removal")
                if key in ev
            }
            entry[sham]["exposure"] = ev["exposure"]
        measurements.append(entry)
    return {"case": case.name, "seed": seed, "shortcut": case.shortcut, "measurements": measurements}


def first_alert(run: dict, rule: AlertRule, sham: str, legacy: bool = False) -> int | None:
    """Epoch of the first alert of ``rule`` on a run's measurements (None: no alert). ``legacy``: the rule before
    issue 32 (probability units only, every measurement meets or resets)."""
    rule = AlertRule(**{k: v for k, v in rule.criteria().items()})
    for m in run["measurements"]:
        evidence = {k: {**v, "confidence": 0.95} if k != "exposure" else v for k, v in m[sham].items()}
        if legacy:
            evidence = {k: {f: x for f, x in v.items() if f != "reach"} for k, v in evidence.items()}
        decision, _ = rule.decide(evidence)
        if rule.update("ring/1", decision):
            return m["epoch"]
    return None


def summarize(runs: list[dict], rule: AlertRule, sham: str, legacy: bool = False) -> list[dict]:
    rows = []
    for case in CASES:
        mine = [r for r in runs if r["case"] == case.name]
        if not mine:
            continue
        alerts = [first_alert(r, rule, sham, legacy) for r in mine]
        fired = [a for a in alerts if a is not None]
        last = [r["measurements"][-1] for r in mine]

        def mean_of(key: str, field: str, last: list = last) -> float:
            vals = [m[sham][key][field] for m in last if key in m[sham]]
            return float(np.mean(vals)) if vals else math.nan

        rows.append(
            {
                "case": case.name,
                "kind": "shortcut" if case.shortcut else "control",
                "seeds": len(mine),
                "alert_rate": len(fired) / len(mine),
                "first_alert_epoch": float(np.median(fired)) if fired else math.nan,
                "first_alert_range": (min(fired), max(fired)) if fired else None,
                "val_acc": float(np.mean([m["val_acc"] for m in last])),
                "insertion_effect": mean_of("counterfactual", "effect"),
                "removal_effect": mean_of("removal", "effect"),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        "| case | kind | seeds | alert rate | first alert epoch (median, range) | val acc | insertion effect | "
        "removal effect |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        first = (
            f"{r['first_alert_epoch']:.0f} ({r['first_alert_range'][0]}-{r['first_alert_range'][1]})"
            if r["first_alert_range"]
            else "-"
        )
        print(
            f"| {r['case']} | {r['kind']} | {r['seeds']} | {r['alert_rate']:.2f} | {first} | {r['val_acc']:.2f} | "
            f"{r['insertion_effect']:+.3f} | {r['removal_effect']:+.3f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--val", type=int, default=256)
    parser.add_argument("--num-counterfactual", type=int, default=64)
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--shams", default="mean")
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs (a smoke run)")
    parser.add_argument("--json", help="write every measurement and the tables here")
    parser.add_argument("--load", help="re-tabulate the measurements of an earlier --json run (no training)")
    args = parser.parse_args(argv)
    args.shams = args.shams.split(",")
    if args.quick:
        args.train, args.val, args.epochs = 256, 128, 3
    torch.set_num_threads(1)
    if args.json and not args.load:  # a long run's measurements survive a crash of the tables
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    wanted = set(args.cases.split(","))
    start = time.perf_counter()
    runs = json.loads(Path(args.load).read_text())["runs"] if args.load else []
    for case in CASES:
        if args.load or case.name not in wanted:
            continue
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            runs.append(run_case(case, seed, args))
        print(f"# {case.name}: {args.seeds} seeds in {time.perf_counter() - t0:.0f} s", flush=True)
    default = AlertRule()
    print(f"\n## Chosen defaults: {default!r}, sham insertion 'mean'\n")
    sham0 = "mean" if "mean" in args.shams else args.shams[0]
    print_table(summarize(runs, default, sham0))
    print("\n## The rule before issue 32 (probability only, no saturation handling)\n")
    print_table(summarize(runs, default, sham0, legacy=True))
    print("\n## Saturated tests read on the log-odds: sensitivity / false alarms per min_logit_effect\n")
    print("| min_logit_effect | sensitivity | false alarms | worst shortcut case | worst control case |")
    print("| --- | --- | --- | --- | --- |")
    for logit in (0.25, 0.5, 1.0, 2.0, 4.0):
        rows = summarize(runs, AlertRule(min_logit_effect=logit), sham0)
        sc = [r for r in rows if r["kind"] == "shortcut"]
        ct = [r for r in rows if r["kind"] == "control"]
        sens = sum(r["alert_rate"] * r["seeds"] for r in sc) / max(1, sum(r["seeds"] for r in sc))
        fa = sum(r["alert_rate"] * r["seeds"] for r in ct) / max(1, sum(r["seeds"] for r in ct))
        worst_sens = min((r["alert_rate"] for r in sc), default=math.nan)
        worst_fa = max((r["alert_rate"] for r in ct), default=math.nan)
        print(f"| {logit:g} | {sens:.2f} | {fa:.2f} | {worst_sens:.1f} | {worst_fa:.1f} |")
    print("\n## The same rule without the exposure condition (min_exposure=0)\n")
    print_table(summarize(runs, AlertRule(min_exposure=0), sham0))
    print("\n## Sweep: sensitivity (all shortcut runs) / false-alarm rate (all control runs)\n")
    print("| sham | patience | " + " | ".join(f"min_effect {e}" for e in (0.0, 0.02, 0.05, 0.1, 0.15)) + " |")
    print("| --- | --- |" + " --- |" * 5)
    sweep = {}
    for sham in args.shams:
        for patience in (1, 2, 3):
            cells = []
            for eff in (0.0, 0.02, 0.05, 0.1, 0.15):
                rows = summarize(runs, AlertRule(min_effect=eff, patience=patience), sham)
                sc = [r for r in rows if r["kind"] == "shortcut"]
                ct = [r for r in rows if r["kind"] == "control"]
                sens = sum(r["alert_rate"] * r["seeds"] for r in sc) / max(1, sum(r["seeds"] for r in sc))
                fa = sum(r["alert_rate"] * r["seeds"] for r in ct) / max(1, sum(r["seeds"] for r in ct))
                worst_sens = min((r["alert_rate"] for r in sc), default=math.nan)
                worst_fa = max((r["alert_rate"] for r in ct), default=math.nan)
                cells.append(f"{sens:.2f} / {fa:.2f} (worst {worst_sens:.1f} / {worst_fa:.1f})")
                sweep[f"{sham}/{patience}/{eff}"] = {"sensitivity": sens, "false_alarms": fa}
            print(f"| {sham} | {patience} | " + " | ".join(cells) + " |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.json and not args.load:
        Path(args.json).write_text(json.dumps({"runs": runs, "sweep": sweep}, indent=1))


if __name__ == "__main__":
    main()

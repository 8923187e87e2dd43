"""Recall of discovery *with verification* on weak planted artifacts at realistic prevalence (issue 32, item 2).

Five artifact kinds, none known to a registered detector, are planted in one class of the shapes data (64 px, three
classes of 400 / 150 / 400 training images, :func:`tests._discovery_data.shapes_dataset`) at ``--prevalence`` of the
whole training set (default 3 %: Reveal2Revise's ISIC counts are 150-800 of 25k images, 0.6-3.2 %), and in the same
share of the class in the validation set:

* ``tag``: a small bright square tag (10 % of the side) near the top-left corner, on the *minority* class (150);
* ``ring``: a dark circle of 32 px diameter (3 px wide) around the middle;
* ``cast``: a faint colour cast of the whole image (+0.05 red, -0.03 blue; ``--cast-strength K`` multiplies it);
* ``text``: burnt-in white text ("L", "R", "AP", "PA") near the bottom-left corner;
* ``ruler``: a dark ruler-like line with tick marks every 4 px near the bottom edge.

The last four go to class 2. The artifact's images are hard cases (their object faded to a tenth of its contrast,
in the clean control too): on the shapes the object alone decides the class, and a model would otherwise have no
reason to use an artifact at 3 % prevalence. Per seed a tiny CNN is trained on each planted set and on the *clean
control* (the very same images, nothing planted); then the monitor's policy with its defaults
(:class:`lit_xai.shortcuts.ShortcutWatch`: ``Discovery()``, ``AlertRule()``, ``ShortcutBudget()``: a 256-image
validation pool) runs ``discover`` and ``verify`` once, as the callback does at a discovery epoch. The planted
flags are used only to score what came back:

* **found**: a candidate of the planted class among its top-3 with purity >= 0.5 and recall >= 0.5 of the pool's
  planted images, scoring above the discovery threshold;
* **verified**: that candidate went through the sham-controlled insertion / removal tests and met the alert rule;
* **false alarm** (clean control): any candidate meeting the rule;
* **learned** (the ground truth, not the monitor's): the planted artifact, pasted with its own planting function into
  the clean images of the other classes, raises P(planted class), or the planted images' clean twins (the same image
  without it) lower it, by more than the alert rule's ``min_effect`` (lower 95 % bootstrap bound; no sham: the edit
  is exact). A correct verifier can only verify what the model learned; "verified of learned" is the recall that
  can be asked for (an artifact the model does not use is no shortcut, and verifying it would be a false alarm).

Run:
    python -m benchmarks discovery_recall --quick            # one seed, two kinds: a smoke test (about 2 min)
    python -m benchmarks discovery_recall --json out.json    # 3 seeds x 5 kinds + 3 clean controls
    python -m benchmarks discovery_recall --cache /tmp/r     # keep the trained models; a rerun only re-scores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from _discovery_data import shapes_dataset, tiny_cnn, train_tiny  # noqa: E402

from benchmarks.timing import write_json  # noqa: E402
from lit_xai.artifacts.tags import insert_burnt_text, insert_square_tag  # noqa: E402

KINDS = ("tag", "ring", "cast", "text", "ruler")
SIZE = 64
CLASS_SIZES = (400, 150, 400)


def _ring(images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = images.shape
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    out, masks = images.clone(), torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        cy, cx = (h / 2 + 3 * (torch.rand(2, generator=g) * 2 - 1)).tolist()
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        m = (d >= 13.0) & (d <= 16.0)  # 32 px outer diameter, 3 px wide
        out[i][:, m] = 0.08
        masks[i] = m
    return out, masks


#: the colour cast's shift per channel (+0.05 red, -0.03 blue), times ``--cast-strength``
CAST = (0.05, 0.0, -0.03)
CAST_STRENGTH = 1.0  # --cast-strength
COLOUR = False  # --colour: the pool's colour groups are tested too (lit_xai.shortcuts.colour)


def _cast(images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    shift = CAST_STRENGTH * torch.tensor(CAST)[None, :, None, None]
    return (images + shift).clamp(0, 1), torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.bool)


def _ruler(images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = images.shape
    out, masks = images.clone(), torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        y = int(h - 8 + torch.randint(-2, 3, (), generator=g))
        x0 = int(torch.randint(4, 16, (), generator=g))
        x1 = x0 + int(torch.randint(24, 40, (), generator=g))
        m = torch.zeros(h, w, dtype=torch.bool)
        m[y : y + 2, x0:x1] = True
        for x in range(x0, x1, 4):
            m[y - 3 : y, x] = True
        out[i][:, m] = 0.1
        masks[i] = m
    return out, masks


PLANT = {
    "tag": lambda x, g: insert_square_tag(x, g, side=0.1),
    "ring": _ring,
    "cast": _cast,
    "text": insert_burnt_text,
    "ruler": _ruler,
}
TARGET = {"tag": 1, "ring": 2, "cast": 2, "text": 2, "ruler": 2}


def _data(kind: str | None, seed: int, prevalence: float, split: str) -> tuple[torch.Tensor, ...]:
    """Images, labels and flags of one split; ``kind=None`` is the clean control (same images, nothing planted)."""
    cls = TARGET[kind or "tag"] if kind is not None else 1
    offset = 0 if split == "train" else 1000
    # the share of the class that gets the artifact: ``prevalence`` of the whole set, all in the planted class
    share = prevalence * sum(CLASS_SIZES) / CLASS_SIZES[cls]
    x, y, flags, _ = shapes_dataset(
        size=SIZE, tag=None, tagged_class=cls, fraction=share, seed=seed + offset, class_sizes=CLASS_SIZES
    )
    # the artifact's images are hard cases: their object is faded to FADE of its contrast (in both the planted and
    # the clean sets, so the control differs only by the artifact); the artifact is then the easier cue for them,
    # as a ruler or a marker on a suspicious lesion is for a dermatologist's hard cases
    x[flags] = _fade(x[flags])
    if kind is not None:
        g = torch.Generator().manual_seed(seed + offset + 7)
        x[flags] = PLANT[kind](x[flags], g)[0].clamp(0, 1)
    else:
        flags = torch.zeros_like(flags)
    return x, y, flags


#: contrast of the object kept in the artifact's images (1 = unchanged)
FADE = 0.1


def _fade(images: torch.Tensor) -> torch.Tensor:
    """The dark object (max channel < 0.3: the shapes are drawn at 0.05-0.25 on a 0.35-0.65 background) pulled
    towards the image's background colour, to ``FADE`` of its contrast."""
    obj = images.amax(1, keepdim=True) < 0.3
    background = torch.stack([im[:, ~o[0]].median(1).values for im, o in zip(images, obj)])[:, :, None, None]
    return torch.where(obj, background + FADE * (images - background), images)


def _train_more(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> torch.nn.Module:
    """``epochs`` more epochs of :func:`train_tiny`'s loop (a fresh Adam: the benchmark's second discovery epoch)."""
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed + 99)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            loss = torch.nn.functional.cross_entropy(net(x[idx] - 0.5), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


CACHE: Path | None = None  # --cache: the trained models kept on disk, a rerun only discovers and verifies


def _trained(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, key: str) -> torch.nn.Module:
    """:func:`train_tiny` or, with ``--cache``, its state dict saved under ``key`` by an earlier run."""
    path = None if CACHE is None else CACHE / f"{key}.pt"
    if path is not None and path.exists():
        net = tiny_cnn(int(y.max()) + 1, seed)
        net.load_state_dict(torch.load(path))
        return net.eval()
    net = train_tiny(x, y, epochs=epochs, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), path)
    return net


def ground_truth(net: torch.nn.Module, kind: str, seed: int, prevalence: float) -> dict:
    """Whether the model learned the planted artifact (module docstring, *learned*): the exact insertion and removal
    effects on P(planted class), with 95 % bootstrap intervals."""
    from lit_xai.shortcuts import AlertRule, bootstrap_effect

    cls = TARGET[kind]
    xv, yv, fv = _data(kind, seed, prevalence, "val")
    xc, _, _ = _data(None, seed, prevalence, "val")  # the same images, nothing planted
    other = (yv != cls).nonzero().flatten()[:256]
    g = torch.Generator().manual_seed(seed + 2024)
    pasted = PLANT[kind](xc[other], g)[0].clamp(0, 1)
    with torch.no_grad():

        def p(images: torch.Tensor) -> torch.Tensor:
            return torch.softmax(net(images - 0.5), 1)[:, cls]

        insertion = p(pasted) - p(xc[other])
        removal = p(xc[fv]) - p(xv[fv])  # the planted images' clean twins: a drop is reliance
    zeros = torch.zeros(len(insertion))
    ins = bootstrap_effect(insertion, zeros, seed=seed)
    rem = bootstrap_effect(removal, torch.zeros(len(removal)), sign=-1.0, seed=seed)
    floor = AlertRule().min_effect
    learned = bool(ins["interval"][0] > floor or rem["interval"][0] > floor)
    return {
        "learned": learned, "min_effect": floor,
        "insertion": round(float(ins["effect"]), 4), "insertion_ci": [round(float(v), 4) for v in ins["interval"]],
        "removal": round(float(rem["effect"]), 4), "removal_ci": [round(float(v), 4) for v in rem["interval"]],
        "n_insertion": int(len(insertion)), "n_removal": int(len(removal)),
    }  # fmt: skip


def pool_rows(n: int) -> torch.Tensor:
    """The validation rows the monitor would read: ``ShortcutBudget().pool_size`` of ``n``, seeded, sorted."""
    from lit_xai.shortcuts import ShortcutBudget

    budget = ShortcutBudget()
    return torch.randperm(n, generator=torch.Generator().manual_seed(budget.seed))[: budget.pool_size].sort().values


def run_one(
    kind: str | None, seed: int, prevalence: float, epochs: int, threshold: float | None = None, discoveries: int = 1
) -> dict:
    """One trained model and one discovery + verification of its validation pool (``discoveries=2``: a first one
    2 epochs earlier, as the monitor's previous discovery epoch, so ``Discovery.persist`` can act)."""
    from lit_xai.contracts import ModelSpec, Probes, resolve_contract
    from lit_xai.shortcuts import Discovery, ShortcutWatch, colour_candidates

    t0 = time.perf_counter()
    x, y, _ = _data(kind, seed, prevalence, "train")
    gap = 2 if discoveries > 1 else 0
    key = f"{kind or 'clean'}-{seed}-{prevalence:g}-{epochs - gap}"
    if kind == "cast" and CAST_STRENGTH != 1.0:
        key += f"-x{CAST_STRENGTH:g}"
    net = _trained(x, y, epochs - gap, seed, key)
    xv, yv, fv = _data(kind, seed, prevalence, "val")
    # the monitor's defaults (the ring detector knows none of these artifacts); ``threshold`` overrides discovery's
    watch = ShortcutWatch(("ring",), discovery=Discovery(threshold=threshold))
    rows = pool_rows(len(yv))
    spec = ModelSpec(input_range=(-0.5, 0.5))
    contract = resolve_contract(spec, net, xv[:2] - 0.5, yv[:2])
    probes = Probes(xv[rows] - 0.5, yv[rows], rows.tolist(), fv[rows])
    watch.pool = watch.read_pool(probes, rows.tolist(), contract.to01, "val")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if gap:  # the previous discovery epoch: its candidates are what a group must come back from
            first = watch.discover(net)
            watch.verify(contract, net, first)
            net = _train_more(net, x, y, gap, seed)
        found = watch.discover(net)
        verified = watch.verify(contract, net, found)
        colour = []
        if COLOUR:  # --colour: the colour groups of the images discovery explained, tested as colour casts
            ids = [watch.pool.ids[int(r)] for r in found["rows"]]
            colour = colour_candidates(watch.pool.images01[found["rows"]], found["labels"], ids)
            verified += watch.verify_colour(contract, net, colour, found["rows"], found["labels"])
    planted = {int(i) for i, f in zip(rows.tolist(), fv[rows].tolist()) if f}
    cls = TARGET[kind] if kind is not None else None
    cands = []
    for view, found_here in (("explanations", found["candidates"]), ("colour", colour)):
        for c in found_here:
            hits = sum(int(m) in planted for m in c.members)
            cands.append({
                "view": view, "class": c.class_index, "rank": c.rank, "score": round(c.score, 3), "size": c.size,
                "suspicious": bool(c.suspicious), "purity": hits / c.size, "recall": hits / max(1, len(planted)),
            })  # fmt: skip
    tests = []
    for v in verified:
        decision, reason = watch.rule.decide(v["evidence"])
        hits = sum(int(m) in planted for m in v["members"])
        ins = v["evidence"].get("counterfactual") or {}
        tests.append({
            "key": v["key"], "class": v["class_index"], "rank": v["rank"], "met": bool(decision), "reason": reason,
            "purity": hits / len(v["members"]), "recall": hits / max(1, len(planted)),
            "insertion": ins.get("effect"), "insertion_ci": ins.get("interval"),
        })  # fmt: skip

    truth = ground_truth(net, kind, seed, prevalence) if kind is not None else None

    def on_target(d: dict) -> bool:
        return cls is not None and d["class"] == cls and d["purity"] >= 0.5 and d["recall"] >= 0.5

    target = [c for c in cands if cls is not None and c["class"] == cls and c["view"] == "explanations"]
    best = max(target, key=lambda c: c["purity"] * c["recall"], default=None)
    return {
        "kind": kind or "clean", "seed": seed, "planted_in_pool": len(planted), "threshold": found["threshold"],
        "view": found["view"],
        "best": None if best is None else {k: round(best[k], 2) for k in ("rank", "score", "purity", "recall")},
        "found": any(on_target(c) and c["suspicious"] for c in cands),
        "listed": any(on_target(c) for c in cands),
        "verified": any(on_target(t) and t["met"] for t in tests),
        "screens": [v.get("screen") for v in verified],
        "false_alarms": sum(t["met"] and not on_target(t) for t in tests),
        "candidates": cands, "tests": tests, "truth": truth, "learned": None if truth is None else truth["learned"],
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip


def table(results: list[dict], seeds: list[int], kinds: list[str]) -> str:
    lines = [
        "| kind | planted in pool (per seed) | learned (true insertion effect per seed) "
        "| listed (top-3, pur/rec >= 0.5) | found (above threshold) | verified | other candidates verified |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in [*kinds, "clean"]:
        rows = [r for r in results if r["kind"] == kind]
        if not rows:
            continue
        n = len(rows)
        planted = ", ".join(str(r["planted_in_pool"]) for r in rows)
        if kind == "clean":
            tested = sum(len(r["tests"]) for r in rows)
            lines.append(f"| clean control | 0 | - | - | - | - | {sum(r['false_alarms'] for r in rows)} of {tested} "
                         f"candidates tested ({n} seeds) |")  # fmt: skip
            continue
        effects = ", ".join(f"{r['truth']['insertion']:+.2f}" for r in rows if r.get("truth"))
        learned = f"{sum(bool(r.get('learned')) for r in rows)}/{n} ({effects})"
        lines.append(
            f"| {kind} | {planted} | {learned} | {sum(r['listed'] for r in rows)}/{n} | "
            f"{sum(r['found'] for r in rows)}/{n} | {sum(r['verified'] for r in rows)}/{n} | "
            f"{sum(r['false_alarms'] for r in rows)} |"
        )
    per_seed = []
    for s in seeds:
        mine = [r for r in results if r["seed"] == s and r["kind"] != "clean"]
        hit = sum(r["verified"] for r in mine)
        learned = [r for r in mine if r.get("learned")]
        per_seed.append(
            f"seed {s}: {hit}/{len(kinds)} verified, {sum(r['verified'] for r in learned)} of the {len(learned)} "
            f"kinds the model learned"
        )
    return "\n".join(lines) + "\n\n" + "; ".join(per_seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--prevalence", type=float, default=0.03)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=None, help="discovery threshold (default: the view's)")
    parser.add_argument("--discoveries", type=int, default=1, choices=[1, 2], help="2: one more, 2 epochs before")
    parser.add_argument("--quick", action="store_true", help="one seed, the tag and the text, 12 epochs")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="keep the trained models here; a rerun re-uses them")
    parser.add_argument("--cast-strength", type=float, default=1.0, help="the colour cast's shift times this")
    parser.add_argument("--colour", action="store_true", help="test the pool's colour groups too (colour casts)")
    args = parser.parse_args(argv)
    global CACHE, CAST_STRENGTH, COLOUR
    CACHE, CAST_STRENGTH, COLOUR = args.cache, args.cast_strength, args.colour
    if args.quick:
        args.seeds, args.kinds, args.epochs = args.seeds[:1], ["tag", "text"], 12
    torch.set_num_threads(args.threads)
    results = []
    for seed in args.seeds:
        for kind in [*args.kinds, None]:
            r = run_one(kind, seed, args.prevalence, args.epochs, args.threshold, args.discoveries)
            results.append(r)
            print(f"seed {seed} {r['kind']:6s} planted {r['planted_in_pool']:3d} listed {r['listed']} found "
                  f"{r['found']} verified {r['verified']} other verified {r['false_alarms']} "
                  f"best {r['best']} threshold {r['threshold']:g} "
                  f"tests {[(t['class'], t['rank'], t['met'], round(t['purity'], 2)) for t in r['tests']]} "
                  f"({r['seconds']:.0f} s)", flush=True)  # fmt: skip
            if args.json is not None:
                args.json.write_text(json.dumps({"partial": results}, default=str))
    print(table(results, args.seeds, args.kinds))
    for r in results:
        if r.get("truth"):
            t = r["truth"]
            print(f"truth seed {r['seed']} {r['kind']:6s} learned {t['learned']!s:5s} insertion {t['insertion']:+.3f} "
                  f"{t['insertion_ci']} removal {t['removal']:+.3f} {t['removal_ci']} (n {t['n_insertion']}, "
                  f"{t['n_removal']}); verified {r['verified']}")  # fmt: skip
    if args.json is not None:
        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                   suite="discovery_recall")  # fmt: skip


if __name__ == "__main__":
    main()

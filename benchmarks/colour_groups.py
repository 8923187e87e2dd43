"""Colour groups without a model: how high they come where no learnable cast is planted (issue 32, item 2).

Discovery clusters explanations (*where* a model looks, and the concepts it uses there). A global colour cast has no
place: on ``discovery_recall``'s planted set a cast at 5 times its default strength is learned by every model and
listed by discovery in none (benchmarks/README.md). :func:`lit_xai.shortcuts.colour_candidates` groups each class's
images by their chroma instead (see :mod:`lit_xai.shortcuts.colour`: ``excess``, the distance of a group's mean
chroma from the rest of its class over its same-size null, and ``other``, the share of other classes' images of that
colour). This suite measures, without any model, where the best group of each pool lands; its thresholds
(:data:`~lit_xai.shortcuts.colour.COLOUR_THRESHOLD`, :data:`~lit_xai.shortcuts.colour.COLOUR_MAX_OTHER`) come from
here. Whether a model relies on a group's colour is for the sham-controlled tests (``discovery_recall --colour``).

Runs: ``discovery_recall``'s validation pools (seeded 256 of 950 images, 64 px) of every kind at the default strength
and of the cast at 3 and 5 times it, the clean controls, and the demo's validation pool (``configs/demo.yaml``'s
synthetic data, 96 px, 256 of 400). Per run the best group by ``excess`` and its purity / recall of the planted
images of its class.

    python -m benchmarks colour_groups [--json colour.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

import benchmarks.discovery_recall as recall  # noqa: E402
from lit_xai.shortcuts import colour_candidates  # noqa: E402

__all__ = ["main"]


def _recall_pool(kind: str | None, seed: int, strength: float) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    recall.CAST_STRENGTH = strength
    x, y, flags = recall._data(kind, seed, 0.03, "val")
    rows = recall.pool_rows(len(y))
    return x[rows], y[rows].numpy(), flags[rows].numpy()


def _demo_pool() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    from lit_xai.datamodules import SyntheticShortcutDataModule

    dm = SyntheticShortcutDataModule(num_train=1600, num_val=400, num_test=400, image_size=96)
    ds = dm.dataset("val")
    rows = recall.pool_rows(len(ds)).numpy()
    images = torch.as_tensor(ds.images[rows]).permute(0, 3, 1, 2).float() / 255.0
    return images, np.asarray(ds.targets)[rows], np.asarray(ds.artifacts)[rows].astype(bool)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = [(k, s, 1.0) for k in (*recall.KINDS, None) for s in (0, 1, 2)]
    runs += [("cast", s, strength) for strength in (3.0, 5.0) for s in (0, 1, 2)]
    results = []
    for kind, seed, strength in [*runs, ("demo", 0, 1.0)]:
        x, y, flags = _demo_pool() if kind == "demo" else _recall_pool(kind, seed, strength)
        best = max(colour_candidates(x, y, list(range(len(y)))), key=lambda c: c.score)
        hits = int(flags[best.rows].sum())
        planted = int(flags[y == best.class_index].sum())
        suffix = (f" x{strength:g}" if strength != 1.0 else "") + ("" if kind == "demo" else f"-{seed}")
        name = f"{kind or 'clean'}{suffix}"
        row = {"run": name, "class": best.class_index, "size": best.size, "excess": round(best.score, 3),
               "other": round(best.terms["other"], 3), "purity": round(hits / best.size, 3),
               "recall": round(hits / planted, 3) if planted else None, "suspicious": best.suspicious}  # fmt: skip
        results.append(row)
        print(
            f"{name:14s} best group: class {row['class']}, {row['size']} images, excess {row['excess']:.2f}, other "
            f"{row['other']:.2f}, purity {row['purity']:.2f}, recall {row['recall']}, suspicious {best.suspicious}",
            flush=True,
        )
    controls = [r["excess"] for r in results if not r["run"].startswith(("cast x", "demo"))]
    casts = [r for r in results if r["run"].startswith("cast x5")]
    x5 = ", ".join(f"{r['excess']:.2f} (purity {r['purity']:.2f}, other {r['other']:.2f})" for r in casts)
    print(
        "highest best-group excess without a learnable cast (every default-strength run and the clean controls): "
        f"{max(controls):.2f}; the x5 casts' best groups: {x5}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results}, indent=1))


if __name__ == "__main__":
    main()

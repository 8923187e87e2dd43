"""Measure the ring shortcut of a trained model on the synthetic data, with counterfactual renders.

    python scripts/shortcut_report.py CHECKPOINT [--config configs/demo.yaml] [--split test]

Each sample of the split is rendered twice -- ring forced off and forced on, same lesion and background -- and the
mean predicted melanoma probability is reported per class, with the clean accuracy.
"""

from __future__ import annotations

import argparse
import json

import torch

from lit_xai.cli import instantiate_datamodule
from lit_xai.models import ImageClassifier


def ring_effect(model: ImageClassifier, dm, split: str = "test") -> dict:
    """Mean P(melanoma) per class with the ring forced off / on, plus accuracy without any ring."""
    dm.setup("test" if split == "test" else "fit")
    ds = dm.dataset(split)
    gen = ds.generator
    labels, _ = gen.plan(split, ds.sample_ids)
    out: dict = {"n": int(len(labels))}
    probs = {}
    for ring in (False, True):
        images, _ = gen.render(split, ds.sample_ids, ring=ring)
        x = dm.normalize(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
        with torch.no_grad():
            probs[ring] = model.eval()(x).softmax(1)[:, 1].numpy()
    for c, name in enumerate(dm.class_names):
        sel = labels == c
        out[f"p_melanoma_{name}_no_ring"] = float(probs[False][sel].mean())
        out[f"p_melanoma_{name}_ring"] = float(probs[True][sel].mean())
    out["accuracy_no_ring"] = float(((probs[False] > 0.5).astype(int) == labels).mean())
    out["benign_called_melanoma_with_ring"] = float((probs[True][labels == 0] > 0.5).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    dm = instantiate_datamodule(args.config)
    model = ImageClassifier.load_from_checkpoint(args.checkpoint, map_location="cpu")
    print(json.dumps(ring_effect(model, dm, args.split), indent=2))


if __name__ == "__main__":
    main()

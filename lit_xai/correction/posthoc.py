"""Post-hoc correction of a trained model (P-ClArC, no retraining) and the before/after measurement.

* :func:`measure_artifact_reliance` — accuracy and counterfactual reliance on an artifact, on a split's items:
  insertion shift of P(``target_class``) when the artifact is inserted into clean images of the other classes
  (:func:`lit_xai.shortcuts.reliance.paired_shift`), accuracy on those inserted images, removal shift on the
  target-class images that carry it (when the artifact has a remover).
* :func:`fit_split_cav` — the signal-pattern CAV of a model at a layer, on a bounded seeded sample of a dataset.
* :func:`save_corrected` / :func:`load_corrected` — the corrected checkpoint: the original Lightning checkpoint
  unchanged (so ``YourModule.load_from_checkpoint`` still loads the original network) plus a
  ``"lit_xai_correction"`` record (the CAV). :func:`load_corrected` loads the module the usual way and returns it
  wrapped in a :class:`~lit_xai.correction.ProjectedModel` (projection in registered buffers).
* :func:`correct_main` — ``lit-xai correct --ckpt CKPT --config CONFIG --method pclarc``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Optional

import torch
from torch import nn

from ..artifacts import get_artifact
from ..contracts import read_item
from ..shortcuts.reliance import paired_shift, predict_proba, removal_shift
from .cav import CAV, Pooling, collect_activations, fit_cav, paired_basis
from .labels import LabelSource, sample_labeled
from .projection import ProjectedModel

__all__ = [
    "CORRECTION_KEY",
    "correct_main",
    "fit_split_cav",
    "load_corrected",
    "measure_artifact_reliance",
    "save_corrected",
]

#: key of the correction record in a corrected checkpoint
CORRECTION_KEY = "lit_xai_correction"


def _stack_items(dataset: Any, max_samples: Optional[int] = None) -> dict[str, torch.Tensor]:
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    images, targets, flags, masks = [], [], [], []
    for i in range(n):
        item = read_item(dataset[i])
        images.append(torch.as_tensor(item["image"]).float())
        targets.append(int(item["target"]))
        flags.append(bool(item.get("artifact", False)))
        if "artifact_mask" in item:
            masks.append(torch.as_tensor(item["artifact_mask"]).bool())
    out = {"images": torch.stack(images), "targets": torch.tensor(targets), "artifact": torch.tensor(flags)}
    if len(masks) == n:
        out["masks"] = torch.stack(masks)
    return out


def measure_artifact_reliance(
    model: nn.Module,
    dataset: Any,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    denormalize: Callable[[torch.Tensor], torch.Tensor],
    artifact: str = "ring",
    target_class: int = 1,
    task: str = "multiclass",
    max_samples: Optional[int] = None,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy and counterfactual reliance of ``model`` on ``artifact``, on the (un-augmented) items of ``dataset``.

    Returns:
        ``accuracy`` (the split as it is), ``accuracy_clean`` (items without the artifact flag), ``insertion_shift``
        (mean paired shift of P(``target_class``) when the artifact is inserted into clean images of the other
        classes, seeded), ``accuracy_inserted`` (accuracy on those inserted images), ``insertion_flip_rate``, and --
        when the artifact has a remover and the items carry ``artifact_mask`` -- ``removal_shift`` (mean change of
        P(``target_class``) when it is removed from the target-class images that carry it; negative = relied on).
    """
    data = _stack_items(dataset, max_samples)
    images01 = denormalize(data["images"]).clamp(0, 1)
    targets, flags = data["targets"], data["artifact"]
    probs = predict_proba(model, images01, normalize, task)
    out: dict[str, float] = {"n": float(len(targets))}
    out["accuracy"] = float((probs.argmax(1) == targets).float().mean())
    if (~flags).any():
        out["accuracy_clean"] = float((probs.argmax(1)[~flags] == targets[~flags]).float().mean())
    art = get_artifact(artifact)
    others = (targets != target_class) & ~flags
    if art.insert is not None and others.any():
        before = images01[others]
        after, _ = art.insert(before, torch.Generator().manual_seed(seed))
        shift = paired_shift(model, before, after, target_class, normalize, task)
        out["insertion_shift"] = shift["mean_shift"]
        out["insertion_flip_rate"] = shift["flip_rate"]
        p_after = predict_proba(model, after, normalize, task)
        out["accuracy_inserted"] = float((p_after.argmax(1) == targets[others]).float().mean())
    carriers = (targets == target_class) & flags
    if art.remove is not None and "masks" in data and carriers.any():
        removed = removal_shift(
            model, images01[carriers], target_class, data["masks"][carriers], art.remove, normalize, task
        )
        out["removal_shift"] = removed["mean_shift"]
    return out


def fit_split_cav(
    model: nn.Module,
    dataset: Any,
    layer: str,
    source: LabelSource = "field",
    artifact: str = "ring",
    to01: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    pooling: Pooling = "flatten",
    max_samples: int = 1024,
    seed: int = 0,
    within_class: Optional[int] = None,
    subspace: int = 1,
    from01: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> CAV:
    """The signal-pattern CAV of ``model`` at ``layer`` on a seeded sample of ``dataset`` (see
    :func:`lit_xai.correction.sample_labeled` for the label sources).

    With ``subspace = k > 1`` the CAV also gets a ``k``-dimensional artifact subspace
    (:func:`lit_xai.correction.paired_basis`): the sample's clean images before and after the registered inserter
    of ``artifact`` drew it (needs ``to01`` and ``from01``, model inputs <-> [0, 1]).
    """
    images, labels, _ = sample_labeled(
        dataset, max_samples, source, artifact, to01, torch.Generator().manual_seed(seed), within_class
    )
    acts = collect_activations(model, layer, images, pooling)
    shapes: list[tuple[int, ...]] = []
    from .layers import resolve_layer

    handle = resolve_layer(model, layer).register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape[1:])))
    try:
        collect_activations(model, layer, images[:1], pooling)
    finally:
        handle.remove()
    cav = fit_cav(acts, labels, layer=layer, pooling=pooling, shape=shapes[0])
    if subspace > 1:
        insert = get_artifact(artifact).insert
        if insert is None or to01 is None or from01 is None:
            raise ValueError(
                f"subspace={subspace} needs a registered inserter of {artifact!r} and to01/from01 (model inputs <-> "
                "[0, 1]); or use subspace=1"
            )
        clean = images[~labels.bool()]
        inserted, _ = insert(to01(clean), torch.Generator().manual_seed(seed + 1))
        cav = paired_basis(
            cav, acts[~labels.bool()], collect_activations(model, layer, from01(inserted), pooling), subspace
        )
    return cav


def save_corrected(checkpoint_in: str, checkpoint_out: str, cav: CAV, method: str = "pclarc", **info: Any) -> None:
    """Copy a Lightning checkpoint and add the correction record (the CAV, the method, ``info``)."""
    checkpoint = torch.load(checkpoint_in, map_location="cpu", weights_only=False)
    checkpoint[CORRECTION_KEY] = {"method": method, "cav": cav.to_dict(), **info}
    torch.save(checkpoint, checkpoint_out)


def load_corrected(path: str, module_class: Any, map_location: Any = "cpu") -> ProjectedModel:
    """Load a corrected checkpoint: ``module_class.load_from_checkpoint(path)`` wrapped in a
    :class:`~lit_xai.correction.ProjectedModel` with the saved projection.

    Raises:
        ValueError: when the checkpoint has no correction record (it was not written by ``lit-xai correct``).
    """
    record = torch.load(path, map_location="cpu", weights_only=False).get(CORRECTION_KEY)
    if record is None:
        raise ValueError(f"{path} has no {CORRECTION_KEY!r} record; write one with `lit-xai correct`")
    module = module_class.load_from_checkpoint(path, map_location=map_location)
    return ProjectedModel(module.eval(), CAV.from_dict(record["cav"]))


def _model_class(config_path: str) -> Any:
    import yaml

    with open(config_path) as fh:
        config = yaml.safe_load(fh) or {}
    class_path = (config.get("model") or {}).get("class_path", "lit_xai.models.ImageClassifier")
    module_name, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name or "lit_xai.models"), name)


def _default_layer(model: nn.Module) -> str:
    from ..models.architectures import get_spec

    architecture = getattr(model, "architecture", None)
    if architecture is None:
        raise ValueError("pass --layer (the dotted name of the layer to correct); the model has no architecture spec")
    return f"net.{get_spec(architecture).gradcam_layer}"


def correct_main(argv: list[str]) -> int:
    """``lit-xai correct --ckpt CKPT --config CONFIG [--method pclarc] [--output OUT]``: fit the CAV on the training
    split, write the corrected checkpoint and print reliance and accuracy before -> after (test split)."""
    import argparse
    import json

    from ..datamodules.config import instantiate_datamodule

    parser = argparse.ArgumentParser(prog="lit-xai correct")
    parser.add_argument("--ckpt", required=True, help="the trained Lightning checkpoint")
    parser.add_argument("--config", required=True, help="the training config (its data: and model: sections)")
    parser.add_argument("--method", default="pclarc", choices=["pclarc"])
    parser.add_argument("--output", default=None, help="corrected checkpoint (default: <ckpt>.pclarc.ckpt)")
    parser.add_argument("--layer", default=None, help="dotted layer name (default: the architecture's Grad-CAM layer)")
    parser.add_argument("--artifact", default="ring", help="registered artifact (detector, inserter, remover)")
    parser.add_argument("--labels", default="field", help="'field', 'detector' or comma-separated train indices")
    parser.add_argument("--pooling", default="flatten", choices=["flatten", "mean"])
    parser.add_argument("--target_class", type=int, default=1, help="the class the artifact predicts")
    parser.add_argument("--max_samples", type=int, default=1024, help="training images for the CAV")
    parser.add_argument("--within_class", type=int, default=None, help="fit the CAV within this class only")
    parser.add_argument("--cav_class", type=int, default=None, help=argparse.SUPPRESS)  # deprecated: --within_class
    parser.add_argument(
        "--subspace", type=int, default=1, help="project a k-dim artifact subspace (paired inserter differences)"
    )
    parser.add_argument("--eval_split", default="test", choices=["val", "test"])
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    if opts.cav_class is not None:
        from .._moved import renamed_argument

        renamed_argument("lit-xai correct", "--cav_class", "--within_class", stacklevel=2)
        if opts.within_class is not None:
            parser.error("give --within_class or its old spelling --cav_class, not both")
        opts.within_class = opts.cav_class
    datamodule = instantiate_datamodule(opts.config)
    module_class = _model_class(opts.config)
    model = module_class.load_from_checkpoint(opts.ckpt, map_location="cpu").eval()
    layer = opts.layer or _default_layer(model)
    source: LabelSource = opts.labels if opts.labels in ("field", "detector") else [
        int(i) for i in opts.labels.split(",")
    ]
    datamodule.setup("fit")
    train = datamodule.dataset("train")
    # the CAV is fitted on un-augmented training images when the dataset lets us switch the transform off
    if hasattr(datamodule, "transform") and hasattr(train, "transform"):
        train.transform = datamodule.transform(train=False)
    cav = fit_split_cav(
        model,
        train,
        layer,
        source,
        opts.artifact,
        lambda x: datamodule.denormalize(x).clamp(0, 1),
        opts.pooling,
        opts.max_samples,
        opts.seed,
        opts.within_class,
        opts.subspace,
        datamodule.normalize,
    )
    datamodule.setup("test" if opts.eval_split == "test" else "fit")
    evaluation = datamodule.dataset(opts.eval_split)
    task = getattr(model, "task", "multiclass")
    kwargs = dict(artifact=opts.artifact, target_class=opts.target_class, task=task, seed=opts.seed)
    before = measure_artifact_reliance(model, evaluation, datamodule.normalize, datamodule.denormalize, **kwargs)
    corrected = ProjectedModel(model, cav)
    after = measure_artifact_reliance(corrected, evaluation, datamodule.normalize, datamodule.denormalize, **kwargs)
    output = opts.output or opts.ckpt.rsplit(".ckpt", 1)[0] + ".pclarc.ckpt"
    save_corrected(opts.ckpt, output, cav, opts.method, before=before, after=after)
    print(f"CAV at {layer} ({opts.pooling}): AUC {cav.separability:.3f} on {cav.counts[0]} artifact / "
          f"{cav.counts[1]} clean training images")
    print(f"{'measure':<22}{'before':>10}{'after':>10}")
    for key in before:
        if key != "n":
            print(f"{key:<22}{before[key]:>10.3f}{after.get(key, float('nan')):>10.3f}")
    loader = f"lit_xai.correction.posthoc.load_corrected(path, {module_class.__name__})"
    print(f"corrected checkpoint: {output} (load with {loader})")
    print(json.dumps({"before": before, "after": after}))
    return 0

"""SyntheticShortcutDataModule: determinism, class/ring proportions, ring masks, counterfactual renders, contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_xai.artifacts import ring_mask
from lit_xai.datamodules import ShortcutImageGenerator, SyntheticShortcutDataModule

SIZE = 32


def make(**kwargs) -> SyntheticShortcutDataModule:
    args = {"num_train": 48, "num_val": 24, "num_test": 24, "image_size": SIZE, "batch_size": 8}
    return SyntheticShortcutDataModule(**{**args, **kwargs})


@pytest.fixture(scope="module")
def dm() -> SyntheticShortcutDataModule:
    return make(num_train=64, ring_fraction_melanoma=0.5)


def central_disc(size: int, fraction: float = 0.5) -> np.ndarray:
    """True inside a centred disc of radius ``fraction`` x half the side."""
    return ring_mask(size, size, radius=fraction, edge=1e-6).numpy() == 0


# --------------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_images_different_seed_different():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    for split in ("train", "test"):
        assert np.array_equal(a.dataset(split).images, b.dataset(split).images)
        assert np.array_equal(a.dataset(split).masks, b.dataset(split).masks)
    differs = (a.dataset("train").images != c.dataset("train").images).any(axis=(1, 2, 3))
    assert differs.all(), "a different seed must change every image"


def test_generation_is_per_index_independent_of_order_and_batch():
    gen = ShortcutImageGenerator(image_size=SIZE, seed=7, ring_fraction_melanoma=0.5)
    images, masks = gen.render("val", np.arange(40), chunk=16)
    order = np.random.default_rng(0).permutation(40)[:25]
    shuffled, shuffled_masks = gen.render("val", order, chunk=3)
    assert np.array_equal(shuffled, images[order]) and np.array_equal(shuffled_masks, masks[order])
    single, _ = gen.render("val", [order[0]])
    assert np.array_equal(single[0], images[order[0]])
    # Growing a split keeps its existing samples: sample i does not depend on the split size.
    grown = make(num_val=40, seed=0).dataset("val").images
    assert np.array_equal(grown[:24], make(seed=0).dataset("val").images)


def test_splits_are_disjoint(dm):
    flat = {s: {img.tobytes() for img in dm.dataset(s).images} for s in ("train", "val", "test")}
    assert not flat["train"] & flat["val"] and not flat["train"] & flat["test"] and not flat["val"] & flat["test"]
    assert len(flat["train"]) == 64, "images within a split must differ too"


# --------------------------------------------------------------------------------------------------- proportions


@pytest.mark.parametrize(("melanoma", "ring_benign", "ring_melanoma"), [(0.5, 0.0, 0.3), (0.3, 0.1, 0.6)])
def test_class_balance_and_ring_prevalence_match_configuration(melanoma, ring_benign, ring_melanoma):
    gen = ShortcutImageGenerator(
        seed=11, melanoma_fraction=melanoma, ring_fraction_benign=ring_benign, ring_fraction_melanoma=ring_melanoma
    )
    labels, rings = gen.plan("train", np.arange(1000))
    assert labels.mean() == pytest.approx(melanoma, abs=0.02)
    assert rings[labels == 0].mean() == pytest.approx(ring_benign, abs=0.03)
    assert rings[labels == 1].mean() == pytest.approx(ring_melanoma, abs=0.03)
    if ring_benign == 0.0:
        assert not rings[labels == 0].any(), "ring_fraction_benign=0 must mean no benign ring at all"


def test_small_sets_are_still_balanced(dm):
    # The low-discrepancy plan keeps proportions close even for a handful of samples.
    for split in ("train", "val", "test"):
        targets = dm.targets(split)
        assert abs(targets.mean() - 0.5) <= 2 / len(targets)
        assert dm.dataset(split).artifacts[targets == 0].sum() == 0


def test_item_labels_match_plan(dm):
    ds = dm.dataset("val")
    labels, rings = dm.generator.plan("val", np.arange(len(ds)))
    assert np.array_equal(dm.targets("val"), labels) and np.array_equal(ds.artifacts, rings)
    assert [int(ds[i]["target"]) for i in range(len(ds))] == labels.tolist()


# ----------------------------------------------------------------------------------------------------- ring masks


def test_masks_non_empty_exactly_for_ringed_samples_and_at_the_border(dm):
    ds = dm.dataset("train")
    has_mask = ds.masks.any(axis=(1, 2))
    assert np.array_equal(has_mask, ds.artifacts) and ds.artifacts.sum() >= 8
    ringed = ds.masks[ds.artifacts]
    assert not ringed[:, central_disc(SIZE, 0.7)].any(), "the ring must leave the centre alone"
    corners = ringed[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.all(), "the vignette darkens all four corners"
    # Ground truth agrees with the pixels: the masked region is dark, much darker than the field of view.
    images = ds.images[ds.artifacts].mean(axis=-1)
    assert images[ringed].mean() < 40 and images[~ringed].mean() > 120


def test_item_mask_matches_stored_mask(dm):
    ds = make(augment=False, ring_fraction_melanoma=1.0).dataset("train")
    index = int(np.flatnonzero(ds.artifacts)[0])
    item = ds[index]
    assert item["artifact"] is True
    assert torch.equal(item["artifact_mask"], torch.from_numpy(ds.masks[index]))


# ---------------------------------------------------------------------------------------------- counterfactuals


def test_counterfactual_changes_only_the_ring_region(dm):
    ds = dm.dataset("test")
    centre = central_disc(SIZE, 0.7)
    slack = 2.5 / 255  # uint8 rounding
    for index in range(len(ds)):
        without, empty = ds.render(index, ring=False)
        with_ring, mask = ds.render(index, ring=True)
        assert not empty.any() and mask.any()
        changed = (with_ring != without).any(dim=0).numpy()
        assert not changed[centre].any(), "the counterfactual must not touch the lesion in the centre"
        # Inside the mask (soft vignette > 0.5, darkness >= 0.85) pixels lose more than 40% of their value; outside
        # it only the soft edge may darken them, by at most half.
        inside, outside = mask, ~mask
        assert (with_ring[:, inside] <= 0.6 * without[:, inside] + slack).all()
        assert (with_ring[:, outside] >= 0.5 * without[:, outside] - slack).all()
        assert (with_ring <= without + slack).all(), "the ring only darkens"


def test_render_default_is_the_stored_sample(dm):
    ds = dm.dataset("test")
    for index in range(len(ds)):
        image, mask = ds.render(index)
        assert torch.equal((image * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(ds.images[index]))
        assert torch.equal(mask, torch.from_numpy(ds.masks[index]))
        if ds.artifacts[index]:
            assert torch.equal(ds.render(index, ring=True)[0], image), "forcing the own ring must be a no-op"
        else:
            assert torch.equal(ds.render(index, ring=False)[0], image)
    assert image.dtype == torch.float32 and image.shape == (3, SIZE, SIZE) and 0 <= image.min() <= image.max() <= 1


# ------------------------------------------------------------------------------------------------ loader contract


def test_loader_batches_follow_the_contract(dm):
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "target", "index", "artifact", "artifact_mask"}
    assert batch["image"].shape == (8, 3, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert batch["target"].shape == (8,) and batch["target"].dtype == torch.long
    assert batch["index"].dtype == torch.long and batch["artifact"].dtype == torch.bool
    assert batch["artifact_mask"].shape == (8, SIZE, SIZE) and batch["artifact_mask"].dtype == torch.bool
    assert set(batch["target"].tolist()) <= {0, 1}
    assert dm.num_classes == 2 and dm.class_names == ("benign", "melanoma") and dm.task == "binary"


def test_eval_items_are_the_normalized_stored_images(dm):
    ds = dm.dataset("val")
    image01 = dm.denormalize(ds[3]["image"])
    assert torch.allclose(image01, torch.from_numpy(ds.images[3]).permute(2, 0, 1) / 255.0, atol=1e-5)


def test_augmentation_keeps_ring_mask_on_dark_pixels():
    dm = make(ring_fraction_melanoma=1.0, melanoma_fraction=1.0, augment_strength=1.0)
    ds = dm.dataset("train")
    moved = 0
    for index in range(16):
        item = ds[index]
        gray = dm.denormalize(item["image"]).mean(0)
        mask = item["artifact_mask"]
        assert mask.any() and gray[mask].mean() < 0.3, "the augmented mask left the dark ring"
        assert gray[~mask].mean() > gray[mask].mean() + 0.2
        moved += not torch.equal(mask, torch.from_numpy(ds.masks[index]))
    assert moved >= 4, "training items should be augmented"


@pytest.mark.slow
def test_tiny_resnet_learns_the_lesion_and_the_shortcut():
    """The tuning claim: lesions are learnable and a small ResNet also picks up the ring (about 30 s on one core)."""
    from lit_xai.models.architectures import build_architecture

    torch.manual_seed(0)
    data = SyntheticShortcutDataModule(num_train=1200, num_val=300, num_test=100, batch_size=64, seed=1)
    net = build_architecture("tiny_resnet", data.num_classes)
    epochs, loader = 6, data.train_dataloader()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * len(loader))
    for _ in range(epochs):
        net.train()
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(net(batch["image"]), batch["target"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        batches = list(data.val_dataloader())
        correct = torch.cat([net(b["image"]).argmax(1) == b["target"] for b in batches])
        clean = ~torch.cat([b["artifact"] for b in batches])
        assert correct[clean].float().mean() >= 0.9, "the lesion cue alone must be learnable"
        ds = data.dataset("val")
        benign = np.flatnonzero(data.targets("val") == 0)[:40]
        p_mel = {}
        for ring in (False, True):
            images = torch.stack([ds.render(int(i), ring=ring)[0] for i in benign])
            p_mel[ring] = net(data.normalize(images)).softmax(1)[:, 1].mean().item()
    assert p_mel[True] > p_mel[False] + 0.3, f"no shortcut: P(melanoma | benign) {p_mel}"


# ---------------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ring_fraction_melanoma": 1.5}, "ring_fraction_melanoma"),
        ({"ring_fraction_benign": -0.1}, "ring_fraction_benign"),
        ({"melanoma_fraction": 2.0}, "melanoma_fraction"),
        ({"difficulty": 1.1}, "difficulty"),
        ({"image_size": 12}, "image_size"),
        ({"num_train": 0}, "num_train"),
        ({"num_val": -1}, "num_val"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_render_rejects_bad_index_and_split(dm):
    with pytest.raises(IndexError):
        dm.dataset("val").render(len(dm.dataset("val")))
    with pytest.raises(ValueError, match="unknown split"):
        dm.generator.render("holdout", [0])


def test_init_signature_is_a_yaml_config_schema():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(SyntheticShortcutDataModule, "data")
    cfg = parser.parse_string("data:\n  num_train: 10\n  ring_fraction_melanoma: 0.5\n  mean: [0.5, 0.5, 0.5]\n")
    dm = SyntheticShortcutDataModule(**cfg.data.as_dict())
    assert dm.generator.ring_fraction == (0.0, 0.5) and dm.mean == (0.5, 0.5, 0.5) and dm.num_classes == 2


def test_lightning_trainer_runs_on_the_datamodule():
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)
            self.seen: list[str] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x.mean(dim=(2, 3)))

        def training_step(self, batch, batch_idx):
            self.seen.append("train")
            return torch.nn.functional.cross_entropy(self(batch["image"]), batch["target"])

        def validation_step(self, batch, batch_idx):
            self.seen.append("val")
            assert batch["artifact_mask"].shape[-2:] == batch["image"].shape[-2:]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data, model = make(ring_fraction_melanoma=0.4), Probe()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    assert model.seen.count("train") == 2 and model.seen.count("val") == 3  # 24 val samples, batches of 8
    assert trainer.datamodule.hparams["ring_fraction_melanoma"] == 0.4


def test_hyperparameters_recreate_the_datamodule():
    data = make(ring_fraction_benign=0.2, seed=5)
    assert "val_fraction" not in data.hparams, "only the synthetic signature, so cls(**hparams) works"
    clone = SyntheticShortcutDataModule(**data.hparams)
    assert np.array_equal(clone.dataset("val").images, data.dataset("val").images)


def test_empty_splits_are_allowed():
    data = make(num_val=0, num_test=0)
    assert len(data.dataset("val")) == 0 and len(data.targets("test")) == 0 and len(data.dataset("train")) == 48

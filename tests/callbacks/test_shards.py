"""Sharded sample reading (pure part): the ranks' shards partition the sample and merge back into what one process
reads; optional fields survive only when every part has them."""

import pytest
import torch

from lit_xai.callbacks._shards import merge_shards, read_shared, shard_of
from lit_xai.contracts import Probes
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.probes import select_probes


@pytest.fixture(scope="module")
def val():
    dm = SyntheticShortcutDataModule(num_train=8, num_val=24, num_test=0, image_size=16)
    dm.setup("fit")
    return dm.dataset("val")


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_partition_the_sample(world):
    ids = [2, 3, 5, 7, 11, 13, 17]
    shards = [shard_of(ids, r, world) for r in range(world)]
    assert sorted(i for s in shards for i in s) == ids
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("world", [2, 3, 16])
def test_merged_shards_equal_one_reader(val, world):
    ids = [0, 4, 5, 9, 13, 20, 23]
    alone = select_probes(val, indices=ids)
    parts = [select_probes(val, indices=s) if (s := shard_of(ids, r, world)) else None for r in range(world)]
    merged = merge_shards(parts, ids)
    assert merged.ids == ids
    assert torch.equal(merged.images, alone.images)
    assert torch.equal(merged.targets, alone.targets)
    assert torch.equal(merged.artifact, alone.artifact)
    assert (merged.artifact_masks is None) == (alone.artifact_masks is None)
    if alone.artifact_masks is not None:
        assert torch.equal(merged.artifact_masks, alone.artifact_masks)


def test_optional_field_needs_every_part():
    a = Probes(torch.zeros(1, 1, 2, 2), torch.tensor([0]), [0], torch.tensor([False]), roi_masks=torch.ones(1, 2, 2))
    b = Probes(torch.ones(1, 1, 2, 2), torch.tensor([1]), [1], torch.tensor([True]))
    assert merge_shards([a, b], [0, 1]).roi_masks is None
    assert merge_shards([a], [0]).roi_masks is not None


def test_an_unread_item_is_an_error():
    a = Probes(torch.zeros(1, 1, 2, 2), torch.tensor([0]), [0], torch.tensor([False]))
    with pytest.raises(ValueError, match=r"items \[9\]"):
        merge_shards([a, None], [0, 9])
    with pytest.raises(ValueError, match="no rank"):
        merge_shards([None, None], [0])


class _FakeStrategy:
    """Two ranks in one process: rank 1's part is read here too, so broadcast(src=1) can hand it over."""

    def __init__(self, data, ids):
        self.other = select_probes(data, indices=shard_of(ids, 1, 2))

    def broadcast(self, obj, src=0):
        return self.other if src == 1 else obj


class _FakeTrainer:
    world_size, global_rank = 2, 0

    def __init__(self, data, ids):
        self.strategy = _FakeStrategy(data, ids)


def test_read_shared_gathers_through_the_strategy(val):
    ids = [1, 2, 8, 15, 22]
    got = read_shared(_FakeTrainer(val, ids), val, ids)
    assert torch.equal(got.images, select_probes(val, indices=ids).images)

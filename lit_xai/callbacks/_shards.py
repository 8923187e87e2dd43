"""Read a seeded sample of a dataset spread over Lightning's ranks: each rank decodes its shard, the parts travel
through the trainer's strategy (``strategy.broadcast``, no process group of our own), and every rank ends up with
the whole sample in the order of its indices, the same as one process reading everything.

The pure part (:func:`shard_of`, :func:`merge_shards`) needs no Trainer; :func:`read_shared` is the collective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch

from ..contracts import Probes
from ..probes import select_probes

__all__ = ["merge_shards", "read_shared", "shard_of"]


def shard_of(ids: Sequence[int], rank: int, world: int) -> list[int]:
    """The indices of ``ids`` that ``rank`` of ``world`` reads (every ``world``-th, so shards differ by ≤ 1 item).

    Example:
        >>> shard_of([3, 5, 8, 9, 12], rank=1, world=2)
        [5, 9]
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world}")
    return [int(i) for i in list(ids)[rank::world]]


def merge_shards(parts: Sequence[Optional[Probes]], ids: Sequence[int]) -> Probes:
    """One :class:`~lit_xai.contracts.Probes` in the order of ``ids`` from the ranks' parts (``None``: an empty
    shard). An optional field (artifact or ROI masks) survives only when every part has it, as when one process
    reads all items (:func:`~lit_xai.probes.select_probes` keeps a mask only when every item has one).

    Example:
        >>> a = Probes(torch.zeros(1, 1, 2, 2), torch.tensor([0]), [7], torch.tensor([False]))
        >>> b = Probes(torch.ones(1, 1, 2, 2), torch.tensor([1]), [4], torch.tensor([True]))
        >>> merged = merge_shards([a, b], [4, 7])
        >>> merged.ids, merged.targets.tolist(), merged.artifact.tolist()
        ([4, 7], [1, 0], [True, False])
    """
    present = [p for p in parts if p is not None and len(p)]
    if not present:
        raise ValueError("no rank read any item of the sample")
    position = {i: row for row, i in enumerate(i for p in present for i in p.ids)}
    missing = [int(i) for i in ids if int(i) not in position]
    if missing:
        raise ValueError(f"items {missing[:8]} of the sample were read by no rank")
    order = torch.tensor([position[int(i)] for i in ids], dtype=torch.long)

    def cat(field: str) -> Optional[torch.Tensor]:
        values = [getattr(p, field) for p in present]
        if any(v is None for v in values):
            return None
        return torch.cat([v.cpu() for v in values])[order]

    return Probes(
        images=cat("images"),
        targets=cat("targets"),
        ids=[int(i) for i in ids],
        artifact=cat("artifact"),
        artifact_masks=cat("artifact_masks"),
        roi_masks=cat("roi_masks"),
    )


def read_shared(trainer: Any, data: Any, ids: Sequence[int]) -> Probes:
    """The items ``ids`` of ``data`` read as probes (:func:`~lit_xai.probes.select_probes`), each rank decoding
    ``1/world`` of them. A collective under DDP: every rank must call it with the same ``ids``.

    Example:
        >>> from lit_xai.datamodules import SyntheticShortcutDataModule
        >>> dm = SyntheticShortcutDataModule(num_train=8, num_val=8, num_test=0, image_size=16)
        >>> dm.setup("fit")
        >>> read_shared(None, dm.dataset("val"), [1, 5]).ids
        [1, 5]
    """
    world = 1 if trainer is None else int(trainer.world_size)
    if world == 1:
        return select_probes(data, indices=list(ids))
    rank = int(trainer.global_rank)
    mine = shard_of(ids, rank, world)
    part = select_probes(data, indices=mine) if mine else None
    # every rank hears every part; the strategy pickles it (gloo or NCCL alike), so shapes and optional fields
    # may differ between parts without any padding protocol
    parts = [trainer.strategy.broadcast(part if r == rank else None, src=r) for r in range(world)]
    return merge_shards(parts, ids)

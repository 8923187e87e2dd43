"""Pure artifact detectors, inserters and reliance measures (no Lightning inside)."""

from .inserters import insert_ring, ring_mask

__all__ = ["insert_ring", "ring_mask"]

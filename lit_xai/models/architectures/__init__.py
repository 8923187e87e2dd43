"""Architecture registry; importing this package registers every family."""

from . import resnet  # noqa: F401  (registers)
from .registry import (
    ARCH_ATTR,
    ARCHITECTURES,
    ArchitectureSpec,
    build_architecture,
    get_spec,
    load_local_weights,
    register_architecture,
    spec_of,
)

__all__ = [
    "ARCH_ATTR",
    "ARCHITECTURES",
    "ArchitectureSpec",
    "build_architecture",
    "get_spec",
    "load_local_weights",
    "register_architecture",
    "spec_of",
]

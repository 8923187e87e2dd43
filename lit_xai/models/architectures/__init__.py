"""Architecture registry; importing this package registers every family."""

from . import attention, densenet, efficientnet, resnet, vgg  # noqa: F401  (importing registers the families)
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

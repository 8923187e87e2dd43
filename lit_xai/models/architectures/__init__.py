"""Architecture registry; importing this package registers every family."""

from . import attention, densenet, efficientnet, resnet, vgg  # noqa: F401  (importing registers the families)
from .registry import (
    ARCHITECTURES,
    ArchitectureSpec,
    build_architecture,
    get_spec,
    load_local_weights,
    register_architecture,
)

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "build_architecture",
    "get_spec",
    "load_local_weights",
    "register_architecture",
]

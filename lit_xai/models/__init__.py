"""LightningModules and the architecture registry."""

from .architectures import ARCHITECTURES, ArchitectureSpec, build_architecture, get_spec, register_architecture
from .classifier import ImageClassifier

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "ImageClassifier",
    "build_architecture",
    "get_spec",
    "register_architecture",
]

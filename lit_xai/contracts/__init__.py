"""Contracts shared by models, data, explainers and callbacks (split by job in the next commit)."""

from .model import *  # noqa: F401,F403
from .model import __all__  # noqa: F401

"""A datamodule from a training config's ``data:`` section, with the constructor's own error when it fails.

Below both the command line (:mod:`lit_xai.cli`, which re-exports :func:`instantiate_datamodule`) and correction's
``lit-xai correct`` (:mod:`lit_xai.correction.posthoc`), so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Optional

from lightning.pytorch import LightningDataModule

__all__ = ["instantiate_datamodule"]


class _ConstructorFailed(BaseException):
    """Carries an error raised by a configured class's constructor past jsonargparse.

    jsonargparse tries each member of ``Optional[LightningDataModule]`` (the ``data:`` / ``model:`` / callback types)
    and, when all fail, replaces the constructor's own message by a "Does not validate against any of the Union
    subtypes" listing. Its Union handling catches ``Exception``, so this ``BaseException`` passes through, and
    :meth:`lit_xai.cli.XaiCLI.instantiate_classes` re-raises the original error.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Unburied:
    """Wraps a jsonargparse class instantiator so that a constructor's error reaches the user as raised."""

    def __init__(self, instantiator: Optional[Callable[..., Any]] = None) -> None:
        import inspect

        self.instantiator = instantiator
        self.wants_links = instantiator is not None and (
            "applied_instantiation_links" in inspect.signature(instantiator).parameters
        )

    def __call__(
        self, class_type: type, *args: Any, applied_instantiation_links: Optional[dict] = None, **kwargs: Any
    ) -> Any:
        try:
            if self.instantiator is None:
                return class_type(*args, **kwargs)
            if self.wants_links:
                kwargs["applied_instantiation_links"] = applied_instantiation_links or {}
            return self.instantiator(class_type, *args, **kwargs)
        except Exception as err:
            raise _ConstructorFailed(err) from err


def _unbury(parser: Any) -> None:
    """Make the constructors' own errors reach the user (see :class:`_ConstructorFailed`)."""
    instantiators = getattr(parser, "_instantiators", None) or {}
    # Lightning's own instantiators (model, data: they record the hyper-parameters) keep working, wrapped
    parser._instantiators = {key: _Unburied(fn) for key, fn in instantiators.items()}
    parser.add_instantiator(_Unburied(), object, subclasses=True)  # everything else (callbacks, loggers, ...)


@contextmanager
def _constructor_errors() -> Iterator[None]:
    """Turn :class:`_ConstructorFailed` back into the constructor's own error, marked for :func:`lit_xai.cli.main`."""
    try:
        yield
    except _ConstructorFailed as failed:
        with suppress(AttributeError):  # an exception type without a __dict__ is raised unmarked (with a traceback)
            failed.error.lit_xai_config_error = True  # type: ignore[attr-defined]
        raise failed.error from None


def instantiate_datamodule(config_path: str) -> LightningDataModule:
    """Instantiate only the ``data:`` section of a training config."""
    import yaml
    from jsonargparse import ArgumentParser

    import lit_xai.datamodules  # noqa: F401

    with open(config_path) as fh:
        config = yaml.safe_load(fh) or {}
    if "data" not in config:
        raise ValueError(f"{config_path} has no 'data:' section")
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, "data")
    _unbury(parser)
    cfg = parser.parse_object({"data": config["data"]})
    with _constructor_errors():
        return parser.instantiate_classes(cfg).data

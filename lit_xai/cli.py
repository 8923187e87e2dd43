"""Command line: ``python train.py --config configs/<experiment>.yaml`` (LightningCLI with ``run=False``).

The CLI trains, then tests on the best checkpoint. ``--ckpt_path`` resumes a run; ``--print_config`` prints the
fully resolved configuration. ``data.num_classes``, ``data.task`` and ``data.class_names`` are linked into the
model, so configs never repeat them.

``lit-xai audit --config configs/x.yaml`` runs the artifact audit of the configured datamodule's training set.
``lit-xai report RUN_DIR -o report.html`` writes a run's self-contained HTML report (:mod:`lit_xai.report`).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

# lightning 2.6.6 + jsonargparse >= 4.49 print deprecation warnings on every run (Lightning-AI/pytorch-lightning#21900)
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

from lightning.pytorch import LightningDataModule, LightningModule  # noqa: E402
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI  # noqa: E402

from lit_xai.commands import COMMANDS, TRAIN_USAGE, usage  # noqa: E402

# instantiate_datamodule lives below the CLI (correction's command line needs it too); re-exported here
from .datamodules.config import _constructor_errors, _unbury, instantiate_datamodule  # noqa: E402

__all__ = ["LINKED", "XaiCLI", "build_cli", "main", "report_main", "tool_main", "instantiate_datamodule"]

#: datamodule attributes linked into the model's init arguments
LINKED: tuple[str, ...] = ("num_classes", "task", "class_names")


def _init_defaults(class_path: str) -> dict:
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return {}
    return {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def _normalise(value: object) -> object:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else value


class _ErrorFirstParser(LightningArgumentParser):
    """A config error (a typo'd key, a wrong type) printed as its one line first, before jsonargparse's usage text of
    some 40-60 lines (which ends with the same line again)."""

    def error(self, message: str, ex: Optional[Exception] = None) -> Any:  # noqa: D102
        if self.exit_on_error:
            sys.stderr.write(f"error: {message}\n\n")
        return super().error(message, ex)


class XaiCLI(LightningCLI):
    """LightningCLI with the data -> model links and a ``--ckpt_path`` option (``run=False`` has no subcommands)."""

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        # two monitors of one class with one tag: say so naming `tag`, before Lightning's "state_key must be unique"
        from lit_xai.callbacks._checks import check_unique_tags

        given = config.get("callbacks") or []
        try:
            check_unique_tags([*(given if isinstance(given, list) else [given]), *callbacks])
        except ValueError as err:
            err.lit_xai_config_error = True  # type: ignore[attr-defined]
            raise
        return super()._instantiate_trainer(config, callbacks)

    def add_arguments_to_parser(self, parser) -> None:  # noqa: D102
        parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="checkpoint to resume training from")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="run trainer.test on the best checkpoint")
        for attribute in LINKED:
            parser.link_arguments(f"data.{attribute}", f"model.init_args.{attribute}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        # values the user gave the model for linked arguments (anything but the model class's own default): the link
        # would silently overwrite them, so they are compared with the data's values once both exist
        config = self.config
        model = config.get("model") if hasattr(config, "get") else None
        self._user_links = {}
        if model is None or not getattr(model, "class_path", None):
            return
        defaults = _init_defaults(model.class_path)
        init_args = model.get("init_args") or {}
        for attribute in LINKED:
            value = init_args.get(attribute) if hasattr(init_args, "get") else None
            if value is not None and attribute in defaults and value != defaults[attribute]:
                self._user_links[attribute] = value

    def _add_instantiators(self) -> None:
        super()._add_instantiators()
        _unbury(self.parser)

    def instantiate_classes(self) -> None:  # noqa: D102
        with _constructor_errors():
            super().instantiate_classes()
        for attribute, given in getattr(self, "_user_links", {}).items():
            linked = getattr(self.datamodule, attribute, None)
            if linked is not None and _normalise(given) != _normalise(linked):
                raise ValueError(
                    f"--model.init_args.{attribute}={given!r} disagrees with the data's {attribute} {linked!r}; "
                    f"{attribute} is linked from data.{attribute}, so remove it from the model's arguments (or change "
                    "the data)"
                )


def build_cli(args: ArgsType = None) -> XaiCLI:
    """Parse a config and instantiate trainer, model and datamodule without running anything."""
    import lit_xai.callbacks  # noqa: F401  (so short class paths in configs resolve)
    import lit_xai.datamodules  # noqa: F401
    import lit_xai.models  # noqa: F401

    return XaiCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=args,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_class=_ErrorFirstParser,
    )


def main(args: ArgsType = None, pick_threads: Optional[bool] = None) -> XaiCLI:
    """Train (and test on the best checkpoint) from a YAML config; ``args`` allows in-process use from tests.

    ``pick_threads`` (default: only for a command line, ``args=None``) leaves cores that other processes keep busy
    alone (:func:`lit_xai.threads.configure_threads`); in-process callers keep their own thread count.

    A configured class that refuses its arguments (a dataset folder that does not exist, an unknown architecture)
    ends the program like a wrong option does: its one-sentence message on stderr after ``error:``, exit status 2,
    no traceback (:func:`build_cli` raises the error itself).
    """
    from lit_xai.threads import configure_threads

    given = sys.argv[1:] if args is None else args
    if isinstance(given, (list, tuple)) and any(a in ("-h", "--help") for a in given):
        print(TRAIN_USAGE)  # the short version first; LightningCLI prints every option below it
    # a machine whose cores are already busy: no oversubscribed OpenMP team
    note = configure_threads() if (args is None if pick_threads is None else pick_threads) else None
    try:
        cli = build_cli(args)
    except Exception as err:
        if not getattr(err, "lit_xai_config_error", False):
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if note:
        print(note)
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    trainer.fit(model, datamodule=datamodule, ckpt_path=cli.config.get("ckpt_path"))
    if cli.config.get("test_after_fit", True) and not trainer.interrupted:
        has_test = _has_test_data(datamodule)
        if has_test:
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
            trainer.test(model, datamodule=datamodule, ckpt_path="best" if best else None)
    return cli


def _has_test_data(datamodule: LightningDataModule) -> bool:
    return type(datamodule).test_dataloader is not LightningDataModule.test_dataloader


def tool_main(argv: Optional[list[str]] = None, command_line: bool = False) -> int:
    """``lit-xai <command>``: ``train`` (same as lit-xai-train), ``audit`` (artifact audit of the training set),
    ``correct`` (P-ClArC on a trained checkpoint, see :func:`lit_xai.correction.posthoc.correct_main`) or ``report``
    (a run's self-contained HTML report, see :func:`report_main`). The console script is :func:`lit_xai.tool.main`,
    which answers ``--help`` before importing this module; ``command_line`` marks a run from it."""
    import argparse
    import json

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        main(rest, pick_threads=command_line)
        return 0
    if command == "correct":
        from lit_xai.correction.posthoc import correct_main

        return correct_main(rest)
    if command == "report":
        return report_main(rest)
    if command != "audit":
        print(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="lit-xai audit")
    parser.add_argument("--config", required=True)
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument(
        "--artifacts", nargs="+", default=None, help="registered artifacts to look for (default: ring dark_corners)"
    )
    parser.add_argument("--detectors", nargs="+", default=None, help=argparse.SUPPRESS)  # deprecated: --artifacts
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--output", default=None, help="write the JSON report here")
    opts = parser.parse_args(rest)
    if opts.detectors is not None:
        from lit_xai._moved import renamed_argument

        renamed_argument("lit-xai audit", "--detectors", "--artifacts", stacklevel=2)
        if opts.artifacts is not None:
            parser.error("give --artifacts or its old spelling --detectors, not both")
    artifacts = opts.artifacts or opts.detectors or ["ring", "dark_corners"]
    try:
        datamodule = instantiate_datamodule(opts.config)
    except Exception as err:
        if not getattr(err, "lit_xai_config_error", False):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    from lit_xai.shortcuts import audit_datamodule

    report = audit_datamodule(
        datamodule, split=opts.split, detectors=tuple(artifacts), max_samples=opts.max_samples
    )
    print(report.summary() if hasattr(report, "summary") else report)
    if opts.output:
        with open(opts.output, "w") as fh:
            json.dump(report.to_dict(), fh, indent=2)
    return 0


def report_main(argv: Optional[list[str]] = None) -> int:
    """``lit-xai report RUN_DIR [-o report.html] [--title T] [--lossless]``: one self-contained HTML file (pictures
    embedded, no network, no server) with the run's verdict, audit, alert timeline, probes, concepts and charts.
    Prints where it went, its size and how long it took; exit status 2 (and the reason on stderr) when RUN_DIR holds
    no run, an event file is empty, garbled or cut short, or ``-o`` names a folder."""
    import argparse

    from lit_xai.report import write_report

    parser = argparse.ArgumentParser(prog="lit-xai report", description=report_main.__doc__)
    parser.add_argument("run_dir", help="a TensorBoard run folder (lightning_logs/<name>/version_<n>) or a run folder "
                        "with an xai_images/ fallback folder")
    parser.add_argument("-o", "--output", default=None, help="the HTML file to write (default RUN_DIR/report.html)")
    parser.add_argument("--title", default=None, help="the page title (default: the run folder's name)")
    parser.add_argument("--lossless", action="store_true", help="embed the pictures as logged (PNG, ~4x larger)")
    opts = parser.parse_args(argv)
    try:
        built = write_report(opts.run_dir, opts.output, title=opts.title, lossless=opts.lossless)
    except (OSError, ValueError) as err:  # no run, an unreadable event file, -o naming a folder, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(built.summary())
    return 0

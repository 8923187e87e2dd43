"""The command-line tools' names and one-line summaries, and the short usage blocks printed before any heavy import
(``lit-xai --help`` answers at once; ``python train.py --help`` opens with them before LightningCLI's full help).
Imports nothing: :mod:`lit_xai.tool` and :mod:`lit_xai.cli` both read it."""

from __future__ import annotations

__all__ = ["COMMANDS", "TRAIN_USAGE", "usage"]

#: ``lit-xai`` subcommands and what each does, in one line
COMMANDS: dict[str, str] = {
    "train": "train an experiment from a YAML config, then test the best checkpoint (same as python train.py)",
    "audit": "count artifacts (rings, dark corners, markers) per class in a config's dataset, before training",
    "correct": "remove a shortcut from a trained checkpoint without retraining (P-ClArC), and measure it",
    "report": "write a run's self-contained HTML report (verdict, audit, evidence, probes, charts)",
}

#: what ``python train.py --help`` says before LightningCLI's full option list
TRAIN_USAGE = """\
usage: python train.py --config configs/<experiment>.yaml [--option value ...]

Trains the model of the config, explains fixed probe images at every validation epoch (LRP, CRP, Grad-CAM), tests
the model for shortcut artifacts, then tests the best checkpoint. Logs go to TensorBoard (lightning_logs/).

Options people change most (any config key can be set the same way):
  --config FILE                      the experiment (configs/demo.yaml, configs/melanoma_resnet50.yaml, ...)
  --trainer.max_epochs N             epochs to train
  --data.init_args.batch_size N      images per batch
  --data.init_args.root DIR          where a real dataset lies (ISIC, COVID-QU-Ex, CheXpert, an image folder)
  --seed_everything N                the run's seed
  --ckpt_path FILE                   resume a run from a checkpoint
  --print_config                     print the fully resolved config and exit

Examples:
  python train.py --config configs/demo.yaml
  python train.py --config configs/melanoma_resnet50.yaml --data.init_args.root /data/isic2019 --trainer.max_epochs 20

Every option (LightningCLI):
"""


def usage() -> str:
    """``lit-xai --help``: every subcommand with its line."""
    width = max(map(len, COMMANDS))
    lines = ["usage: lit-xai <command> [options]   (lit-xai <command> --help for a command's options)", ""]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "examples:", "  lit-xai audit --config configs/demo.yaml"]
    lines += ["  lit-xai report lightning_logs/demo/version_0 -o report.html"]
    return "\n".join(lines)

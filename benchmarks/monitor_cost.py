"""The demo with / without both monitors while another process keeps one core busy: the monitors' overhead ratio.

    python -m benchmarks monitor_cost [--repeats 3] [--idle] [--quick] [--profile] [--before DIR] [--no-every-epoch]
                                      [--budget SHARE[,SHARE]]
                                      [--json OUT.json]

Issue 35, item 4. ``python train.py --config configs/demo.yaml`` as a user types it (the command picks its torch
threads, :mod:`lit_xai.threads`) three ways: with the demo's callbacks as shipped (``monitors``), with both
monitors measuring every epoch (``every_epoch``: their schedule before issue 35) and with only the checkpoint
callback (``plain``; the RunReport goes with the monitors: it reports on them), while a pure-Python spinner keeps
one core busy (as ``scripts/readme_figures.py``'s busy-core run; ``--idle``: without it). The three commands
alternate in every repeat (:func:`benchmarks.timing.time_interleaved`, no warm-up round: each run is a fresh
process, and the first round warms the file cache for all alike); the figures are ``monitors / plain`` and
``every_epoch / plain`` of the minima (and the medians of the per-repeat ratios) of the processes' wall time. Each
monitored run's verdict is printed too (alert epoch, insertion / removal effects, discovery epoch, from its
``shortcut_report.json``), so a cheaper schedule is seen not to change what the demo concludes.

Besides the ratio it prints where the monitored runs' time goes, per epoch, from the monitors' own progress lines
("[XAI] epoch 3: done in 1.2 s"): ExplanationMonitor and ShortcutMonitor seconds per measured epoch, min over the
repeats. ``--profile`` adds one monitored run under cProfile (the same busy core) and prints the cumulative seconds
of the monitors' parts (explanations, causal tests, discovery, candidate verification, pictures, report).
``--quick`` (2 epochs) only checks the code path: the figure to quote is the full demo's.

``--before DIR`` adds a fourth command, ``before``: the shipped demo run by another checkout of the package (``DIR``,
e.g. ``git worktree add /tmp/before HEAD~3`` or an extracted ``git archive``: its ``train.py`` with ``DIR`` first on
``PYTHONPATH``), interleaved with the others, so a change's before -> after ratio comes from one session under one
load. ``--no-every-epoch`` leaves out the every-epoch variant (the longest run).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import machine_info, ratio, summary, time_interleaved, write_json  # noqa: E402

__all__ = ["PARTS", "main", "parse_progress"]

#: what --profile reports: (label, a function's "file:line(name)" suffix in the profile)
PARTS: list[tuple[str, str]] = [
    ("ExplanationMonitor (all)", "callbacks/explanation_monitor.py", "run"),
    ("  explanations (measure)", "callbacks/explanation_monitor.py", "measure"),
    ("  pictures (render)", "callbacks/explanation_monitor.py", "render"),
    ("ShortcutMonitor measure (all)", "shortcuts/watch.py", "measure"),
    ("  causal tests (measure_reliance)", "shortcuts/monitoring.py", "measure_reliance"),
    ("  discovery (discover)", "shortcuts/watch.py", "discover"),
    ("  candidate verification (verify)", "shortcuts/watch.py", "verify"),
    ("  relevance outside ROI", "shortcuts/watch.py", "measure_roi"),
    ("logging pictures/scalars (emit)", "callbacks/sinks.py", "emit"),
    ("dataset audit", "shortcuts/audit/scan.py", "audit_dataset"),
    ("report (RunReport write)", "callbacks/report.py", "write"),
]


def _readme_figures():
    spec = importlib.util.spec_from_file_location("lit_xai_readme_figures", ROOT / "scripts" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_progress(stdout: str) -> dict[str, dict[int, float]]:
    """Seconds per measured epoch of each monitor tag from its progress lines (-1: the initial model).

    Example:
        >>> parse_progress("[XAI] epoch 3: done in 1.2 s\\r[XAI/shortcut] initial model: done in 0.5 s")
        {'XAI': {3: 1.2}, 'XAI/shortcut': {-1: 0.5}}
    """
    out: dict[str, dict[int, float]] = {}
    pattern = r"\[([\w/]+)\] (?:epoch (\d+)|initial model): done in ([\d.]+) s"
    for tag, epoch, secs in re.findall(pattern, stdout):
        out.setdefault(tag, {})[int(epoch) if epoch else -1] = float(secs)
    return out


def _configs(out: Path, quick: bool, budget: list[float] | None = None) -> dict[str, Path]:
    """The demo as shipped (``monitors``), without the monitors (``plain``), with both monitors measuring every
    epoch (``every_epoch``: their schedule before issue 35) and, given a ``budget``, as shipped with that time
    budget on the monitors' schedules (``budget``: ``Schedule(..., time_budget=...)``; one share for every monitor,
    or one per monitor in the config's order: ExplanationMonitor, ShortcutMonitor)."""
    import yaml

    figures = _readme_figures()
    paths = {"monitors": figures._config(out, True), "plain": figures._config(out, False)}
    config = yaml.safe_load(paths["monitors"].read_text())
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].startswith("lit_xai.callbacks.") and "Monitor" in callback["class_path"]:
            callback["init_args"]["every_n_epochs"] = 1
    paths["every_epoch"] = out / "demo_every_epoch.yaml"
    paths["every_epoch"].write_text(yaml.safe_dump(config, sort_keys=False))
    if budget is not None:
        config = yaml.safe_load(paths["monitors"].read_text())
        schedules = [
            schedule
            for callback in config["trainer"]["callbacks"]
            if isinstance(schedule := callback.get("init_args", {}).get("every_n_epochs"), dict)
            and schedule.get("class_path", "").endswith("Schedule")
        ]
        shares = budget * len(schedules) if len(budget) == 1 else budget
        if len(shares) != len(schedules):
            raise ValueError(f"--budget: {len(budget)} shares for {len(schedules)} monitors with a Schedule")
        for schedule, share in zip(schedules, shares):
            schedule.setdefault("init_args", {})["time_budget"] = share
        paths["budget"] = out / "demo_budget.yaml"
        paths["budget"].write_text(yaml.safe_dump(config, sort_keys=False))
    if quick:
        for path in paths.values():
            config = yaml.safe_load(path.read_text())
            config["trainer"]["max_epochs"] = 2
            path.write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


def _command(config: Path, save_dir: Path, profile: Path | None = None, root: Path = ROOT) -> list[str]:
    head = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    train = [str(root / "train.py"), "--config", str(config)]
    return [*head, *train, "--trainer.logger.init_args.save_dir", str(save_dir)]


def _env(root: Path) -> dict[str, str]:
    """The environment of a demo run by the checkout ``root``: ``root`` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def _profile_parts(path: Path) -> dict[str, float]:
    import pstats

    stats = pstats.Stats(str(path)).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    out: dict[str, float] = {}
    for label, file, name in PARTS:
        out[label] = sum(v[3] for (f, _, n), v in stats.items() if f.endswith(file) and n == name)
    total = [v[3] for (f, _, n), v in stats.items() if f.endswith("lit_xai/cli.py") and n == "main"]
    out["whole command (cli.main)"] = max(total, default=float("nan"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", action="store_true", help="no busy core")
    parser.add_argument("--quick", action="store_true", help="2 epochs: checks the code path only")
    parser.add_argument("--profile", action="store_true", help="one more monitored run under cProfile")
    parser.add_argument("--before", type=Path, help="another checkout: its shipped demo as a 4th command")
    parser.add_argument("--no-every-epoch", action="store_true", help="leave out the every-epoch variant")
    parser.add_argument(
        "--budget", help="add the demo with Schedule(time_budget=...): one share, or one per monitor (0.03,0.07)"
    )
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "train.py").is_file():
        parser.error(f"--before {args.before}: no train.py there (give the root of another checkout)")
    figures = _readme_figures()
    results: dict[str, Any] = {"busy_core": not args.idle, "quick": args.quick, "repeats": args.repeats}
    monitored = ["monitors"] + ([] if args.no_every_epoch else ["every_epoch"]) + (["before"] if args.before else [])
    monitored += ["budget"] if args.budget is not None else []
    progress: dict[str, list[dict[str, dict[int, float]]]] = {name: [] for name in monitored}
    evidence: dict[str, list[dict[str, Any]]] = {name: [] for name in monitored}
    roots = {"before": args.before.resolve()} if args.before is not None else {}
    if args.before is not None:
        results["before"] = str(args.before.resolve())
    with tempfile.TemporaryDirectory(prefix="lit_xai_monitor_cost_") as tmp:
        out = Path(tmp)
        budget = None if args.budget is None else [float(v) for v in args.budget.split(",")]
        configs = _configs(out, args.quick, budget)
        if args.no_every_epoch:
            del configs["every_epoch"]
        if args.before is not None:
            configs["before"] = configs["monitors"]  # the same demo config, run by the other checkout
        burner = None if args.idle else figures._burner()
        try:
            if burner is not None:
                time.sleep(2.0)  # the other core is busy before the first demo starts
            counter = iter(range(10_000))

            def run(name: str) -> None:
                save = out / f"logs_{name}_{next(counter)}"
                start = time.perf_counter()
                root = roots.get(name, ROOT)
                proc = subprocess.run(
                    _command(configs[name], save, root=root), cwd=out, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, env=_env(root),
                )  # fmt: skip
                if proc.returncode != 0:
                    raise RuntimeError(f"the demo ({name}) failed:\n{proc.stdout[-3000:]}")
                print(f"  ({name}: {time.perf_counter() - start:.1f} s)", flush=True)  # a long run shows progress
                if name in progress:
                    progress[name].append(parse_progress(proc.stdout))
                    run_dirs[name].append(save / "demo" / "version_0")  # its verdict is read after the timing
                    note = next((ln for ln in proc.stdout.splitlines() if ln.startswith("lit_xai: training on")), "")
                    results["threads_note"] = note or "torch's default threads"

            run_dirs: dict[str, list[Path]] = {name: [] for name in progress}
            times = time_interleaved({name: (lambda name=name: run(name)) for name in configs}, args.repeats, warmup=0)
            for name, dirs in run_dirs.items():
                for run_dir in dirs:
                    try:  # what the run concluded: alert epoch, effects, discovery (scripts/readme_figures.py)
                        found = figures._evidence(run_dir)
                        evidence[name].append({k: v for k, v in found.items() if k != "discovery"})
                    except (OSError, KeyError, ValueError) as err:
                        evidence[name].append({"error": f"{type(err).__name__}: {err}"})
            if args.profile:
                prof = out / "monitors.prof"
                subprocess.run(
                    _command(configs["monitors"], out / "logs_profile", prof), cwd=out, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, check=True,
                )  # fmt: skip
                results["profile_cumulative_s"] = _profile_parts(prof)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    where = "one core kept busy by another process" if not args.idle else "no busy core"
    print(f"demo{' (--quick: 2 epochs)' if args.quick else ''}, {where}; {results.get('threads_note', '')}")
    print("wall s: " + "; ".join(f"{k} {[round(t, 1) for t in v]}" for k, v in times.items()))
    labels = {
        "monitors": "as shipped (doubling schedule)",
        "every_epoch": "every epoch (before issue 35)",
        "before": f"as shipped, run by {args.before}",
        "budget": f"as shipped with Schedule(time_budget={args.budget})",
    }
    for name in monitored:
        label = labels[name]
        r = ratio(times[name], times["plain"])
        results |= {f"{name}_over_plain": r["min"], f"{name}_over_plain.median": r["median"]}
        extra = statistics.median(times[name]) - statistics.median(times["plain"])
        print(f"with / without the monitors, {label}: {r['min']:.3f} (median {r['median']:.3f}), +{extra:.1f} s median")
        per_epoch: dict[str, dict[int, float]] = {}
        for run_progress in progress[name]:
            for tag, epochs in run_progress.items():
                for epoch, secs in epochs.items():
                    per_epoch.setdefault(tag, {})[epoch] = min(secs, per_epoch.get(tag, {}).get(epoch, secs))
        results[f"{name}.monitor_secs_per_epoch_min"] = {t: dict(sorted(e.items())) for t, e in per_epoch.items()}
        for tag, epochs in results[f"{name}.monitor_secs_per_epoch_min"].items():
            cells = " ".join(f"{'init' if e < 0 else e}:{s:.1f}" for e, s in epochs.items())
            print(f"  [{tag}] s per measured epoch (min over repeats): {cells}  (sum {sum(epochs.values()):.1f})")
        results[f"{name}.evidence"] = evidence[name]
        for found in evidence[name]:
            print(f"  evidence: {found}")
    if args.before is not None:
        r = ratio(times["monitors"], times["before"])
        results |= {"monitors_over_before": r["min"], "monitors_over_before.median": r["median"]}
        print(f"this checkout / --before, both as shipped: {r['min']:.3f} (median {r['median']:.3f})")
    for name, values in times.items():
        results[f"secs.{name}"], results[f"secs.{name}.all"] = summary(values), values
    for label, secs in results.get("profile_cumulative_s", {}).items():
        print(f"  profile {label:38s} {secs:7.1f} s")
    if args.json:
        write_json(args.json, results | {"machine": machine_info()}, suite="monitor_cost")
    return 0


if __name__ == "__main__":
    sys.exit(main())

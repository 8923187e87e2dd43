"""All speed benchmarks of issue 11 side by side in one run: a printed table and a flat JSON of ratios.

    python -m benchmarks speed [--quick] [--json OUT.json] [--threads 1] [--crp-python /work/venv-crp/bin/python]

Ratios are taken within one process, interleaving the compared calls in every repeat (so background load on the
shared machine hits them alike), and reported as min over repeats (``<key>``) and median (``<key>.median``):

* ``lrp_over_grad.<arch>``: :func:`lit_xai.explainers.lrp_relevance` (fast rule layers) / a plain input gradient,
  ResNet-50 (``epsilon_gamma_box``) and VGG-16 (``epsilon_plus_flat``), 224 px, batch 8 (``--quick``: 64 px,
  batch 2); ``zennit_lrp_over_grad.<arch>`` is zennit's hooks used directly (what ``lrp_relevance`` did before),
  ``lrp_vs_zennit_rel_diff.<arch>`` the max relative difference of the two maps;
* ``crp_over_lrp.resnet50``: ``CRP(top_k=4)`` / ``LRP()`` of the same 8 probes (public calls, concept ranking
  included), ResNet-50 at 224 px;
* ``crp_over_zennit_crp.vgg16``: our CRP / zennit-crp 0.6.0's ``CondAttribution`` for the same maps
  (``python -m benchmarks crp_vs_zennit_crp``, zennit-crp in its own venv; skipped with a note when absent);
  ``crp_vs_zennit_crp_rel_diff`` is max |ours - theirs| / max |theirs| over all maps of a layer (``_per_map``: each map
  by its own maximum), both float32; ``crp_f32_err_vs_f64.{ours,zennit_crp}`` each float32 result against
  zennit-crp in float64, ``crp_f64_rel_diff`` the two implementations in float64 (what remains without float32
  rounding: the algorithmic difference). Create the venv
  outside the repository: ``python -m venv --system-site-packages /work/venv-crp && /work/venv-crp/bin/pip install
  zennit==0.4.6 zennit-crp==0.6.0``;
* ``monitor_overhead.demo``: wall time of ``python train.py --config configs/demo.yaml`` with the monitors / with
  only the checkpoint callback (skipped with ``--quick``);
* ``loader.*``: ``python -m benchmarks loader_throughput``'s ``measure(quick)`` when that script exists;
* ``realistic_overhead.<config>`` (only with ``--only realistic``): the monitors' cost per explained epoch / one
  training epoch of each real experiment config at its real dataset size, *estimated* from measured per-step times
  (:func:`bench_realistic_overhead`);
* ``scale.*``: how cost grows — LRP for 1/4/16 probes, CRP for k = 1/8/32 concepts at a deep and a shallow layer,
  SpRAy on 100/1k/10k heatmaps (seconds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's lit_xai, not whichever is installed

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.timing import machine_info, ratio, summary, time_interleaved, write_json  # noqa: E402

__all__ = ["main", "time_interleaved"]


def _bench(name: str):
    """A script of ``benchmarks/`` as a module (the benchmarks are not a package)."""
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lit_xai_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ratio(results: dict, key: str, num: list[float], den: list[float]) -> None:
    r = ratio(num, den)
    results[key], results[f"{key}.median"] = r["min"], r["median"]


def _secs(results: dict, key: str, values: list[float]) -> None:
    s = summary(values)
    results[key], results[f"{key}.median"] = s["min"], s["median"]


def _zennit_lrp(net: nn.Module, x: torch.Tensor, targets: torch.Tensor, composite: str) -> torch.Tensor:
    """LRP with zennit's hooks registered directly (lrp_relevance before the fast rule layers)."""
    from lit_xai.explainers._core import make_composite, resolve_canonizers

    comp = make_composite(composite, resolve_canonizers(net, None))
    xi = x.clone().requires_grad_(True)
    with comp.context(net):
        out = net(xi)
        init = torch.zeros_like(out)
        rows = torch.arange(len(targets))
        init[rows, targets] = out[rows, targets].detach()
        (rel,) = torch.autograd.grad(out, xi, init)
    return rel


def bench_lrp(results: dict, quick: bool, repeats: int) -> None:
    from lit_xai.explainers import lrp_relevance
    from lit_xai.models.architectures import build_architecture, get_spec

    grad = _bench("lrp_timing").input_gradient
    side, batch = (64, 2) if quick else (224, 8)
    for arch in ("resnet50", "vgg16"):
        torch.manual_seed(0)
        net = build_architecture(arch, num_classes=10).eval().requires_grad_(False)
        composite = get_spec(arch).default_composite
        x, t = torch.randn(batch, 3, side, side), torch.randint(0, 10, (batch,))
        ours, ref = lrp_relevance(net, x, t, composite=composite), _zennit_lrp(net, x, t, composite)
        results[f"lrp_vs_zennit_rel_diff.{arch}"] = float((ours - ref).abs().max() / ref.abs().max())
        times = time_interleaved(
            {
                "grad": lambda net=net, x=x, t=t: grad(net, x, t),
                "lrp": lambda net=net, x=x, t=t, c=composite: lrp_relevance(net, x, t, composite=c),
                "zennit": lambda net=net, x=x, t=t, c=composite: _zennit_lrp(net, x, t, c),
            },
            repeats,
        )
        _ratio(results, f"lrp_over_grad.{arch}", times["lrp"], times["grad"])
        _ratio(results, f"zennit_lrp_over_grad.{arch}", times["zennit"], times["grad"])
        _secs(results, f"secs.grad.{arch}", times["grad"])
        _secs(results, f"secs.lrp.{arch}", times["lrp"])
        _report(
            results, f"LRP {arch} {side}px batch {batch} ({composite})", ["lrp_over_grad", "zennit_lrp_over_grad"], arch
        )


def bench_crp_over_lrp(results: dict, quick: bool, repeats: int) -> None:
    from lit_xai.explainers import CRP, LRP
    from lit_xai.models.architectures import build_architecture

    side, probes = (64, 2) if quick else (224, 8)
    torch.manual_seed(0)
    net = build_architecture("resnet50", num_classes=10).eval()
    x, t = torch.randn(probes, 3, side, side), torch.randint(0, 10, (probes,))
    crp = CRP(top_k=4, batch_size=16)
    lrp = LRP(batch_size=probes)
    times = time_interleaved({"lrp": lambda: lrp(net, x, t), "crp": lambda: crp(net, x, t)}, repeats, warmup=0)
    _ratio(results, "crp_over_lrp.resnet50", times["crp"], times["lrp"])
    _secs(results, "secs.crp_top4.resnet50", times["crp"])
    _secs(results, "secs.lrp_api.resnet50", times["lrp"])
    print(
        f"CRP top-4 / LRP, resnet50 {side}px, {probes} probes: {results['crp_over_lrp.resnet50']:.2f} "
        f"(median {results['crp_over_lrp.resnet50.median']:.2f}; CRP {min(times['crp']):.2f}s, "
        f"LRP {min(times['lrp']):.2f}s)",
        flush=True,
    )


def bench_zennit_crp(results: dict, quick: bool, crp_python: str, threads: int) -> None:
    if not os.path.exists(crp_python):
        results["notes"].append(f"crp_over_zennit_crp skipped: {crp_python} not found (see the module docstring)")
        print(results["notes"][-1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "crp.json")
        nets = "tiny_vgg" if quick else "vgg16"
        _bench("crp_vs_zennit_crp").main(
            ["--oracle-python", crp_python, "--nets", nets, "--threads", str(threads), "--json", out]
        )
        rows = json.load(open(out))
    ours = sum(r["sec_ours"] for r in rows)
    theirs = sum(r["sec_zennit_crp"] for r in rows)
    key = f"crp_over_zennit_crp.{nets}"
    results[key] = ours / theirs
    results[f"crp_vs_zennit_crp_rel_diff.{nets}"] = max(r["max_rel_diff"] for r in rows)
    results[f"crp_vs_zennit_crp_rel_diff_per_map.{nets}"] = max(r["max_rel_diff_per_map"] for r in rows)
    # both float32 results against zennit-crp in float64, and the two implementations in float64 (the algorithmic
    # difference, free of float32 rounding): see benchmarks/crp_vs_zennit_crp.py
    results[f"crp_f32_err_vs_f64.ours.{nets}"] = max(r["f32_err_ours"] for r in rows)
    results[f"crp_f32_err_vs_f64.zennit_crp.{nets}"] = max(r["f32_err_zennit_crp"] for r in rows)
    results[f"crp_f64_rel_diff.{nets}"] = max(r["f64_rel_diff"] for r in rows)
    print(f"CRP / zennit-crp ({nets}, {len(rows)} layers x 4 maps x 2 images): {results[key]:.2f}", flush=True)


def bench_monitor_overhead(results: dict, quick: bool, rounds: int = 2) -> None:
    """``python train.py --config configs/demo.yaml`` without the monitors, with them, and with them
    ``asynchronous: true``; the three runs interleaved in every round, min (and median) over rounds.

    Twice: as is (training uses every core: ``monitor_overhead.demo``, ``.demo_async``) and with training on one
    intra-op thread (``OMP_NUM_THREADS=1``: ``*_train1thread``), which leaves a core idle as GPU training leaves the
    host's cores idle -- the case the background thread is for.
    """
    if quick:
        results["notes"].append("monitor_overhead.demo skipped (--quick)")
        return
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    # the demo's RunReport is no monitor: left out of every variant, so the variants differ in the monitors only
    callbacks = [c for c in config["trainer"]["callbacks"] if "RunReport" not in c["class_path"]]
    monitors = [c for c in callbacks if "Checkpoint" not in c["class_path"]]
    variants = {
        "plain": [c for c in callbacks if "Checkpoint" in c["class_path"]],
        "monitors": callbacks,
        "async": [
            c if c not in monitors else dict(c, init_args={**c["init_args"], "asynchronous": True}) for c in callbacks
        ],
    }
    for suffix, threads in (("", None), ("_train1thread", "1")):
        env = dict(os.environ, **({"OMP_NUM_THREADS": threads} if threads else {}))
        secs: dict[str, list[float]] = {name: [] for name in variants}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(rounds):
                for name, cbs in variants.items():
                    cfg = dict(config, trainer=dict(config["trainer"], callbacks=cbs))
                    cfg["trainer"]["logger"] = {
                        "class_path": cfg["trainer"]["logger"]["class_path"],
                        "init_args": dict(cfg["trainer"]["logger"]["init_args"], save_dir=os.path.join(tmp, "logs")),
                    }
                    path = os.path.join(tmp, f"{name}.yaml")
                    Path(path).write_text(yaml.safe_dump(cfg))
                    start = time.perf_counter()
                    proc = subprocess.run(
                        [sys.executable, str(ROOT / "train.py"), "--config", path],
                        cwd=tmp,
                        capture_output=True,
                        text=True,
                        env=env,
                    )
                    secs[name].append(time.perf_counter() - start)
                    if proc.returncode != 0:
                        results["notes"].append(f"monitor_overhead.demo: {name} run failed: {proc.stderr[-500:]}")
                        return
        _ratio(results, f"monitor_overhead.demo{suffix}", secs["monitors"], secs["plain"])
        _ratio(results, f"monitor_overhead.demo_async{suffix}", secs["async"], secs["plain"])
        for name, values in secs.items():
            _secs(results, f"secs.demo{suffix}.{name}", values)
        print(
            f"demo{suffix} with / without monitors: {results[f'monitor_overhead.demo{suffix}']:.2f} "
            f"(median {results[f'monitor_overhead.demo{suffix}.median']:.2f}), asynchronous "
            f"{results[f'monitor_overhead.demo_async{suffix}']:.2f} "
            f"(median {results[f'monitor_overhead.demo_async{suffix}.median']:.2f}); "
            f"seconds { ({k: [round(v, 1) for v in vs] for k, vs in secs.items()}) }",
            flush=True,
        )


def bench_loader(results: dict, quick: bool) -> None:
    path = ROOT / "benchmarks" / "loader_throughput.py"
    if not path.exists():
        results["notes"].append("loader vs training images/s skipped: benchmarks/loader_throughput.py not present")
        print(results["notes"][-1])
        return
    measured = _bench("loader_throughput").measure(quick)
    for key, value in (measured or {}).items():
        if isinstance(value, (int, float)):
            results[f"loader.{key}"] = float(value)
    print(f"loader: {measured}", flush=True)


def bench_scaling(results: dict, quick: bool, repeats: int) -> None:
    import numpy as np

    from lit_xai.artifacts import spray
    from lit_xai.explainers import explanation_model, lrp_relevance
    from lit_xai.explainers.crp import crp_heatmaps
    from lit_xai.models.architectures import build_architecture

    arch, side = ("small_resnet", 32) if quick else ("resnet50", 64)
    torch.manual_seed(0)
    net = build_architecture(arch, num_classes=10).eval()
    with explanation_model(net) as prepared:
        for probes in (1, 4, 16):
            x, t = torch.randn(probes, 3, side, side), torch.randint(0, 10, (probes,))
            times = time_interleaved(
                {"lrp": lambda x=x, t=t: lrp_relevance(prepared, x, t, "epsilon_gamma_box")}, repeats
            )
            _secs(results, f"scale.lrp_probes_{probes}.{arch}", times["lrp"])
        x, t = torch.randn(1, 3, side, side), torch.tensor([3])
        # deep (most of the net below it) and shallow; small_resnet's layer1 has only 16 channels
        for layer in ("layer3", "layer2" if quick else "layer1"):
            for k in (1, 8, 32):
                ids = torch.arange(k)[None]
                times = time_interleaved(
                    {
                        "crp": lambda layer=layer, ids=ids: crp_heatmaps(
                            prepared, x, t, layer, ids, "epsilon_gamma_box", batch_size=32
                        )
                    },
                    repeats,
                )
                _secs(results, f"scale.crp_k{k}_{layer}.{arch}", times["crp"])
    rng = torch.Generator().manual_seed(0)
    for n in (100, 1000) if quick else (100, 1000, 10000):
        maps = torch.rand(n, 32, 32, generator=rng)
        maps[: n // 5, :8, :8] += 3
        maps[n // 5 : n // 3, 20:, 20:] += 3
        start = time.perf_counter()
        res = spray(maps)
        results[f"scale.spray_{n}"] = time.perf_counter() - start
        assert np.all(np.isfinite(res.eigenvalues))
    print(
        "scaling (min seconds):",
        {k: round(v, 3) for k, v in results.items() if k.startswith("scale.") and not k.endswith(".median")},
        flush=True,
    )


def _report(results: dict, title: str, keys: list[str], arch: str) -> None:
    parts = [f"{k} {results[f'{k}.{arch}']:.2f} (median {results[f'{k}.{arch}.median']:.2f})" for k in keys]
    print(
        f"{title}: " + "; ".join(parts) + f"; max rel diff {results[f'lrp_vs_zennit_rel_diff.{arch}']:.1e}", flush=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, fewer repeats, no demo runs")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--crp-python", default=os.environ.get("CRP_ORACLE_PYTHON", "/work/venv-crp/bin/python"))
    parser.add_argument(
        "--only", default="lrp,crp,zennit_crp,monitor,loader,scaling", help="comma-separated sections to run"
    )
    parser.add_argument("--configs", default=None, help="realistic: comma-separated config names (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 3)
    results: dict = {"notes": [], "threads": args.threads, "quick": args.quick, "machine": machine_info()}
    sections = {
        "lrp": lambda: bench_lrp(results, args.quick, repeats),
        "crp": lambda: bench_crp_over_lrp(results, args.quick, max(1, repeats - 1)),
        "zennit_crp": lambda: bench_zennit_crp(results, args.quick, args.crp_python, args.threads),
        "monitor": lambda: bench_monitor_overhead(results, args.quick),
        "loader": lambda: bench_loader(results, args.quick),
        "scaling": lambda: bench_scaling(results, args.quick, repeats),
        # only with --only realistic
        "realistic": lambda: bench_realistic_overhead(results, args.quick, configs=args.configs),
    }
    for name in args.only.split(","):
        try:
            sections[name]()
        except Exception as err:  # one failing section must not lose the others' numbers
            results["notes"].append(f"{name} failed: {type(err).__name__}: {err}")
            print(results["notes"][-1], flush=True)
        if args.json:  # after every section: a long run interrupted still leaves its numbers
            write_json(args.json, results, suite="speed")
    print("\nkey                                         value")
    for key, value in results.items():
        if isinstance(value, float):
            print(f"{key:43s} {value:10.4g}")  # 4 significant digits: the 1e-5 differences stay readable
    for note in results["notes"]:
        print("note:", note)
    return 0


# ------------------------------------------------------------------------------------------- realistic overhead
#: images in each real dataset (docs: /work/shared/reference/datasets.md); the configs' val/test fractions split them
REAL_DATASET_SIZES: dict[str, tuple[int, str]] = {
    "ISICDataModule": (33_126, "ISIC 2020 training set"),
    "CheXpertDataModule": (223_414, "CheXpert-v1.0-small train.csv"),
    "CovidQUExDataModule": (33_920, "COVID-QU-Ex lung segmentation data"),
    "MelanomaFolderDataModule": (10_605, "Kaggle melanoma_cancer_dataset (train + test)"),
}


def bench_realistic_overhead(results: dict, quick: bool, steps: int = 3, configs: str | None = None) -> None:
    """``realistic_overhead.<config>``: the monitors' cost per explained epoch / one training epoch of every real
    experiment config at its real dataset size.

    **An estimate from measured per-step times**, not a full epoch: the config's model and monitors run for two short
    epochs (``steps`` training batches of synthetic images at the config's image and batch size, on this machine's
    device: CUDA when available); the epoch is then ``ceil(n_train / batch) * train_step + ceil(n_val / batch) *
    val_step`` (medians of the second epoch's batches, data loading excluded) with ``n_train``/``n_val`` from
    :data:`REAL_DATASET_SIZES` and the config's ``val_fraction``/``test_fraction``, and the monitors' cost is the
    second explained epoch end (timed between marker callbacks around them), divided by ``every_n_epochs``.
    ``--quick``: tiny_resnet at 32 px (checks the code path only). ``configs``: comma-separated config names.
    """
    import math

    import yaml
    from lightning.pytorch import Callback, Trainer, seed_everything

    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.models import ImageClassifier

    device = "gpu" if torch.cuda.is_available() else "cpu"

    def sync() -> None:
        if device == "gpu":
            torch.cuda.synchronize()

    class Times(Callback):
        def __init__(self) -> None:
            self.t: dict[str, list[float]] = {}
            self._start = 0.0

        def _begin(self) -> None:
            sync()
            self._start = time.perf_counter()

        def _end(self, key: str, trainer: Trainer) -> None:
            sync()
            if trainer.current_epoch == 1:  # the second (warm) epoch
                self.t.setdefault(key, []).append(time.perf_counter() - self._start)

        def on_train_batch_start(self, trainer: Trainer, *args: object) -> None:
            self._begin()

        def on_train_batch_end(self, trainer: Trainer, *args: object) -> None:
            self._end("train_step", trainer)

        def on_validation_batch_start(self, trainer: Trainer, *args: object) -> None:
            self._begin()

        def on_validation_batch_end(self, trainer: Trainer, *args: object) -> None:
            self._end("val_step", trainer)

    class Mark(Callback):
        def __init__(self, marks: list[float]) -> None:
            self.marks = marks

        def on_validation_epoch_end(self, trainer: Trainer, *args: object) -> None:
            if not trainer.sanity_checking and trainer.current_epoch == 1:
                sync()
                self.marks.append(time.perf_counter())

    def build(spec: dict) -> object:
        module_name, _, cls = spec["class_path"].rpartition(".")
        return getattr(importlib.import_module(module_name), cls)(**spec.get("init_args", {}))

    tmp = tempfile.mkdtemp(prefix="lit_xai_realistic_")
    wanted = None if configs is None else set(configs.split(","))
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if wanted is not None and path.stem not in wanted:
            continue
        config = yaml.safe_load(path.read_text())
        data = config["data"]
        kind = data["class_path"].rsplit(".", 1)[-1]
        if kind not in REAL_DATASET_SIZES:
            continue  # the demo and other synthetic configs
        total, source = REAL_DATASET_SIZES[kind]
        args = data.get("init_args", {})
        if kind == "CheXpertDataModule" and args.get("frontal_only"):
            total, source = 191_000, "CheXpert-v1.0-small train.csv, frontal views only (about 191k)"
        val_fraction, test_fraction = args.get("val_fraction", 0.15), args.get("test_fraction", 0.15)
        n_val = round(total * val_fraction)
        n_train = total - n_val - round(total * test_fraction)
        batch, side = int(args.get("batch_size", 32)), int(args.get("image_size", 224))
        model_args = dict(config["model"].get("init_args", {}), num_classes=2, task="binary")
        model_args.pop("weights_path", None)
        model_args.pop("class_names", None)
        if quick:
            attention = "attention" in model_args["architecture"]
            model_args["architecture"] = "tiny_resnet_attention" if attention else "tiny_resnet"
            batch, side = 8, 32
        monitor_specs = [c for c in config["trainer"].get("callbacks", []) if "lit_xai.callbacks" in c["class_path"]]
        every = min((int(c.get("init_args", {}).get("every_n_epochs", 1)) for c in monitor_specs), default=1)
        seed_everything(0)
        marks: list[float] = []
        times = Times()
        dm = SyntheticShortcutDataModule(
            num_train=batch * steps, num_val=max(batch * 2, 64), num_test=8, image_size=side, batch_size=batch
        )
        trainer = Trainer(
            accelerator=device, devices=1, precision=config["trainer"].get("precision", "32-true"), max_epochs=2,
            num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[times, Mark(marks), *[build(c) for c in monitor_specs], Mark(marks)],
            default_root_dir=tmp,  # the monitors' fallback pictures (no logger) go there, not into the cwd
        )  # fmt: skip
        trainer.fit(ImageClassifier(**model_args), dm)
        train_step, val_step = statistics.median(times.t["train_step"]), statistics.median(times.t["val_step"])
        epoch_s = math.ceil(n_train / batch) * train_step + math.ceil(n_val / batch) * val_step
        monitors_s = (marks[1] - marks[0]) / every if len(marks) == 2 else float("nan")
        name = path.stem
        results[f"realistic_overhead.{name}"] = monitors_s / epoch_s
        results[f"secs.realistic.{name}.monitors_per_explained_epoch"] = monitors_s
        results[f"secs.realistic.{name}.estimated_train_epoch"] = epoch_s
        results["notes"].append(
            f"realistic_overhead.{name}: {model_args['architecture']} {side}px batch {batch}, {n_train} train / "
            f"{n_val} val images ({source}), {device}; estimated epoch from per-step times "
            f"(train {train_step:.3f} s, val {val_step:.3f} s), monitors {monitors_s:.2f} s per explained epoch"
        )
        print(f"{name}: monitors / epoch = {monitors_s / epoch_s:.4f} (estimate; {results['notes'][-1]})", flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""Package structure: no import circle between lit_xai's modules, and the zennit extension stays standalone."""

from __future__ import annotations

import ast
from pathlib import Path

import lit_xai

ROOT = Path(lit_xai.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """lit_xai modules imported anywhere in the file: at module level and inside functions (a lazy import still
    ties the two modules together; hiding a circle in a function does not remove it)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("lit_xai"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lit_xai"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path) if t in modules}
        # importing a submodule runs its packages' __init__ first
        with_parents = set()
        for t in targets:
            parts = t.split(".")
            with_parents.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[name] = {t for t in with_parents if t in modules and t != name}
    return graph


def test_no_import_circle_between_modules():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            # a package importing its own submodules is not a circle
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_artifact_kinds_never_import_the_reliance_analysis():
    graph = _graph()
    kinds = [m for m in graph if m.startswith("lit_xai.artifacts")]
    assert "lit_xai.artifacts.registry" in kinds
    for module in kinds:
        bad = [t for t in graph[module] if t.startswith(("lit_xai.shortcuts", "lit_xai.callbacks", "lit_xai.cli"))]
        assert not bad, (module, bad)


#: the command line and the console entry point above it (``lit-xai``: answers --help, then hands over to the CLI)
ENTRY_POINTS = ("lit_xai.cli", "lit_xai.tool")


def test_library_modules_never_import_the_command_line():
    graph = _graph()
    for module, targets in graph.items():
        if module not in ENTRY_POINTS:
            assert not set(ENTRY_POINTS) & targets, module
    assert graph["lit_xai.commands"] <= {"lit_xai"}  # the help texts import nothing (lit-xai --help at once)


def test_explainers_never_import_models_and_canonizers_import_nothing_of_lit_xai():
    graph = _graph()
    explainers = [m for m in graph if m.startswith("lit_xai.explainers")]
    assert explainers
    for module in explainers:
        assert not any(t.startswith("lit_xai.models") for t in graph[module]), module
    assert not _imports(ROOT / "explainers" / "canonizers.py")


def test_callbacks_are_the_only_lightning_users():
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("callbacks/", "models/", "datamodules/")) or rel == "cli.py":
            continue
        source = path.read_text()
        assert "import lightning" not in source and "from lightning" not in source, rel


def test_callbacks_never_import_zennit_and_explainers_never_import_probes_or_callbacks():
    for path in (ROOT / "callbacks").rglob("*.py"):
        source = path.read_text()
        assert "import zennit" not in source and "from zennit" not in source, path.name
    graph = _graph()
    for module in (m for m in graph if m.startswith("lit_xai.explainers")):
        bad = [t for t in graph[module] if t.startswith(("lit_xai.probes", "lit_xai.callbacks"))]
        assert not bad, (module, bad)


def test_monitor_constructors_stay_small():
    import inspect

    from lit_xai.callbacks import ExplanationMonitor, ExplanationQualityMonitor, ShortcutMonitor

    for monitor in (ExplanationMonitor, ShortcutMonitor, ExplanationQualityMonitor):
        params = [p for p in inspect.signature(monitor.__init__).parameters if p != "self"]
        assert len(params) <= 12, (monitor.__name__, params)


#: test modules that check the project as a whole (not one package), so they sit at the top of tests/
CROSS_CUTTING = {
    "test_bad_input.py": "bad input across explainers, monitors, audit, discovery and the CLI",
    "test_bad_input_extra.py": "the second probe of bad input, across layers",
    "test_cuda.py": "every layer on a CUDA device",
    "test_gpu_check.py": "benchmarks/gpu_check.py's CPU smoke run",
    "test_readme_figures.py": "README's figure blocks against docs/figures/",
    "test_schedule.py": "lit_xai/schedule.py, a top-level module",
    "test_structure.py": "this file: the import graph and the layout of tests/",
    "test_vocabulary.py": "one word per concept across callbacks, commands and configs",
}


def test_tests_mirror_the_package():
    """tests/<package>/ holds the tests of lit_xai/<package>/ (tests/cli/ those of the command line); tests/helpers/
    the modules they share; only the cross-cutting checks above sit at the top; no two test files share a name
    (pytest's default import mode puts each test folder on sys.path, so a second ``test_x.py`` would shadow the first).
    """
    tests = Path(__file__).parent
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders - packages <= {"helpers", "cli"}, f"test folders naming no lit_xai package: {folders - packages}"
    top = {p.name for p in tests.glob("test_*.py")}
    assert top <= set(CROSS_CUTTING), (
        f"{sorted(top - set(CROSS_CUTTING))} at the top of tests/: move each into the folder of the package it tests "
        "(tests/<package>/), or list it in CROSS_CUTTING with why it checks the project as a whole"
    )
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert not list(tests.glob("_*.py")), "shared test modules live in tests/helpers/"

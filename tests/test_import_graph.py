"""The import graph: pages -> dashboard -> engine only, benchmarks -> engine only, no circle in
the engine, and the read-only views never import the pipeline (read from the source, without
importing it)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """Dotted names ``path`` imports (relative ones resolved against ``package``); for
    ``from a.b import c`` both ``a.b`` and ``a.b.c`` (``c`` may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y / from . import y
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _engine_modules() -> dict[str, Path]:
    """Every engine module by dotted name (the remote code, copied into exported folders,
    imports only torch and transformers)."""
    return {
        _module_name(path): path
        for path in (ROOT / "cahp_core").rglob("*.py")
        if "remote_code" not in path.parts or path.name == "__init__.py"
    }


def _engine_graph() -> nx.DiGraph:
    modules = _engine_modules()
    graph = nx.DiGraph()
    for module, path in modules.items():
        graph.add_node(module)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for name in _imports(path, package):
            if name in modules and name != module:
                graph.add_edge(module, name)
    return graph


# the engine's layers, lowest first: a module imports its own layer or lower ones only
LAYERS = ("foundation", "model", "method", "runs", "entry")
ENTRY_POINTS = {"cahp_core.cli", "cahp_core.__main__", "cahp_core.testing"}


def _layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return LAYERS.index("entry")
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else 0


def test_the_engine_has_no_import_circle():
    cycles = list(nx.simple_cycles(_engine_graph()))
    assert cycles == [], cycles


def test_the_engine_is_grouped_in_layers_that_only_import_downwards():
    """foundation (errors, choices, atomic, data, ...) <- model <- method <- runs <- cli."""
    graph = _engine_graph()
    assert {_layer(m) for m in graph} == set(range(len(LAYERS)))  # every layer is in use
    upward = [(a, b) for a, b in graph.edges if _layer(b) > _layer(a)]
    assert upward == [], upward


def test_the_engine_never_imports_the_ui():
    for path in (ROOT / "cahp_core").rglob("*.py"):
        if path.name == "cli.py":  # `cahp dashboard` starts the UI: the launcher may name it
            continue
        names = _imports(path, "cahp_core")
        assert not any(
            n.split(".")[0] in {"streamlit", "cahp_studio", "dashboard"} for n in names
        ), path


def test_read_only_views_and_the_format_do_not_import_the_pipeline():
    graph = _engine_graph()
    for module in (
        "cahp_core.runs.results",
        "cahp_core.runs.run_format",
        "cahp_core.runs.run_selection",
    ):
        assert "cahp_core.runs.pipeline" not in nx.descendants(graph, module), module
    assert nx.descendants(graph, "cahp_core.runs.run_format") <= {
        "cahp_core.atomic",
        "cahp_core.errors",
        "cahp_core.model.folder_format",
    }


def test_the_dashboard_never_imports_pages_and_pages_never_import_benchmarks():
    for path in (ROOT / "dashboard").glob("*.py"):
        assert not any("pages" in n.split(".") for n in _imports(path, "dashboard")), path
    for path in (ROOT / "pages").glob("*.py"):
        names = _imports(path, "pages")
        assert not any(n.split(".")[0] == "benchmarks" for n in names), path
        assert '"benchmarks"' not in path.read_text(encoding="utf-8"), path  # no path into it


def test_benchmarks_never_import_the_dashboard():
    """The benchmark scripts share colours and result reading with the dashboard through the
    engine (``cahp_core.palette``, ``cahp_core.benchmark_results``), never the UI itself."""
    for path in (ROOT / "benchmarks").rglob("*.py"):
        names = _imports(path, "benchmarks")
        assert not any(
            n.split(".")[0] in {"streamlit", "dashboard", "pages"} or n.startswith("cahp_studio")
            for n in names
        ), path


def test_run_folder_file_names_are_spelled_once():
    """Every run-folder file name appears in the engine only in run_format.py."""
    from cahp_core.runs.run_format import ARTEFACTS, EXPORT_INFO, LEGACY_KEPT_HEADS_FILE

    names = [a.file for a in ARTEFACTS if "." in a.file] + [EXPORT_INFO, LEGACY_KEPT_HEADS_FILE]
    for path in [*(ROOT / "cahp_core").rglob("*.py"), *(ROOT / "dashboard").glob("*.py")]:
        if path.name in ("run_format.py", "folder_format.py"):
            continue
        text = path.read_text(encoding="utf-8")
        for name in names:
            assert f'"{name}"' not in text, (path.name, name)

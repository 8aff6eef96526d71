"""The import graph: pages -> dashboard -> engine only, benchmarks -> engine only, no circle in
the engine, and the read-only views never import the pipeline (read from the source, without
importing it)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """Top-level names of the project's modules ``path`` imports (relative ones resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y / from . import y
                module = f"{package}.{node.module}" if node.module else package
                names = [module] if node.module else [f"{package}.{a.name}" for a in node.names]
                found.update(names)
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _engine_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in (ROOT / "cahp_core").glob("*.py"):
        module = f"cahp_core.{path.stem}"
        graph.add_node(module)
        for name in _imports(path, "cahp_core"):
            if name.startswith("cahp_core.") and name.count(".") == 1:
                graph.add_edge(module, name)
    return graph


def test_the_engine_has_no_import_circle():
    cycles = list(nx.simple_cycles(_engine_graph()))
    assert cycles == [], cycles


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
    for module in ("cahp_core.results", "cahp_core.run_format", "cahp_core.run_selection"):
        assert "cahp_core.pipeline" not in nx.descendants(graph, module), module
    assert nx.descendants(graph, "cahp_core.run_format") <= {"cahp_core.atomic", "cahp_core.errors"}


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
    from cahp_core.run_format import ARTEFACTS, EXPORT_INFO, LEGACY_KEPT_HEADS_FILE

    names = [a.file for a in ARTEFACTS if "." in a.file] + [EXPORT_INFO, LEGACY_KEPT_HEADS_FILE]
    for path in [*(ROOT / "cahp_core").glob("*.py"), *(ROOT / "dashboard").glob("*.py")]:
        if path.name == "run_format.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name in names:
            assert f'"{name}"' not in text, (path.name, name)

"""Shared helpers for the benchmark scripts (paths, records, resumable result files)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # the published results
WORK = ROOT / "benchmarks" / "runs"  # scratch run folders (git-ignored)
_out: Path | None = None  # --out: results and scratch runs under this folder instead
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def data_dir(task: str) -> str:
    """The shared data folder of a task (the benchmarks read the offline copies)."""
    folder = SHARED_DATA / task
    if not folder.is_dir():
        raise SystemExit(
            f"benchmark data not found: {folder} (expected ../shared/data beside the repo)"
        )
    return str(folder)


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser``'s arguments plus ``--out``, which moves results and scratch runs."""
    parser.add_argument(
        "--out",
        help="write results (OUT/results) and scratch runs (OUT/runs) here instead of "
        "benchmarks/ (the tests pass a temporary folder)",
    )
    args = parser.parse_args()
    global _out
    _out = Path(args.out) if args.out else None
    return args


def results_dir() -> Path:
    """Where results are written and read: benchmarks/results, or OUT/results."""
    return RESULTS if _out is None else _out / "results"


def work_dir() -> Path:
    """Scratch run folders: benchmarks/runs, or OUT/runs."""
    return WORK if _out is None else _out / "runs"


def result_path(name: str, smoke: bool) -> Path:
    """RESULTS/<name>.json (``<name>.smoke.json`` in smoke mode), under ``results_dir()``."""
    return results_dir() / (f"{name}.smoke.json" if smoke else f"{name}.json")


def write_results(name: str, records, smoke: bool) -> Path:
    """Write ``records`` to ``result_path(name, smoke)`` atomically."""
    from cahp_core.atomic import write_json_atomic

    path = result_path(name, smoke)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, records)
    print(f"wrote {path}")
    return path


def read_results(name: str, smoke: bool, default=None):
    """The published ``result_path(name, smoke)``, or ``default`` if there is none yet."""
    path = result_path(name, smoke)
    return json.loads(path.read_text()) if path.is_file() else default


def merge_task_records(
    name: str, records: list[dict], tasks: list[str], smoke: bool, protocol: str | None = None
) -> list[dict]:
    """``records`` plus the published records of tasks not run now (running one task keeps the
    rest); with ``protocol``, also those of the same tasks under other protocols (records
    without one are the CPU protocol's)."""
    previous = read_results(name, smoke, [])
    return [
        r
        for r in previous
        if r.get("task") not in tasks
        or (protocol is not None and r.get("protocol", "cpu") != protocol)
    ] + records


class RecordCache:
    """Append-only JSON Lines of finished measurements, so an interrupted benchmark resumes."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = []
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file: another process may have finished measurements meanwhile."""
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        self.records = [json.loads(line) for line in lines if line.strip()]

    def find(self, **key) -> list[dict]:
        return [r for r in self.records if all(r.get(k) == v for k, v in key.items())]

    def add(self, record: dict) -> None:
        self.records.append(record)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

"""Read-only views of finished runs (for the dashboard and reports) and the embedded bundle.

A *bundle* is a run folder without model weights or large arrays: what every dashboard
page needs to draw, small enough to ship in ``assets/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from .atomic import load_npz, load_safetensors_numpy, write_json_atomic, write_npz_atomic
from .clustering import ClusteringResult, clusterings_from_arrays
from .config import RunConfig, check_seed_sweep
from .errors import RunFolderError
from .salience import Salience
from .selection import CAHPSelector

BUNDLE_FILES = (
    "manifest.json",
    "summary.json",
    "selection.json",
    "salience.json",
    "clustering.npz",
    "task_curve.json",
    "graph.json",
    "diagnostics.json",
)
REQUIRED_FILES = ("manifest.json", "salience.json", "clustering.npz", "selection.json")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(
            f"cannot read {path} ({exc}); re-run the stage that writes it"
        ) from exc


@dataclass
class RunView:
    """Everything a finished run shows, loaded lazily from its folder (or bundle)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        missing = [name for name in REQUIRED_FILES if not (self.path / name).is_file()]
        if missing:
            raise RunFolderError(
                f"{self.path} is not a finished CAHP run (missing {', '.join(missing)}); "
                "finish it with `cahp run` or pick another run"
            )

    @cached_property
    def manifest(self) -> dict:
        return _read_json(self.path / "manifest.json")

    @cached_property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.manifest.get("config", {}))

    @cached_property
    def summary(self) -> dict | None:
        path = self.path / "summary.json"
        return _read_json(path) if path.is_file() else None

    @cached_property
    def selection(self) -> dict:
        return _read_json(self.path / "selection.json")

    @cached_property
    def salience(self) -> Salience:
        return Salience.from_dict(_read_json(self.path / "salience.json"))

    @cached_property
    def clusterings(self) -> list[ClusteringResult]:
        """One clustering per seed; a RunFolderError naming `cahp recluster` for a run
        clustered by an earlier version."""
        check_seed_sweep(self.config_dict, str(self.path))
        return clusterings_from_arrays(load_npz(self.path / "clustering.npz"), str(self.path))

    @property
    def clustering(self) -> ClusteringResult:
        """The first seed's clustering (the one the task curve was measured with)."""
        return self.clusterings[0]

    @cached_property
    def config_dict(self) -> dict:
        return dict(self.manifest.get("config", {}))

    @cached_property
    def distances_arrays(self) -> dict[str, np.ndarray]:
        path = self.path / "distances.npz"
        return load_npz(path) if path.is_file() else {}

    @property
    def distance(self) -> np.ndarray | None:
        return self.distances_arrays.get("distance")  # [N, N]

    @property
    def features(self) -> np.ndarray | None:
        return self.distances_arrays.get("features")  # [N, F]

    @cached_property
    def head_maps(self) -> np.ndarray | None:
        """Each head's mean attention map ``[L, H, S, S]`` (None if not stored)."""
        path = self.path / "head_maps.npz"
        if path.is_file():
            return load_npz(path)["maps"]
        signatures = self.path / "signatures.safetensors"
        if signatures.is_file():
            return mean_head_maps(load_safetensors_numpy(signatures))
        return None

    @cached_property
    def task_curve(self) -> list[dict]:
        path = self.path / "task_curve.json"
        return _read_json(path) if path.is_file() else []

    @cached_property
    def diagnostics(self) -> dict | None:
        """diagnostics.json (split-half agreement, class signal, warnings), if computed."""
        path = self.path / "diagnostics.json"
        return _read_json(path) if path.is_file() else None

    @cached_property
    def graph(self) -> dict | None:
        path = self.path / "graph.json"
        return _read_json(path) if path.is_file() else None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.salience.normalised.shape)  # (layers, heads)

    @property
    def has_model(self) -> bool:
        return (self.path / "model" / "config.json").is_file()

    def selector(
        self, degree: int, knee_curve: str | None = None, rule: dict | None = None
    ) -> CAHPSelector:
        """A selector fitted from the cached clusterings with this degree, knee curve and
        selection rule (``{"rule": ..., "mmr_lambda": ...}`` on top of the run's; no
        recomputation): exactly what `cahp export --degree` selects."""
        from .pipeline import fit_selector  # the same fit the CLI export uses

        config = replace(self.config, **rule).validate() if rule else self.config
        return fit_selector(
            config,
            self.clusterings,
            self.salience,
            degree,
            knee_curve=knee_curve,
            task_curve=self.task_curve,
            distance=self.distance,
        )

    def stage_seconds(self) -> dict[str, float]:
        stages = self.manifest.get("stages", {})
        return {name: float(s.get("seconds", 0.0)) for name, s in stages.items()}


def mean_head_maps(signature_arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Class-count-weighted mean attention map per head, ``[L, H, S, S]`` float32."""
    mean, count = signature_arrays["mean"], signature_arrays["count"]  # [L, H, C, D], [C]
    weights = count / max(float(count.sum()), 1.0)
    maps = np.tensordot(mean, weights, axes=([2], [0]))  # [L, H, D]
    side = int(round(np.sqrt(maps.shape[-1])))
    return maps.reshape(*maps.shape[:2], side, side).astype(np.float32)


def make_bundle(run_dir: str | Path, out_dir: str | Path, command: str) -> Path:
    """Copy a finished run's small artefacts (no weights) into ``out_dir`` for the dashboard."""
    run, out = Path(run_dir), Path(out_dir)
    view = RunView(run)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in BUNDLE_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, out / name)
    if view.distance is not None:  # features too: t-SNE runs on them (re-clusterable)
        arrays = {"distance": view.distance}
        if view.features is not None:
            arrays["features"] = view.features
        write_npz_atomic(out / "distances.npz", **arrays)
    if view.head_maps is not None:
        write_npz_atomic(out / "head_maps.npz", maps=view.head_maps)
    write_json_atomic(
        out / "bundle.json",
        {"source_run": run.name, "command": command, "note": "analysis artefacts only; no weights"},
    )
    return out

"""Read-only views of finished runs (for the dashboard and reports) and the embedded bundle.

A *bundle* is a run folder without model weights or large arrays: what every dashboard
page needs to draw, small enough to ship in ``assets/``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from cahp_core.errors import RunFolderError
from cahp_core.method.clustering import ClusteringResult, clusterings_from_arrays
from cahp_core.method.salience import Salience
from cahp_core.method.selection import CAHPSelector
from cahp_core.runs import run_format
from cahp_core.runs.config import RunConfig, check_seed_sweep
from cahp_core.runs.run_format import (
    BUNDLE,
    BUNDLE_FILES,
    CLUSTERING,
    DIAGNOSTICS,
    DISTANCES,
    GRAPH,
    HEAD_MAPS,
    MANIFEST,
    MODEL,
    REQUIRED_FILES,
    SALIENCE,
    SELECTION,
    SIGNATURES,
    SUMMARY,
    TASK_CURVE,
)
from cahp_core.runs.run_selection import fit_selector  # the same fit the CLI export uses


@dataclass
class RunView:
    """Everything a finished run shows, loaded lazily from its folder (or bundle)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        missing = [a.file for a in REQUIRED_FILES if not a.path(self.path).is_file()]
        if missing:
            raise RunFolderError(
                f"{self.path} is not a finished CAHP run (missing {', '.join(missing)}); "
                "finish it with `cahp run` or pick another run"
            )

    @cached_property
    def manifest(self) -> dict:
        return run_format.read(self.path, MANIFEST)

    @cached_property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.manifest.get("config", {}))

    @cached_property
    def summary(self) -> dict | None:
        return run_format.read(self.path, SUMMARY, missing_ok=True)

    @cached_property
    def selection(self) -> dict:
        return run_format.read(self.path, SELECTION)

    @cached_property
    def salience(self) -> Salience:
        return Salience.from_dict(run_format.read(self.path, SALIENCE))

    @cached_property
    def clusterings(self) -> list[ClusteringResult]:
        """One clustering per seed; a RunFolderError naming `cahp recluster` for a run
        clustered by an earlier version."""
        check_seed_sweep(self.config_dict, str(self.path))
        return clusterings_from_arrays(run_format.read(self.path, CLUSTERING), str(self.path))

    @property
    def clustering(self) -> ClusteringResult:
        """The first seed's clustering (the one the task curve was measured with)."""
        return self.clusterings[0]

    @cached_property
    def config_dict(self) -> dict:
        return dict(self.manifest.get("config", {}))

    @cached_property
    def distances_arrays(self) -> dict[str, np.ndarray]:
        return run_format.read(self.path, DISTANCES, missing_ok=True) or {}

    @property
    def distance(self) -> np.ndarray | None:
        return self.distances_arrays.get("distance")  # [N, N]

    @property
    def features(self) -> np.ndarray | None:
        return self.distances_arrays.get("features")  # [N, F]

    @cached_property
    def head_maps(self) -> np.ndarray | None:
        """Each head's mean attention map ``[L, H, S, S]`` (None if not stored)."""
        if HEAD_MAPS.exists(self.path):
            return run_format.read(self.path, HEAD_MAPS)["maps"]
        if SIGNATURES.exists(self.path):
            return mean_head_maps(run_format.read(self.path, SIGNATURES))
        return None

    @cached_property
    def task_curve(self) -> list[dict]:
        return run_format.read(self.path, TASK_CURVE, missing_ok=True) or []

    @cached_property
    def diagnostics(self) -> dict | None:
        """diagnostics.json (split-half agreement, class signal, warnings), if computed."""
        return run_format.read(self.path, DIAGNOSTICS, missing_ok=True)

    @cached_property
    def graph(self) -> dict | None:
        return run_format.read(self.path, GRAPH, missing_ok=True)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.salience.normalised.shape)  # (layers, heads)

    @property
    def has_model(self) -> bool:
        return (MODEL.path(self.path) / "config.json").is_file()

    def selector(
        self, degree: int, knee_curve: str | None = None, rule: dict | None = None
    ) -> CAHPSelector:
        """A selector fitted from the cached clusterings with this degree, knee curve and
        selection rule (``{"rule": ..., "mmr_lambda": ...}`` on top of the run's; no
        recomputation): exactly what `cahp export --degree` selects."""
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
    for artefact in BUNDLE_FILES:
        if artefact.exists(run):
            shutil.copy2(artefact.path(run), artefact.path(out))
    if view.distance is not None:  # features too: t-SNE runs on them (re-clusterable)
        arrays = {"distance": view.distance}
        if view.features is not None:
            arrays["features"] = view.features
        run_format.write(out, DISTANCES, arrays)
    if view.head_maps is not None:
        run_format.write(out, HEAD_MAPS, {"maps": view.head_maps})
    run_format.write(
        out,
        BUNDLE,
        {"source_run": run.name, "command": command, "note": "analysis artefacts only; no weights"},
    )
    return out

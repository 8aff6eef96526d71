"""Run configuration and presets (``quick`` for a laptop, ``paper`` for the paper's settings)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from cahp_core.choices import (
    CLUSTERING_METHODS,
    DISTANCE_METHODS,
    KNEE_CURVES,
    KNEE_SHAPES,
    QUALITY_METHODS,
    QUANTIZE_CHOICES,
    SELECTION_RULES,
    check_choice,
)
from cahp_core.errors import CAHPError, earlier_version_error
from cahp_core.method.knee import check_degree


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a CAHP run. Paper defaults unless a preset says otherwise."""

    model: str = "minilm-l6"
    task: str = "sst5"
    data_dir: str | None = None
    text_columns: tuple[str, ...] | None = None  # custom tasks only
    label_column: str = "label"
    num_labels: int | None = None
    max_train: int | None = None
    max_eval: int | None = None
    max_length: int = 128
    seed: int = 42
    epochs: float = 3.0
    prune_epochs: float = 3.0
    learning_rate: float = 2e-5
    batch_size: int = 32
    grid: int = 32
    signature_examples: int | None = None  # None: the whole (subsetted) training split
    salience_fraction: float = 0.25
    degree: int = 6
    knee_curve: str = "quality"  # or "performance": the masked-accuracy curve
    knee_shape: str = "concave"  # the authors' kneed call; "auto" guesses the shape
    clustering: str = "tsne-kmedoids"
    distance: str = "jm"
    quality: str = "mss"  # the authors' MSS; "simplified-silhouette" is the old curve
    n_seeds: int = 5  # clustering seeds seed, seed + 1, ...; export uses their consensus
    rule: str = "complementary"  # which heads, given the knee's count (SELECTION_RULES)
    radius_quantile: float = 0.1  # salience-radius: redundant below this distance quantile
    mmr_lambda: float = 0.3  # mmr: salience weight; chosen on SST-5 validation (benchmarks)
    perplexity: float = 10.0
    graph_neighbors: int = 5
    curve_points: int = 12  # masked-accuracy grid of the task-performance curve
    device: str = "auto"
    onnx: bool = False
    quantize: str | None = None  # "int8": also a dynamically quantized ONNX graph
    trust_remote_code: bool = False  # never on unless the user passes --trust-remote-code
    preset: str = "paper"

    def validate(self) -> RunConfig:
        """Raise a clear CAHPError for any option out of range."""
        check_choice("clustering", self.clustering, CLUSTERING_METHODS)
        if self.quantize is not None:
            check_choice("quantization", self.quantize, QUANTIZE_CHOICES)
        check_choice("distance", self.distance, DISTANCE_METHODS)
        for name, value, allowed in (
            ("quality", self.quality, QUALITY_METHODS),
            ("knee-curve", self.knee_curve, KNEE_CURVES),
            ("knee-shape", self.knee_shape, KNEE_SHAPES),
            ("rule", self.rule, SELECTION_RULES),
        ):
            check_choice(f"--{name}", value, allowed)
        check_degree(self.degree)
        if not 0 <= self.radius_quantile < 1:
            raise CAHPError(f"--radius-quantile must be in [0, 1); got {self.radius_quantile}")
        if not 0 <= self.mmr_lambda <= 1:
            raise CAHPError(f"--mmr-lambda must be in [0, 1]; got {self.mmr_lambda}")
        if isinstance(self.n_seeds, bool) or not isinstance(self.n_seeds, int) or self.n_seeds < 1:
            raise CAHPError(f"--seeds must be a whole number >= 1; got {self.n_seeds}. Try 5.")
        if not 0 < self.salience_fraction <= 1:
            raise CAHPError(f"salience fraction must be in (0, 1]; got {self.salience_fraction}")
        for name in ("max_train", "max_eval", "signature_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CAHPError(f"--{name.replace('_', '-')} must be >= 1; got {value}")
        for name in ("epochs", "prune_epochs", "learning_rate", "perplexity"):
            if getattr(self, name) <= 0:
                raise CAHPError(
                    f"--{name.replace('_', '-')} must be > 0; got {getattr(self, name)}"
                )
        if self.batch_size < 1 or self.max_length < 8 or self.grid < 2 or self.curve_points < 2:
            raise CAHPError(
                "batch size must be >= 1, max length >= 8, grid >= 2 and curve points >= 2"
            )
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["text_columns"] is not None:
            d["text_columns"] = list(d["text_columns"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if values.get("text_columns") is not None:
            values["text_columns"] = tuple(values["text_columns"])
        return cls(**values)


# Settings that change what the cached stages hold; degree and onnx only change the export.
EXPORT_ONLY_FIELDS = (
    "degree",
    "knee_curve",
    "knee_shape",
    "rule",
    "radius_quantile",
    "mmr_lambda",
    "onnx",
    "quantize",
    "device",
    "preset",
    "trust_remote_code",
)
# Settings added with the seed sweep: a manifest without them predates it (re-cluster it).
SEED_SWEEP_FIELDS = ("quality", "n_seeds")


def check_seed_sweep(config: dict, run: str) -> None:
    """``earlier_version_error`` for a run whose configuration predates the seed sweep."""
    if any(name not in config for name in SEED_SWEEP_FIELDS):
        raise earlier_version_error(run)


PRESETS: dict[str, dict] = {
    # under 4 minutes for minilm-l6 on SST-5 with 2 CPU cores (benchmarks/first_run.py).
    # 1500 examples at lr 1e-4 train the full model better than 3000 at the paper's 2e-5 in
    # half the time (0.41 against 0.395 validation accuracy on SST-5, measured there)
    "quick": {
        "max_train": 1500,
        "max_eval": 600,
        "epochs": 2.0,
        "prune_epochs": 1.0,
        "learning_rate": 1e-4,
        "curve_points": 10,
    },
    # the paper's settings: full splits, 3 + 3 epochs
    "paper": {},
}


PRESET_HELP = (
    "quick: 1500 training / 600 validation examples, 2 epochs for the full model and 1 after "
    "pruning at lr 1e-4, a 10-point accuracy curve (under 4 minutes for minilm-l6 on SST-5 on "
    "2 CPU cores); paper: full splits, 3 + 3 epochs, lr 2e-5, batch 32"
)


def preset_config(name: str, **overrides) -> RunConfig:
    """A RunConfig from a preset, with explicit (non-None) overrides on top."""
    if name not in PRESETS:
        raise CAHPError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    if isinstance(values.get("text_columns"), list):  # JSON has no tuples
        values["text_columns"] = tuple(values["text_columns"])
    return replace(RunConfig(preset=name), **values).validate()


def read_config_file(path: str | os.PathLike) -> dict:
    """The run settings a JSON file holds: an object of ``RunConfig`` fields (the ``config``
    of a run's manifest.json has this form; null keeps the preset's value). A CAHPError
    names an unreadable file or an unknown setting."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CAHPError(f"cannot read the run config {path} ({exc}); pass a JSON file") from exc
    if not isinstance(values, dict):
        raise CAHPError(f'{path} must hold a JSON object of run settings, e.g. {{"degree": 4}}')
    known = [f.name for f in fields(RunConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CAHPError(
            f"{path}: unknown run setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return values


def file_config(path: str | os.PathLike | None, preset: str | None, **overrides) -> RunConfig:
    """A run's settings: a preset (``preset``, else the file's, else ``paper``), the file's
    settings on it, then the explicit (non-None) ``overrides`` (command-line flags)."""
    values = read_config_file(path) if path is not None else {}
    name = preset or values.pop("preset", None) or "paper"
    values.pop("preset", None)
    return preset_config(
        name, **{**values, **{k: v for k, v in overrides.items() if v is not None}}
    )

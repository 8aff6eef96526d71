"""Every list of choices an option takes, defined once: the run config, the CLI, the selector
and the dashboard's pages import them from here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cahp_core.errors import CAHPError

CLUSTERING_METHODS = ("tsne-kmedoids", "graph")  # the paper's, then Louvain on a kNN graph
DISTANCE_METHODS = ("jm", "js")  # Jeffries–Matusita (paper), Jensen–Shannon
QUALITY_METHODS = ("mss", "simplified-silhouette")  # cluster-quality curves (clustering.py)
KNEE_SHAPES = ("concave", "auto")  # the authors' kneed call, or guessed from the fit
KNEE_CURVES = ("quality", "performance")  # the curve the knee is found on (selection.py)
# which heads to keep, given how many (selection.py): the paper's, then two variants
SELECTION_RULES = ("complementary", "salience-radius", "mmr")
RULE_PARAMETER = {"salience-radius": "radius_quantile", "mmr": "mmr_lambda"}  # its one knob
QUANTIZE_CHOICES = ("int8",)  # ONNX Runtime dynamic quantization of the exported graph


def check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a CAHPError naming ``what`` and them all."""
    if value not in choices:
        raise CAHPError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return str(value)


def is_whole(value: object) -> bool:
    """True for an int (NumPy's too) that is not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)

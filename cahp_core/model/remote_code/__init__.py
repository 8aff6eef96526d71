"""Self-contained modeling code copied into every pruned folder (``trust_remote_code``).

``modeling_cahp_pruned.py`` imports only torch, transformers and the standard library, so a
pruned folder loads with plain ``transformers`` where this project is not installed.
"""

from __future__ import annotations

from pathlib import Path

from cahp_core.errors import UnsupportedArchitectureError

MODELING_FILE = Path(__file__).with_name("modeling_cahp_pruned.py")
MODELING_MODULE = MODELING_FILE.stem

# config.model_type -> class in MODELING_FILE (one per SUPPORTED_MODEL_TYPES entry)
REMOTE_CLASSES: dict[str, str] = {
    "bert": "CAHPBertForSequenceClassification",
    "roberta": "CAHPRobertaForSequenceClassification",
    "xlm-roberta": "CAHPXLMRobertaForSequenceClassification",
    "camembert": "CAHPCamembertForSequenceClassification",
    "electra": "CAHPElectraForSequenceClassification",
}


def auto_map(model_type: str) -> dict[str, str]:
    """The ``config.json`` ``auto_map`` entry that loads a pruned ``model_type`` folder."""
    try:
        name = REMOTE_CLASSES[model_type]
    except KeyError as exc:
        raise UnsupportedArchitectureError(
            f"no pruned-model class for model_type {model_type!r}; "
            f"supported: {', '.join(REMOTE_CLASSES)}"
        ) from exc
    return {"AutoModelForSequenceClassification": f"{MODELING_MODULE}.{name}"}

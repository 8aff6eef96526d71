"""Tiny, fast fixtures for tests and demos: a small saved BERT and a matching run config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cahp_core.model.loading import tiny_bert
from cahp_core.runs.config import RunConfig


def save_tiny_model(
    out_dir: str | Path, num_labels: int = 5, n_layers: int = 3, n_heads: int = 4
) -> Path:
    """Save a tiny random BERT (with the MiniLM tokenizer) as a model folder."""
    loaded = tiny_bert(num_labels=num_labels, n_layers=n_layers, n_heads=n_heads, hidden_size=32)
    out = Path(out_dir)
    loaded.model.config.architectures = ["BertModel"]  # a base encoder: any label count loads
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out


def tiny_run_config(model_dir: str | Path, **overrides) -> RunConfig:
    """A complete CAHP run on the tiny model and bundled SST-5 in a few seconds."""
    values = {
        "model": str(model_dir),
        "task": "sst5",
        "max_train": 96,
        "max_eval": 48,
        "epochs": 1.0,
        "prune_epochs": 1.0,
        "batch_size": 16,
        "grid": 8,
        "curve_points": 4,
        "perplexity": 3.0,
        "degree": 3,
        "device": "cpu",
        "preset": "tiny",
        **overrides,
    }
    return RunConfig(**values).validate()


@dataclass
class FakeUpload:
    """A stand-in for Streamlit's ``UploadedFile``: a name and the bytes (upload tests)."""

    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data

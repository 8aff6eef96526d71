"""Shared fixtures: the tiny BERT, tokenised batches, and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# CAHP_TEST_THREADS: fewer threads while a benchmark shares the machine
torch.set_num_threads(int(os.environ.get("CAHP_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not found")
    return SHARED_DATA


@pytest.fixture
def tiny():
    """A fresh tiny BERT (2 layers x 4 heads, 3 labels) with the MiniLM tokenizer."""
    from cahp_core.models import tiny_bert

    return tiny_bert(num_labels=3, n_layers=2, n_heads=4, hidden_size=32)


@pytest.fixture
def tiny_batch(tiny):
    texts = ["a great and moving film", "dull", "the plot makes no sense at all , sadly"]
    return tiny.tokenizer(texts, padding=True, return_tensors="pt")

"""Shared fixtures: the tiny BERT, tokenised batches, and the shared data folder."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def tiny_run_template(tmp_path_factory) -> Path:
    """One finished tiny run (3 layers x 4 heads), built once for the whole test run.
    Never change it: ``tiny_runs`` gives each module its own copy."""
    from cahp_core.runs.pipeline import run_pipeline
    from cahp_core.testing import save_tiny_model, tiny_run_config

    model = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
    run = tmp_path_factory.mktemp("template") / "tiny-run"
    run_pipeline(tiny_run_config(model), run)
    return run


@pytest.fixture(scope="module")
def tiny_runs(tiny_run_template, tmp_path_factory) -> Path:
    """A runs folder holding a copy of the finished tiny run as ``tiny-run`` (one per
    module, so a module that exports or re-clusters it cannot disturb another)."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(tiny_run_template, root / "tiny-run", ignore=shutil.ignore_patterns("*.lock"))
    return root


@pytest.fixture
def tiny():
    """A fresh tiny BERT (2 layers x 4 heads, 3 labels) with the MiniLM tokenizer."""
    from cahp_core.model.loading import tiny_bert

    return tiny_bert(num_labels=3, n_layers=2, n_heads=4, hidden_size=32)


@pytest.fixture
def tiny_batch(tiny):
    texts = ["a great and moving film", "dull", "the plot makes no sense at all , sadly"]
    return tiny.tokenizer(texts, padding=True, return_tensors="pt")


# per-test time limits that fit each tier (pytest-timeout; an explicit timeout mark wins).
# Generous: they catch a hang, not a slow machine.
TIER_TIMEOUTS = {"slow": 1800, "benchmark": 900, "browser": 600, "integration": 600}
UNIT_TIMEOUT = 300


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            limits = [
                limit for tier, limit in TIER_TIMEOUTS.items() if item.get_closest_marker(tier)
            ]
            item.add_marker(pytest.mark.timeout(max(limits, default=UNIT_TIMEOUT)))

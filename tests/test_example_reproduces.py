"""The embedded example reproduces: its bundle's recorded command gives the same knee and
the same kept heads. Slow (a quick-preset run, about 5 minutes on 2 cores): ``pytest -m slow``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from cahp_core.cli import main

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "default_run"


def test_the_bundle_command_gives_the_bundled_selection(tmp_path):
    command = json.loads((EXAMPLE / "bundle.json").read_text())["command"]
    run_part = command.split("&&")[0].strip()  # `cahp run ... --out runs/NAME`
    args = shlex.split(run_part)[1:]
    out = args.index("--out") + 1
    args[out] = str(tmp_path / "run")
    assert main(args) == 0
    expected = json.loads((EXAMPLE / "selection.json").read_text())
    got = json.loads((tmp_path / "run" / "selection.json").read_text())
    for key in ("degree", "knee", "heads_kept", "kept", "consensus_seed", "heads_by_seed"):
        assert got[key] == expected[key], key

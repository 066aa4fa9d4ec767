"""A bounded coverage-guided run of every fuzz target (``make fuzz`` runs them for longer): each must get through
its runs with no crash, hang or memory blow-up written as an artifact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fuzz.targets import TARGETS

RUNS = 400
pytest.importorskip("atheris")  # Linux wheels only (see pyproject's dev extra)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_bounded_atheris_run(tmp_path: Path, name: str) -> None:
    artifacts = tmp_path / "artifacts"
    command = [sys.executable, "-m", "tests.fuzz.run", name, "--runs", str(RUNS), "--seed", "1"]
    command += ["--corpus", str(tmp_path / "corpus"), "--artifacts", str(artifacts)]
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Done {RUNS} runs" in done.stderr
    assert not list(artifacts.iterdir())

"""``make demo`` wall time: the graph run by Dagster's automation (now) against the hand-sequenced plan it replaced.

The reference is the demo of commit ``BEFORE`` (nine jobs run in a fixed order by ``pipelines/demo.py``), checked
out into a temporary git worktree and run with the same virtual environment, one after the other with the current
demo, each on a fresh data root and Dagster home, so both meet the same machine load as nearly as a shared machine
allows. Both run the same default sample web through every stage, training and evaluation included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO
from infra.deploy.local_services import free_port

BEFORE = "6db4050"  # the last main with the hand-sequenced demo plan
TIMEOUT_S = 1800


def _demo(checkout: Path, work: Path) -> float:
    """Seconds for one demo run from ``checkout`` with fresh state under ``work``."""
    home = work / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(checkout / "infra" / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "CLIPFOUNDRY_PROFILE": "demo",
        "CLIPFOUNDRY_DATA_ROOT": str(work / "data"),
        "CLIPFOUNDRY_SAMPLE_WEB_PORT": str(free_port()),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(checkout),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.demo"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"the demo of {checkout} failed:\n{done.stdout[-3000:]}")
    return seconds


def run() -> dict:
    work = Path(tempfile.mkdtemp(prefix="clipfoundry-bench-demo-"))
    before = work / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(before), BEFORE], cwd=REPO, check=True)
    try:
        shared = REPO.parent / "shared"
        if shared.is_dir():  # the old checkout finds fixtures beside itself
            (work / "shared").symlink_to(shared)
        old = _demo(before, work / "old")
        new = _demo(REPO, work / "new")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO, check=False)
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"`make demo` from a fresh state, the hand-sequenced plan of `{BEFORE}` and the automation-driven graph of "
        "this commit, one after the other in this run (same virtual environment, same default sample web through every "
        "stage, tiny model trained and evaluated).",
        "",
        "| demo | wall s |",
        "|---|---|",
        f"| before: nine jobs in a fixed order | {old:.0f} |",
        f"| now: a real dagster-daemon's automation | {new:.0f} |",
        "",
        f"Ratio now / before: {new / old:.2f}. The automation pays a sensor interval (5 s in the demo profile) and "
        "a run launch per level and shard; it gains by running a shard's stages of one level as one run and the "
        "shards side by side.",
    ]
    return {"before_s": round(old, 1), "now_s": round(new, 1), "markdown": "\n".join(lines)}

"""A real ``dagster-daemon`` for the commands that drive the graph from a terminal (``make demo``,
``clipfoundry materialize``), and the wait for the graph to come to rest.

The daemon evaluates the sensors and the automation sensor and launches the runs they ask for through the
instance's run queue, exactly as in a deployment: the runs belong to the code location, so the UI shows them in
its timeline, on the job pages and in each sensor's history.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from infra.deploy.local_services import start, stop

REPO = Path(__file__).resolve().parents[1]
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


@contextmanager
def running_daemon(home: str | Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """``dagster-daemon run`` over the project's workspace, stopped (with the runs it started) on exit."""
    log = Path(home) / "daemon.log"
    command = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
    proc = start(command, log, env={**os.environ, **(env or {}), "DAGSTER_HOME": str(home)}, cwd=REPO)
    try:
        yield proc
    finally:
        stop(proc)


def runs_in_flight(instance: DagsterInstance) -> int:
    return instance.get_runs_count(RunsFilter(statuses=IN_FLIGHT))


def wait_until_settled(
    instance: DagsterInstance,
    done: Callable[[], bool],
    quiet_seconds: float,
    timeout: float,
    daemon: subprocess.Popen | None = None,
    on_poll: Callable[[], None] | None = None,
) -> bool:
    """Wait until ``done()`` holds and no run has been in flight for ``quiet_seconds`` (the automation has had
    time to ask for more and did not); True then, False after ``timeout``. A dead daemon is an error."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        if daemon is not None and daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}; see its log in DAGSTER_HOME")
        if on_poll is not None:
            on_poll()
        if runs_in_flight(instance):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_seconds and done():
            return True
        time.sleep(1.0)
    return False

"""A small embedded sample web, served on 127.0.0.1, with its WARCs published under a lake's ``sources/``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.lake import Lake
from infra.sample_web import serve
from ops.sources import sync
from pipelines.demo import prepare_sample_web
from tests.conftest import REPO


@dataclass
class Web:
    lake: Lake
    root: Path
    url: str
    shards: list[str]


@pytest.fixture(scope="module")
def small_web(tmp_path_factory) -> Web:
    root = tmp_path_factory.mktemp("lake")
    lake = Lake(str(root))
    site = root / "sample_web" / "site"
    site.mkdir(parents=True)
    with serve(site) as server:
        prepare_sample_web(lake, root / "sample_web", server.url, seed=1, n_shards=2, pages_per_shard=8)
        registered, _ = sync(lake, set())  # as the new-sources sensor does
        yield Web(lake, root, server.url, registered)


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    return home

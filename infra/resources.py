"""Dagster resources: the data lake and MLflow tracking, each a thin shell over a plain-Python class.

Secrets arrive as Dagster ``EnvVar`` values (see ``pipelines/profiles.py``), so the UI shows the variable's name,
never its value, and nothing here logs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from infra.lake import UPLOAD_TIMEOUT_S, Lake
from infra.tracking import Tracker, default_tracking_uri


class LakeResource(ConfigurableResource):
    """The data-lake root: a local folder, or ``s3://bucket/prefix`` through s3fs."""

    root: str = Field(description="Local folder or s3:// URI that holds every stage's files.")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, Ceph, moto).")
    aws_access_key_id: str | None = Field(default=None, description="Pass as EnvVar; unset uses the AWS chain.")
    aws_secret_access_key: str | None = Field(default=None, description="Pass as EnvVar; never logged.")
    aws_region: str | None = None
    s3_connect_timeout: float | None = Field(default=None, description="Seconds; unset: infra.lake.S3_CLIENT_CONFIG.")
    s3_read_timeout: float | None = Field(default=None, description="Seconds; unset: infra.lake.S3_CLIENT_CONFIG.")
    s3_max_attempts: int | None = Field(default=None, description="botocore attempts per request (standard mode).")
    upload_timeout: float = Field(
        default=UPLOAD_TIMEOUT_S, description="Seconds per object upload, plus its size at 1 MiB/s; then it fails."
    )

    def storage_options(self) -> dict[str, Any]:
        if not self.root.startswith("s3://"):
            return {}
        opts: dict[str, Any] = {}
        if self.aws_access_key_id and self.aws_secret_access_key:
            opts["key"] = self.aws_access_key_id
            opts["secret"] = self.aws_secret_access_key
        client_kwargs: dict[str, Any] = {}
        if self.s3_endpoint_url:
            client_kwargs["endpoint_url"] = self.s3_endpoint_url
        if self.aws_region:
            client_kwargs["region_name"] = self.aws_region
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
        config: dict[str, Any] = {}  # what is unset here comes from infra.lake.S3_CLIENT_CONFIG
        if self.s3_connect_timeout is not None:
            config["connect_timeout"] = self.s3_connect_timeout
        if self.s3_read_timeout is not None:
            config["read_timeout"] = self.s3_read_timeout
        if self.s3_max_attempts is not None:
            config["retries"] = {"mode": "standard", "max_attempts": self.s3_max_attempts}
        if config:
            opts["config_kwargs"] = config
        return opts

    def lake(self) -> Lake:
        return Lake(self.root, self.storage_options(), upload_timeout=self.upload_timeout)


class MlflowResource(ConfigurableResource):
    """MLflow tracking; by default a SQLite store beside a local data root, else ``tracking_uri``."""

    tracking_uri: str | None = Field(default=None, description="e.g. http://mlflow:5000; default: local SQLite.")
    experiment: str = "clipfoundry"
    ui_url: str | None = Field(
        default=None, description="where people open the MLflow UI, for links in asset metadata; default: the server"
    )

    def tracker(self, lake: Lake) -> Tracker:
        if self.tracking_uri:
            return Tracker(self.tracking_uri, self.experiment, ui_url=self.ui_url)
        local = Path(lake.path("mlflow")) if lake.is_local else Path(".clipfoundry/mlflow").resolve()
        artifacts = (local / "artifacts").as_uri()
        return Tracker(default_tracking_uri(local), self.experiment, artifact_location=artifacts, ui_url=self.ui_url)

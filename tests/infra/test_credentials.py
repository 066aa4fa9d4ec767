"""URIs that carry a credential are refused wherever configuration enters (tracking URI, S3 endpoint, lake root),
and no refusal repeats the credential."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.credentials import credential_parts, redacted
from infra.lake import Lake, check_endpoint_url, check_root
from infra.resources import LakeResource
from infra.tracking import check_tracking_uri
from pipelines.profiles import resources

SECRET = st.text(st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"), min_size=16, max_size=40)
SECRET_NAMES = ["password", "PWD", "sslpassword", "token", "access_token", "api_key", "secret", "X-Amz-Signature"]
SECRET_NAMES += ["X-Amz-Credential", "X-Amz-Security-Token", "sig", "auth", "client_secret", "sas"]
HOSTS = ["mlflow.internal:5000", "minio:9000", "10.0.0.7", "db.example.com"]


@st.composite
def uri_with_a_secret(draw) -> tuple[str, str]:
    secret = "Zq" + draw(SECRET)
    scheme = draw(st.sampled_from(["http", "https", "postgresql", "mysql+pymysql", "s3"]))
    host = draw(st.sampled_from(HOSTS))
    where = draw(st.sampled_from(["password", "user_token", "query"]))
    if where == "password":
        return f"{scheme}://{draw(st.sampled_from(['admin', 'mlflow']))}:{secret}@{host}/db", secret
    if where == "user_token":
        return f"{scheme}://{secret}@{host}/", secret
    name = draw(st.sampled_from(SECRET_NAMES))
    before = draw(st.sampled_from(["", "sslmode=require&", "timeout=5&"]))
    return f"{scheme}://{host}/path?{before}{name}={secret}", secret


@settings(max_examples=300, derandomize=True, deadline=None)
@given(case=uri_with_a_secret())
def test_every_entry_point_refuses_a_credential_without_repeating_it(case: tuple[str, str]) -> None:
    uri, secret = case
    assert credential_parts(uri)
    assert secret not in redacted(uri)
    checks = [check_tracking_uri, check_endpoint_url, check_root]
    checks.append(lambda u: Lake("/tmp/unused-lake", {"client_kwargs": {"endpoint_url": u}}))
    checks.append(lambda u: LakeResource(root="s3://bucket/prefix", s3_endpoint_url=u).lake())
    for check in checks:
        with pytest.raises(ValueError) as refused:
            check(uri)
        assert secret not in str(refused.value)
        assert "carries credentials" in str(refused.value)


@pytest.mark.parametrize(
    "uri",
    [
        "http://mlflow.internal:5000",
        "https://mlflow.example.com/prefix/",
        "sqlite:////data/mlflow.db",
        "postgresql://db.example.com/mlflow?sslmode=require&connect_timeout=5",
        "http://minio:9000",
        "s3://bucket/prefix",
    ],
)
def test_uris_without_credentials_pass_unchanged(uri: str) -> None:
    assert check_tracking_uri(uri) == check_endpoint_url(uri) == check_root(uri) == uri


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLIPFOUNDRY_S3_ENDPOINT_URL", "http://AKIAEXAMPLE:Zq3cr3tS3cr3tS3cr3t@minio:9000"),
        ("CLIPFOUNDRY_DATA_ROOT", "s3://AKIAEXAMPLE:Zq3cr3tS3cr3tS3cr3t@bucket/prefix"),
        ("MLFLOW_TRACKING_URI", "postgresql://mlflow.internal/mlflow?password=Zq3cr3tS3cr3tS3cr3t"),
    ],
)
def test_profiles_refuse_credentials_before_dagster_stores_them(monkeypatch, variable: str, value: str) -> None:
    monkeypatch.setenv("CLIPFOUNDRY_PROFILE", "production")
    monkeypatch.setenv("CLIPFOUNDRY_DATA_ROOT", "s3://bucket/prefix")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as refused:
        resources()
    assert "Zq3cr3tS3cr3tS3cr3t" not in str(refused.value) and "carries credentials" in str(refused.value)

"""Kubernetes deployment files, validated offline (no cluster here): parsed, checked against dagster_k8s's own
config schemas, and rendered into the Job and Pod manifests the executor and PipesK8sClient would create."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import kubernetes
import pytest
import yaml
from dagster import DagsterInvalidConfigError
from dagster._config import process_config, resolve_to_config_type

from infra.deploy import k8s
from tests.conftest import REPO

DEPLOY = REPO / "infra" / "deploy"
SECRET_KEY = re.compile(r"password|secret_access|access_key|token|aws_secret", re.IGNORECASE)


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))
    else:
        yield path, node


def _no_literal_secrets(doc) -> None:
    for path, value in _walk(doc):
        if any(SECRET_KEY.search(p) for p in path) and not path[-1].endswith(("SecretName", "secret_name")):
            assert type(value) not in (str, int), f"literal secret at {'.'.join(path)}"


def _env_names(container) -> set[str]:
    return {e.name for e in container.env or []}


def test_executor_config_passes_dagster_k8s_schema():
    config = k8s.executor_config()
    assert config["env_secrets"] == ["clipfoundry-s3", "clipfoundry-mlflow"]
    assert k8s.k8s_executor().name == "k8s_job_executor"
    with pytest.raises(DagsterInvalidConfigError):
        k8s.executor_config({"max_concurent": 4})


def test_gpu_step_renders_a_job_with_gpus_node_selector_and_secret_refs():
    tags = k8s.gpu_step_tags(2)
    job = k8s.render_step_job(tags, "registry.example.com/clipfoundry:0.1.0")
    assert isinstance(job, kubernetes.client.V1Job)
    pod = job.spec.template.spec
    [container] = pod.containers
    assert container.resources.limits[k8s.GPU_RESOURCE] == container.resources.requests[k8s.GPU_RESOURCE] == "2"
    assert pod.node_selector == {"clipfoundry.io/node-pool": "gpu", "nvidia.com/gpu.present": "true"}
    assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]
    assert {m.mount_path for m in container.volume_mounts} >= {"/dev/shm"}
    assert {e.secret_ref.name for e in container.env_from if e.secret_ref} == {"clipfoundry-s3", "clipfoundry-mlflow"}
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & _env_names(container)
    assert container.image == "registry.example.com/clipfoundry:0.1.0"
    assert pod.service_account_name == "clipfoundry-runs"
    assert job.spec.backoff_limit == 0


def test_cpu_step_gets_the_executor_defaults_and_no_gpu():
    job = k8s.render_step_job({}, "img:1", step_key="download")
    pod = job.spec.template.spec
    assert pod.node_selector == {"clipfoundry.io/node-pool": "cpu"}
    assert k8s.GPU_RESOURCE not in (pod.containers[0].resources.limits or {})


def test_gpu_tags_refuse_zero_gpus():
    with pytest.raises(ValueError):
        k8s.gpu_step_tags(0)


def test_torchrun_pod_for_pipes():
    pod = k8s.render_torchrun_pod("clipfoundry_train_entry", gpus=4)
    assert isinstance(pod, kubernetes.client.V1Pod)
    [container] = pod.spec.containers
    assert container.command[:4] == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=4"]
    assert container.command[-2:] == ["-m", "clipfoundry_train_entry"]
    assert container.resources.limits[k8s.GPU_RESOURCE] == "4"
    assert pod.spec.restart_policy == "Never"
    assert {e.secret_ref.name for e in container.env_from if e.secret_ref} == {"clipfoundry-s3", "clipfoundry-mlflow"}
    assert next(v for v in pod.spec.volumes if v.name == "dshm").empty_dir.medium == "Memory"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & _env_names(container)
    launch = k8s.torchrun_launch("x")
    import inspect

    from dagster_k8s import PipesK8sClient

    assert set(launch) <= set(inspect.signature(PipesK8sClient.run).parameters)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(node):
    if isinstance(node, dict):
        return {_snake(k): _snake_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_snake_keys(v) for v in node]
    return node


def test_helm_values_structure_and_run_launcher_config():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    _no_literal_secrets(values)
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"] and deployment["image"]["tag"]
    assert deployment["image"]["tag"] != "latest"
    args = deployment["dagsterApiGrpcArgs"]
    assert args[0] == "-m"
    importlib.import_module(args[1])
    assert {s["name"] for s in deployment["envSecrets"]} == {"clipfoundry-s3", "clipfoundry-mlflow"}
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"

    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    from dagster_k8s import K8sRunLauncher

    chart = launcher["config"]["k8sRunLauncher"]
    rendered = {  # what the chart writes into the instance's run_launcher config
        "instance_config_map": "dagster-instance",
        "service_account_name": values["global"]["serviceAccountName"],
        "job_namespace": chart["jobNamespace"],
        "load_incluster_config": chart["loadInclusterConfig"],
        "env_config_maps": [c["name"] for c in chart["envConfigMaps"]],
        "env_secrets": [s["name"] for s in chart["envSecrets"]],
        "run_k8s_config": _snake_keys(chart["runK8sConfig"]),
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "dagster_home": "/opt/dagster/dagster_home",
    }
    result = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), rendered)
    assert result.success, result.errors


def test_instance_yaml_reads_every_connection_setting_from_env():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    db = instance["storage"]["postgres"]["postgres_db"]
    for key in ("hostname", "port", "username", "password", "db_name"):
        assert set(db[key]) == {"env"}, key
    assert instance["telemetry"]["enabled"] is False


def test_dockerfile_runs_the_code_location_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    [user] = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user not in ("root", "0")
    assert '"-m", "pipelines.definitions"' in text
    assert not re.search(r"AWS_SECRET_ACCESS_KEY|PASSWORD=", text)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[1 if ignore[0].startswith("#") else 0] == "**"
    for copied in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (REPO / copied).exists(), copied


def test_config_files_are_plain_yaml():
    for path in sorted(Path(DEPLOY).rglob("*.yaml")):
        assert yaml.safe_load(path.read_text()) is not None, path

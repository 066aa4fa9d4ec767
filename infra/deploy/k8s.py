"""Kubernetes configuration for clipfoundry, loaded from the YAML files beside this module.

- ``executor.yaml``: the ``k8s_job_executor`` config (one pod per step); :func:`k8s_executor` returns the
  configured executor for ``Definitions(executor=...)`` in the production profile.
- ``gpu_step.yaml``: what a GPU step adds to its pod; :func:`gpu_step_tags` renders it into the
  ``dagster-k8s/config`` tag with the step's GPU count (requests = limits = ``nvidia.com/gpu``).
- ``torchrun.yaml``: training as one torchrun pod launched through Dagster Pipes; :func:`torchrun_launch` renders
  the keyword arguments of ``PipesK8sClient.run``.

Every function validates against dagster_k8s's own config schema or the Kubernetes API models, so a typo fails
in a unit test, not on the cluster. Secrets are referenced by Secret name only, never by value.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

K8S_DIR = Path(__file__).resolve().parent / "k8s"
GPU_POOL = "gpu"
GPU_RESOURCE = "nvidia.com/gpu"
K8S_CONFIG_TAG = "dagster-k8s/config"


@cache
def load(name: str) -> dict[str, Any]:
    """One of the YAML files in ``infra/deploy/k8s/`` (``executor``, ``gpu_step``, ``torchrun``)."""
    return yaml.safe_load((K8S_DIR / f"{name}.yaml").read_text())


def _validated(schema: Any, value: dict[str, Any], what: str) -> dict[str, Any]:
    from dagster import DagsterInvalidConfigError
    from dagster._config import process_config, resolve_to_config_type

    result = process_config(resolve_to_config_type(schema), value)
    if not result.success:
        raise DagsterInvalidConfigError(f"invalid {what}", result.errors, value)
    return dict(result.value)


def executor_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``executor.yaml`` (plus overrides), validated by ``k8s_job_executor``'s own config schema."""
    from dagster_k8s import k8s_job_executor

    config = {**copy.deepcopy(load("executor")), **(overrides or {})}
    _validated(k8s_job_executor.config_schema.config_type, config, "k8s_job_executor config")
    return config


def k8s_executor(overrides: dict[str, Any] | None = None):
    """The ``k8s_job_executor`` configured from ``executor.yaml``, for the production code location."""
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(executor_config(overrides), name="k8s_job_executor")


def gpu_step_config(gpus: int) -> dict[str, Any]:
    """The user-defined k8s config of a step with ``gpus`` GPUs (validated like Dagster validates the tag)."""
    if gpus < 1:
        raise ValueError("a GPU step needs at least one GPU")
    config = copy.deepcopy(load("gpu_step"))
    resources = config.setdefault("container_config", {}).setdefault("resources", {})
    for kind in ("requests", "limits"):
        resources.setdefault(kind, {})[GPU_RESOURCE] = str(gpus)
    return config


def gpu_step_tags(gpus: int = 1) -> dict[str, str]:
    """``op_tags`` for a GPU asset: ``@asset(pool=GPU_POOL, op_tags=gpu_step_tags(1))``."""
    from dagster_k8s.job import get_user_defined_k8s_config

    tags = {K8S_CONFIG_TAG: json.dumps(gpu_step_config(gpus))}
    get_user_defined_k8s_config(tags)  # raises DagsterInvalidConfigError on a bad key
    return tags


def torchrun_launch(entrypoint: str, *, gpus: int | None = None, image: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``PipesK8sClient.run`` (besides ``context`` and ``extras``) that start training."""
    cfg = copy.deepcopy(load("torchrun"))
    n = int(gpus or cfg["gpus"])
    command = [part.format(gpus=n, entrypoint=entrypoint) for part in cfg["command"]]
    resources = copy.deepcopy(cfg["resources"])
    for kind in ("requests", "limits"):
        resources.setdefault(kind, {})[GPU_RESOURCE] = str(n)
    env_from = [{"secretRef": {"name": s}} for s in cfg.get("env_from_secrets", [])]
    env_from += [{"configMapRef": {"name": c}} for c in cfg.get("env_from_config_maps", [])]
    pod_spec = {
        "serviceAccountName": cfg["service_account_name"],
        "nodeSelector": cfg["node_selector"],
        "tolerations": cfg["tolerations"],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg["shm_size"]}}],
        "containers": [
            {
                "envFrom": env_from,
                "resources": resources,
                "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
            }
        ],
    }
    return {
        "image": image or cfg["image"],
        "command": command,
        "namespace": cfg["namespace"],
        "env": {k: str(v) for k, v in cfg.get("env", {}).items()},
        "base_pod_spec": pod_spec,
        "pod_wait_timeout": float(cfg["pod_wait_timeout_s"]),
    }


def render_torchrun_pod(entrypoint: str, pod_name: str = "clipfoundry-train", **kwargs: Any):
    """The pod PipesK8sClient would create (without the Pipes bootstrap env), as a Kubernetes ``V1Pod``."""
    import kubernetes
    from dagster_k8s.models import k8s_model_from_dict
    from dagster_k8s.pipes import build_pod_body

    launch = torchrun_launch(entrypoint, **kwargs)
    body = build_pod_body(
        pod_name=pod_name,
        image=launch["image"],
        command=launch["command"],
        env_vars=launch["env"],
        base_pod_meta={"labels": {"app.kubernetes.io/part-of": "clipfoundry"}},
        base_pod_spec=launch["base_pod_spec"],
    )
    return body if isinstance(body, kubernetes.client.V1Pod) else k8s_model_from_dict(kubernetes.client.V1Pod, body)


def render_step_job(step_tags: dict[str, str], image: str, step_key: str = "model", run_id: str = "0" * 36):
    """The Kubernetes ``V1Job`` the executor would create for one step: ``executor.yaml`` merged with the
    step's ``dagster-k8s/config`` tag, the way ``k8s_job_executor`` merges them."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_k8s_job_name,
        get_user_defined_k8s_config,
    )

    cfg = executor_config()
    base = K8sContainerContext(
        image_pull_policy=cfg.get("image_pull_policy"),
        service_account_name=cfg.get("service_account_name"),
        env_config_maps=cfg.get("env_config_maps"),
        env_secrets=cfg.get("env_secrets"),
        labels=cfg.get("labels"),
        namespace=cfg.get("job_namespace"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(cfg.get("step_k8s_config", {})),
    )
    context = base.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
    job_config = DagsterK8sJobConfig(
        job_image=image, dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance"
    )
    name = f"dagster-step-{get_k8s_job_name(run_id, step_key)}"
    return construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
    )

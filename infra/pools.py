"""The ``gpu`` concurrency pool: at most as many model steps at once as the machine has GPUs.

Dagster keeps pool limits in the instance, not in code, and a pool it has never seen gets the instance's default
limit (4 in ``infra/deploy/dagster.local.yaml``), which would let four training or scoring steps share one GPU.
The commands that start a local deployment (``make demo``, ``make ui``, ``clipfoundry materialize``) set it to the
GPUs this machine has (1 without any, so model steps on CPU run one at a time) unless a person already set it
(``dagster instance concurrency set gpu N``, which a cluster deployment does once for its GPU nodes).
"""

from __future__ import annotations

from dagster import DagsterInstance

GPU_POOL = "gpu"


def gpu_count() -> int:
    """GPUs torch can see here, at least 1."""
    try:
        import torch
    except ImportError:
        return 1
    return max(1, torch.cuda.device_count())


def ensure_gpu_pool(instance: DagsterInstance) -> int:
    """The ``gpu`` pool's limit after this call: a limit someone set is kept, else it becomes :func:`gpu_count`."""
    limits = {pool.name: pool for pool in instance.event_log_storage.get_pool_limits()}
    current = limits.get(GPU_POOL)
    if current is not None and not current.from_default:
        return current.limit
    count = gpu_count()
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, count)
    return count


if __name__ == "__main__":
    print(f"gpu pool: {ensure_gpu_pool(DagsterInstance.get())} slot(s)")

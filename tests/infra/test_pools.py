from dagster import DagsterInstance

from infra.pools import GPU_POOL, ensure_gpu_pool, gpu_count


def test_the_gpu_pool_gets_this_machines_gpus_unless_someone_set_it(tmp_path):
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert ensure_gpu_pool(instance) == gpu_count() >= 1
        limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
        assert limits[GPU_POOL] == gpu_count()
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 7)  # a person's choice
        assert ensure_gpu_pool(instance) == 7

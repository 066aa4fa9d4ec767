"""Loading a captioner or judge for an asset: a CoCa named by an MLflow URI (``models:/…``) is resolved against the
pipeline's own tracking server, not MLflow's default, so it is the model this pipeline registered."""

from __future__ import annotations

from infra.lake import Lake
from infra.resources import MlflowResource
from ops.vlm import Captioner, VlmConfig, load_backend


def load_vlm(model: str | None, backend: str, mlflow: MlflowResource, store: Lake) -> Captioner | None:
    """The backend running ``model``, or None when no model is configured."""
    if not model:
        return None
    engine = {"tracking_uri": mlflow.tracker(store).tracking_uri} if backend == "coca" else {}
    return load_backend(VlmConfig(model=model, backend=backend, engine_kwargs=engine))

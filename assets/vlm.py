"""Loading a captioner or judge for an asset: a CoCa named by an MLflow URI (``models:/…``) is resolved against the
pipeline's own tracking server, not MLflow's default, so it is the model this pipeline registered; the name
:data:`ops.bootstrap.BOOTSTRAP` is the exact version the bootstrap stage registered for this round."""

from __future__ import annotations

from infra.lake import Lake
from infra.resources import MlflowResource
from ops.bootstrap import BOOTSTRAP, COCA_BACKEND, read_bootstrap
from ops.vlm import Captioner, VlmConfig, load_backend


def load_vlm(model: str | None, backend: str, mlflow: MlflowResource, store: Lake) -> Captioner | None:
    """The backend running ``model``, or None when no model is configured."""
    if not model:
        return None
    if model == BOOTSTRAP:
        model = read_bootstrap(store).uri
    engine = {"tracking_uri": mlflow.tracker(store).tracking_uri} if backend == COCA_BACKEND else {}
    return load_backend(VlmConfig(model=model, backend=backend, engine_kwargs=engine))

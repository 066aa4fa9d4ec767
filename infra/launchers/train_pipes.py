"""Training under Dagster Pipes: this process supervises torchrun and speaks for rank 0.

The ``model`` asset starts this module with ``PipesSubprocessClient`` (on Kubernetes, ``PipesK8sClient`` runs
the same module in a pod). It launches ``torchrun`` through :func:`ops.training.train`, which follows rank 0's
per-step metrics; every step goes to the Dagster run's MLflow run, progress reaches the Dagster UI as Pipes log
lines, and the result comes back as the asset's materialization metadata. Ranks other than 0 never report.
"""

from __future__ import annotations

import math
import signal
import sys

from dagster_pipes import open_dagster_pipes

from infra.tracking import Tracker
from ops.training import TrainConfig, train


def exit_on_sigterm() -> None:
    """Turn SIGTERM (how Dagster's Pipes client stops this process when the run is cancelled) into an exception, so
    :func:`ops.training.train` gets to stop torchrun and its ranks instead of leaving them running."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main() -> None:
    exit_on_sigterm()
    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        config = TrainConfig(**extras["train_config"])
        tracker = Tracker(extras["tracking_uri"], extras["experiment"])
        run_id = extras["mlflow_run_id"]
        every = max(1, int(extras.get("report_every", 10)))

        def on_step(metrics: dict[str, float]) -> None:
            step = int(metrics["step"])
            values = {f"train/{k}": v for k, v in metrics.items() if k != "step" and math.isfinite(v)}
            tracker.log_metrics(run_id, values, step=step)
            if step % every == 0:
                pipes.log.info(
                    f"step {step}: loss {metrics.get('loss', float('nan')):.4f}, lr {metrics.get('lr', 0):.3e}"
                )

        result = train(config, on_step=on_step)
        losses = [s["loss"] for s in result.steps if "loss" in s]
        pipes.report_asset_materialization(
            metadata={
                "steps": len(result.steps),
                "epochs": result.epoch,
                "first_loss": losses[0] if losses else float("nan"),
                "final_loss": losses[-1] if losses else float("nan"),
                "checkpoint": str(result.checkpoint),
                "train_seconds": round(result.seconds, 2),
            }
        )


if __name__ == "__main__":
    main()

"""Experiment tracking (`tracking: none | tensorboard | mlflow | wandb`), none of them a dependency.

The classifiers report through the HF Trainer: TensorBoard event files go to
`<run>/models/<kind>/tensorboard/`, MLflow and W&B through the Trainer's own integrations (configured
by their usual environment variables). The GNN's per-epoch curve (loss, val AUC) goes to the same
tracker once it is trained or loaded, TensorBoard's under `<run>/tensorboard/gnn/`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from linklm.errors import UserError

TRACKERS = ("none", "tensorboard", "mlflow", "wandb")
_PACKAGE = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def require(tracking: str) -> None:
    """UserError (one line) unless `tracking` is known and its package is installed."""
    if tracking not in TRACKERS:
        raise UserError(f"config key tracking must be one of {', '.join(TRACKERS)}, got {tracking!r}")
    package = _PACKAGE.get(tracking)
    if package and importlib.util.find_spec(package) is None:
        raise UserError(f"tracking={tracking} needs the {package} package (pip install {package})")


def trainer_callbacks(tracking: str, folder: Path) -> tuple[str, list]:
    """(the Trainer's report_to, extra callbacks) for a classifier trained in `folder`."""
    if tracking == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        return "none", [TensorBoardCallback(SummaryWriter(log_dir=str(folder / "tensorboard")))]
    return ("none" if tracking == "none" else tracking), []


def log_curve(tracking: str, folder: Path, name: str, rows: list[dict[str, Any]], step: str = "epoch") -> None:
    """Each row's numbers (but `step` and wall-clock seconds) as scalars `name/<key>` at row[step]."""
    series = [(int(row[step]), {k: float(v) for k, v in row.items() if k not in (step, "seconds")}) for row in rows]
    if tracking == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(folder / "tensorboard" / name)) as writer:
            for at, values in series:
                for key, value in values.items():
                    writer.add_scalar(f"{name}/{key}", value, at)
    elif tracking == "mlflow":
        import mlflow

        with mlflow.start_run(run_name=name, nested=mlflow.active_run() is not None):
            for at, values in series:
                mlflow.log_metrics({f"{name}/{k}": v for k, v in values.items()}, step=at)
    elif tracking == "wandb":
        import wandb

        run = wandb.init(project="linklm", name=name, dir=str(folder), reinit="finish_previous")
        for at, values in series:
            run.log({f"{name}/{k}": v for k, v in values.items()}, step=at)
        run.finish()

"""The colorizer that ships with the project: ``pipeline/colorizer/``, what ``python -m pipeline
colorize`` uses when no ``--model`` is given, so that a user can colorize a photo right after
``make setup``.

It is an exported model like any other (``ema.pt``, ``config.json`` and their sha256 sidecars,
pipeline.methods.export: checked on every load, weights read without pickle) plus
``provenance.json`` (also with a sidecar): how it was made (``dvc repro colorize/shipped/dvc.yaml``),
the params file and its sha256, the MLflow run it was trained in with that run's git commit and
data manifest digest, and the evaluate stage's scores of it. ``ship`` writes it, as the last stage
of colorize/shipped/dvc.yaml; nothing else writes into the folder.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pipeline
from pipeline.io import atomic_dir, read_json, write_json
from pipeline.methods.export import CONFIG_FILE, WEIGHTS_FILE, load_model, read_config

if TYPE_CHECKING:
    from pipeline.reports.train import TrainReport

SHIPPED_DIR = Path(pipeline.__file__).parent / "colorizer"
PROVENANCE_FILE = "provenance.json"
MADE_BY = "dvc repro colorize/shipped/dvc.yaml"
MAX_SHIPPED_BYTES = 30 * 2**20  # what the repository carries (issue 25: about 30 MB)
FAMILY = "ddpm_color"


def shipped_colorizer(folder: Path = SHIPPED_DIR) -> Path:
    """The shipped colorizer's folder; FileNotFoundError (one line, with what to do) when this
    install has none."""
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"no colorizer ships with this install ({folder} has no {CONFIG_FILE}): pass --model "
            "DIR (`make colorize` trains one into colorize/models)"
        )
    return folder


def read_provenance(folder: Path = SHIPPED_DIR) -> dict:
    """``provenance.json`` of a shipped colorizer, checked against its sidecar."""
    return read_json(
        folder / PROVENANCE_FILE, ("made_by", "metrics"), made_by=MADE_BY, verified=True
    )


def ship(
    models_dir: str | Path,
    out_dir: str | Path,
    *,
    params_file: str | Path,
    train_report: TrainReport,
    run_tags: dict[str, str],
    metrics: str | Path,
) -> dict:
    """Copy the exported colorizer in ``models_dir`` into ``out_dir`` (atomically) with its
    provenance (``train_report``: the train stage's report; ``run_tags``: the tags of the MLflow
    run it names); return the provenance. Refuses a model that does not load (sha256, fit), is not
    a ``ddpm_color`` colorizer, or is larger than MAX_SHIPPED_BYTES."""
    models_dir = Path(models_dir)
    model = load_model(models_dir)  # every check a user's load makes, before anything is copied
    if model.params.model.family != FAMILY:
        raise ValueError(
            f"{models_dir}: model.family {model.params.model.family!r}; the shipped colorizer "
            f"is a {FAMILY}"
        )
    files = [WEIGHTS_FILE, f"{WEIGHTS_FILE}.sha256", CONFIG_FILE, f"{CONFIG_FILE}.sha256"]
    size = sum((models_dir / name).stat().st_size for name in files)
    if size > MAX_SHIPPED_BYTES:
        raise ValueError(
            f"{models_dir}: {size / 2**20:.1f} MiB, above the {MAX_SHIPPED_BYTES / 2**20:.0f} MiB "
            "a shipped colorizer may take (a smaller model.base_channels fits)"
        )
    provenance = {
        "made_by": MADE_BY,
        "params_file": str(params_file),
        "params_sha256": hashlib.sha256(Path(params_file).read_bytes()).hexdigest(),
        "step": read_config(models_dir)["step"],
        "mlflow_run_id": train_report.mlflow_run_id,
        "run_name": train_report.run_name,
        "git_commit": run_tags.get("git_commit"),
        "data_manifest_sha256": run_tags.get("data_manifest_sha256"),
        "train_wall_time_s": train_report.wall_time_s,
        "metrics": read_json(Path(metrics), ("num_samples",), made_by="the evaluate stage"),
    }
    with atomic_dir(out_dir) as tmp:
        for name in files:
            shutil.copy2(models_dir / name, tmp / name)
        write_json(tmp / PROVENANCE_FILE, provenance, verified=True)
    return provenance

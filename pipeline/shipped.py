"""The colorizer that ships with the project: ``pipeline/colorizer/``, what ``python -m pipeline
colorize`` uses when no ``--model`` is given, so that a user can colorize a photo right after
``make setup``.

Two exported models (``ema.pt``, ``config.json`` and their sha256 sidecars,
pipeline.methods.export: checked on every load, weights read without pickle): the diffusion
colorizer (``ddpm_color``) in the folder itself and its guide (``regression_color``, the one-step L2
estimate of E[ab | L*] the command takes each pixel's hue from) in ``guide/``; plus
``provenance.json`` (also with a sidecar): how they were made (``dvc repro
colorize/shipped/dvc.yaml``), per model the params file and its sha256 and the MLflow run it was
trained in with that run's git commit and data manifest digest, and the evaluate stage's scores
(the guide's as its ``regression_*`` baseline). ``ship`` writes it, as the last stage of
colorize/shipped/dvc.yaml; nothing else writes into the folder.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pipeline
from pipeline.io import atomic_dir, read_json, write_json
from pipeline.methods.export import CONFIG_FILE, WEIGHTS_FILE, load_model, read_config
from pipeline.photo import guide_mismatch

if TYPE_CHECKING:
    from pipeline.reports.train import TrainReport

SHIPPED_DIR = Path(pipeline.__file__).parent / "colorizer"
GUIDE_DIR = "guide"  # the guide's subfolder
PROVENANCE_FILE = "provenance.json"
MADE_BY = "dvc repro colorize/shipped/dvc.yaml"
MAX_SHIPPED_BYTES = 30 * 2**20  # what the repository carries (issue 25: about 30 MB)
FAMILY = "ddpm_color"
MODEL_FILES = (WEIGHTS_FILE, f"{WEIGHTS_FILE}.sha256", CONFIG_FILE, f"{CONFIG_FILE}.sha256")


def shipped_colorizer(folder: Path = SHIPPED_DIR) -> Path:
    """The shipped colorizer's folder; FileNotFoundError (one line, with what to do) when this
    install has none."""
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"no colorizer ships with this install ({folder} has no {CONFIG_FILE}): pass --model "
            "DIR (`make colorize` trains one into colorize/models)"
        )
    return folder


def shipped_guide(folder: Path = SHIPPED_DIR) -> Path:
    """The shipped colorizer's guide (``folder``/guide); FileNotFoundError as shipped_colorizer."""
    return shipped_colorizer(folder / GUIDE_DIR)


def read_provenance(folder: Path = SHIPPED_DIR) -> dict:
    """``provenance.json`` of a shipped colorizer, checked against its sidecar."""
    return read_json(
        folder / PROVENANCE_FILE, ("made_by", "metrics"), made_by=MADE_BY, verified=True
    )


@dataclass(frozen=True)
class Trained:
    """One model the train stage made: its exported folder, the params file it trained with, the
    train stage's report and the tags of the MLflow run that report names."""

    models_dir: Path
    params_file: Path
    report: TrainReport
    run_tags: dict[str, str]

    def size(self) -> int:
        """Bytes its files take."""
        return sum((self.models_dir / name).stat().st_size for name in MODEL_FILES)

    def provenance(self) -> dict:
        """How it was made: params file and sha256, step, MLflow run, git commit, data digest."""
        return {
            "params_file": str(self.params_file),
            "params_sha256": hashlib.sha256(self.params_file.read_bytes()).hexdigest(),
            "step": read_config(self.models_dir)["step"],
            "mlflow_run_id": self.report.mlflow_run_id,
            "run_name": self.report.run_name,
            "git_commit": self.run_tags.get("git_commit"),
            "data_manifest_sha256": self.run_tags.get("data_manifest_sha256"),
            "train_wall_time_s": self.report.wall_time_s,
        }


def ship(colorizer: Trained, guide: Trained, out_dir: str | Path, *, metrics: str | Path) -> dict:
    """Copy the diffusion ``colorizer`` into ``out_dir`` and its ``guide`` into ``out_dir``/guide
    (atomically, both or neither) with their provenance and the evaluate stage's ``metrics``;
    return the provenance. Refuses models that do not load (sha256, fit), are not a ``ddpm_color``
    and a ``regression_color`` of the same crop size, or together take more than
    MAX_SHIPPED_BYTES."""
    model = load_model(colorizer.models_dir)  # every check a user's load makes, before copying
    if model.params.model.family != FAMILY:
        raise ValueError(
            f"{colorizer.models_dir}: model.family {model.params.model.family!r}; the shipped "
            f"colorizer is a {FAMILY}"
        )
    if problem := guide_mismatch(model, load_model(guide.models_dir)):
        raise ValueError(f"{guide.models_dir} {problem}")
    size = colorizer.size() + guide.size()
    if size > MAX_SHIPPED_BYTES:
        raise ValueError(
            f"{colorizer.models_dir} and {guide.models_dir}: {size / 2**20:.1f} MiB, above the "
            f"{MAX_SHIPPED_BYTES / 2**20:.0f} MiB a shipped colorizer may take (a smaller "
            "model.base_channels fits)"
        )
    provenance = {
        "made_by": MADE_BY,
        **colorizer.provenance(),
        "guide": guide.provenance(),
        "metrics": read_json(Path(metrics), ("num_samples",), made_by="the evaluate stage"),
    }
    with atomic_dir(out_dir) as tmp:
        (tmp / GUIDE_DIR).mkdir()
        for name in MODEL_FILES:
            shutil.copy2(colorizer.models_dir / name, tmp / name)
            shutil.copy2(guide.models_dir / name, tmp / GUIDE_DIR / name)
        write_json(tmp / PROVENANCE_FILE, provenance, verified=True)
    return provenance

"""Where a stage's lasting files go when DVC runs it in a temporary copy of the repository.

``dvc exp run --queue`` and ``--temp`` run each experiment in a copy under
``<workspace>/.dvc/tmp/exps/`` that DVC deletes when the experiment ends, and export ``DVC_ROOT`` as
the workspace the experiment came from (for a plain ``dvc repro`` it is the repository itself). What
must outlive the copy, the MLflow store (``mlflow.db``, ``mlartifacts/``) and the resumable
checkpoints, goes to the same place in that workspace: queued runs land in the store the user
looks at, and an experiment run again resumes where it stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

DVC_ROOT_ENV = "DVC_ROOT"  # set by DVC for every stage command
DVC_EXP_NAME_ENV = "DVC_EXP_NAME"  # the experiment's name, set by DVC for `dvc exp run`
DVC_BASELINE_ENV = "DVC_EXP_BASELINE_REV"  # the commit the experiment was derived from


def repository_of(directory: Path) -> Path | None:
    """The nearest directory at or above ``directory`` holding ``.dvc``, None outside DVC."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    return None


def lasting(path: str | Path) -> Path:
    """``path`` as an absolute path that outlives the stage: in a temporary copy DVC runs an
    experiment in, the same place in the workspace ``$DVC_ROOT``; anywhere else ``path`` itself
    (a path outside the copy, such as a shared dir or a tracking server's, stays as given)."""
    path = Path(path).resolve()
    root = os.environ.get(DVC_ROOT_ENV)
    copy = repository_of(Path.cwd().resolve()) if root else None
    if copy is None or copy == Path(root).resolve() or not path.is_relative_to(copy):
        return path
    return Path(root).resolve() / path.relative_to(copy)


def experiment_tags() -> dict[str, str]:
    """The DVC experiment a run belongs to, as MLflow tags (``dvc.exp_name``,
    ``dvc.baseline_rev``): the way from a run in the MLflow UI back to its row of ``dvc exp
    show``; empty outside ``dvc exp run``."""
    names = {DVC_EXP_NAME_ENV: "dvc.exp_name", DVC_BASELINE_ENV: "dvc.baseline_rev"}
    return {tag: os.environ[env] for env, tag in names.items() if os.environ.get(env)}

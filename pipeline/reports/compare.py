"""Which model is best for a compute budget: every evaluated training run of an MLflow experiment,
one row each (``compare.csv``), and FID against training compute, one point per run (``compare.png``).

Training compute is the train stage's wall time times its workers: CPU-seconds (one CPU per worker)
or GPU-seconds (one GPU each), by the ``accelerator`` tag the train stage sets. Only runs scored in
one feature space with the same weights are comparable: the table keeps the space of the newest
evaluated run unless one is asked for, and says which.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from pipeline.io import atomic_path

COLUMNS = (
    "run_name",
    "family",
    "fid",
    "kid",
    "class_accuracy",
    "compute_s",
    "accelerator",
    "wall_time_s",
    "num_workers",
    "steps",
    "features",
    "features_sha256",
    "git_commit",
    "run_id",
)


def compare_table(
    client: MlflowClient, experiment: str, features: str | None = None
) -> pd.DataFrame:
    """The experiment's training runs (tag ``dvc_stage`` train...) that evaluate scored, in the
    feature space ``features`` (None: the newest scored run's) and with its weights; sorted by
    FID. ValueError naming the experiment when there is none."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment {experiment!r} at {client.tracking_uri}")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string="tags.dvc_stage LIKE 'train%'",
        order_by=["attributes.start_time DESC"],
        max_results=10_000,
    )
    rows = []
    for run in runs:
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        space = tags.get("eval.features")
        if f"fid_{space}" not in metrics or "features_sha256" not in tags:
            continue  # not evaluated (or before evaluate recorded its feature weights)
        workers = int(params.get("train.num_workers", 1))
        rows.append(
            {
                "run_name": run.info.run_name,
                "family": params.get("model.family", "ddpm"),
                "fid": metrics[f"fid_{space}"],
                "kid": metrics.get(f"kid_{space}"),
                "class_accuracy": metrics.get("class_accuracy"),
                "compute_s": round(metrics["wall_time_s"] * workers, 1),
                "accelerator": tags.get("accelerator", "cpu"),
                "wall_time_s": metrics["wall_time_s"],
                "num_workers": workers,
                "steps": int(params.get("train.steps", 0)),
                "features": space,
                "features_sha256": tags["features_sha256"],
                "git_commit": tags.get("git_commit"),
                "run_id": run.info.run_id,
            }
        )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if table.empty:
        raise ValueError(
            f"no evaluated training runs in experiment {experiment!r}: run `dvc repro` (train and "
            "evaluate) first"
        )
    if features is not None and features not in set(table["features"]):
        raise ValueError(
            f"--features {features!r}: the experiment's runs are scored in "
            f"{', '.join(sorted(set(table['features'])))}"
        )
    newest = table[table["features"] == (features or table["features"].iloc[0])].iloc[0]
    same = (table["features"] == newest["features"]) & (
        table["features_sha256"] == newest["features_sha256"]
    )
    return table[same].sort_values("fid").reset_index(drop=True)


def plot_compare(table: pd.DataFrame, path: str | Path, *, overwrite: bool = True) -> None:
    """FID (log) against training compute (log), one point per run, coloured by family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (family, runs) in enumerate(table.groupby("family", sort=True)):
        ax.scatter(runs["compute_s"], runs["fid"], color=f"C{i}", label=family, s=40)
        for row in runs.to_dict("records"):
            ax.annotate(f"{row['steps']} steps", (row["compute_s"], row["fid"]), fontsize=7,
                        textcoords="offset points", xytext=(5, 4))  # fmt: skip
    units = " + ".join(f"{a.upper()}-seconds" for a in sorted(set(table["accelerator"])))
    for values, scale in ((table["compute_s"], ax.set_xscale), (table["fid"], ax.set_yscale)):
        if values.max() > 10 * values.min():  # several orders of magnitude: log
            scale("log")
    ax.set_xlabel(f"training compute ({units}: wall time x workers)")
    ax.set_ylabel(f"fid_{table['features'].iloc[0]} (lower is better)")
    ax.set_title("which model for this budget: one point per training run")
    ax.legend(title="model.family", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_compare(
    table: pd.DataFrame, csv_path: str | Path, png_path: str | Path, *, overwrite: bool = True
) -> None:
    """The table as CSV and its picture; without ``overwrite``, never over files that exist."""
    with atomic_path(csv_path, overwrite=overwrite) as tmp:
        table.to_csv(tmp, index=False)
    plot_compare(table, png_path, overwrite=overwrite)

"""The tune stage of stylize/dvc.yaml: a Ray Tune search of the stylization's weights, ranked by
the score the stylize stage reports (pipeline.style.runs: the share of the style distance left, at
a bounded loss of the photo's edges).

Each trial paints every pair of ``pairs`` with the stylize section, the trial budget (``tune.size``,
``tune.steps``) and the values Tune drew from ``tune.space`` (by default lambda_style, log-uniform,
with lambda_content 1: their ratio is what matters), and reports the means over the pairs. Trials
hold one CPU each, so a 2-core machine runs two side by side; the images travel with the trials
(Ray's object store), so trials on other nodes need no shared disk. Each trial is an MLflow child
run of the sweep's parent run (run name ``stylize-tune-<12 hex>``, the sha256 of what the sweep's
results depend on: the params, the images' bytes and the code). The stage writes the winning values
(``best_params.yaml``, applied by the stylize stage), one row per trial (CSV) and a plot of the
score against lambda_style / lambda_content.

A sweep is short (minutes): an interrupted one starts again from its first trial.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import ray.tune
import torch
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from pipeline.cluster import init_ray
from pipeline.config import ConfigError, to_dict
from pipeline.io import atomic_path
from pipeline.provenance import code_digest, identity_name
from pipeline.style.choice import build_features, features_sha256
from pipeline.style.params import StyleParams, with_values
from pipeline.style.runs import EDGE_FLOOR, images_digest, paint, read_image
from pipeline.tracking import (
    connect,
    experiment_id,
    patient_sqlite,
    provenance_tags,
    recorded,
    start_run,
    tracking_uri,
)
from pipeline.tune.best import read_tuned, write_best_params
from pipeline.tune.search import TRIAL_TAG, SweepProgress, error_line, new_tuner, winner

log = logging.getLogger(__name__)

METRIC = "score"  # what Tune minimises: pipeline.style.runs.pair_scores' score, mean over pairs
REPORTED = ("score", "style_left", "texture_moved", "colour_moved", "edge_agreement", "seconds")
TRIAL_RESOURCES = {"CPU": 1}
CODE = "pipeline.style.sweep"  # the module whose source closure is the code a trial runs


@dataclass(frozen=True)
class StyleSweep:
    """What every trial of a sweep shares: the params, the sweep's name, its MLflow parent run and
    the images (name -> (1, 3, H, W) in [0, 1])."""

    params: StyleParams
    name: str
    parent_run_id: str
    tracking_uri: str
    contents: dict[str, torch.Tensor]
    styles: dict[str, torch.Tensor]


def style_trial(config: dict[str, Any], *, sweep: StyleSweep) -> None:
    """Tune's trainable: every pair painted with the trial's options; the means of REPORTED."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    trial_id = ray.tune.get_context().get_trial_id()
    options = sweep.params.trial_options(config)
    patient_sqlite()
    client = MlflowClient(sweep.tracking_uri)
    tags = {MLFLOW_PARENT_RUN_ID: sweep.parent_run_id, TRIAL_TAG: trial_id}
    tags.update({f"tune.value.{key}": str(value) for key, value in config.items()})
    run_id = start_run(client, sweep.params.mlflow.experiment, f"{sweep.name}-{trial_id}",
                       {"stylize": asdict(options)}, tags)  # fmt: skip
    with recorded(client, run_id):
        features = build_features(sweep.params.features, options.seed)
        pairs = []
        for content in sweep.contents.values():
            for style in sweep.styles.values():
                scores = paint(content, style, features, options)[3]
                scores["style_left"] = scores["style_distance"] / scores["style_distance_before"]
                pairs.append(scores)
        means = {key: float(np.mean([p[key] for p in pairs])) for key in REPORTED}
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in means.items()])
    ray.tune.report(means)


def sweep_identity(params: StyleParams, digest: str) -> dict[str, Any]:
    """What a sweep's results depend on: the stylize, features and tune sections, the images, the
    code."""
    return {
        "stylize": to_dict(params.stylize),
        "features": to_dict(params.features),
        "features_sha256": features_sha256(params.features),
        "tune": {k: v for k, v in to_dict(params.tune).items() if k != "enabled"},
        "images_sha256": digest,
        "code_sha256": code_digest(CODE),
    }


def tune_config(params: StyleParams) -> ray.tune.TuneConfig:
    search = params.tune
    concurrency = search.max_concurrent_trials or max(1, int(ray.cluster_resources().get("CPU", 1)))
    if search.search == "optuna":
        algorithm = ConcurrencyLimiter(OptunaSearch(seed=search.seed), concurrency)
    else:  # Tune ignores TuneConfig.max_concurrent_trials for a variant generator
        algorithm = BasicVariantGenerator(random_state=search.seed, max_concurrent=concurrency)
    return ray.tune.TuneConfig(
        metric=METRIC, mode="min", search_alg=algorithm, num_samples=search.num_samples
    )


def results_table(grid: ray.tune.ResultGrid, keys: list[str]) -> pd.DataFrame:
    """One row per trial, best first: trial_id, status (completed | failed), the drawn values,
    lambda_style / lambda_content, REPORTED, error."""
    rows = []
    for result in grid:
        metrics, config = result.metrics or {}, result.config or {}
        row = {"trial_id": metrics.get("trial_id") or getattr(result, "path", ""),
               "status": "failed" if result.error is not None else "completed"}  # fmt: skip
        row.update({key: config.get(key) for key in keys})
        row.update({key: metrics.get(key, np.nan) for key in REPORTED})
        row["error"] = error_line(result.error)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["_rank"] = (table["status"] != "completed").astype(int)
    return table.sort_values(["_rank", METRIC, "trial_id"]).drop(columns="_rank")


def weight_ratio(params: StyleParams, table: pd.DataFrame) -> pd.Series:
    """lambda_style / lambda_content of each row (the stylize section's where not searched)."""
    style = table.get("stylize.style_weight", params.stylize.style_weight)
    content = table.get("stylize.content_weight", params.stylize.content_weight)
    return pd.Series(style, index=table.index) / pd.Series(content, index=table.index)


def plot_sweep(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """score, and the share of the style distance left, against lambda_style / lambda_content (log
    axis); edge agreement on a second axis; the best trial marked."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table["status"] == "completed"].sort_values("ratio")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(done["ratio"], done["score"], "o-", color="C0", label="score (lower is better)")
    ax.plot(done["ratio"], done["style_left"], "s--", color="C1", label="style distance left")
    best = table.iloc[0]
    if best["status"] == "completed":
        ax.plot([best["ratio"]], [best["score"]], "*", ms=16, color="C3", label="best")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("lambda_style / lambda_content")
    ax.set_ylabel("score, style distance left")
    edges = ax.twinx()
    edges.plot(done["ratio"], done["edge_agreement"], "^:", color="C2", label="edge agreement")
    edges.axhline(
        EDGE_FLOOR, color="C2", lw=0.8, alpha=0.5, label="edge floor (score penalty below)"
    )
    edges.set_ylabel("edge agreement with the photo")
    lines = ax.get_legend_handles_labels()
    more = edges.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run_style_sweep(
    params: StyleParams, *, best_params_path: str, results_csv: str, plot_png: str
) -> dict[str, Any]:
    """The stage (module docstring); returns the best row. With ``tune.enabled`` false it writes
    an empty best_params.yaml, an empty table and a plot saying so."""
    if not params.tune.enabled:
        write_best_params({}, best_params_path, "tune.enabled is false: stylize uses its params")
        empty = pd.DataFrame(columns=["trial_id", "status", "ratio", *REPORTED])
        with atomic_path(results_csv) as tmp:
            empty.to_csv(tmp, index=False)
        plot_sweep(empty, plot_png, "tuning disabled (tune.enabled: false)")
        return {}
    specs = params.tune.specs
    contents = {Path(f).stem: read_image(f) for f in params.pairs.contents}
    styles = {Path(f).stem: read_image(f) for f in params.pairs.styles}
    identity = sweep_identity(params, images_digest(params))
    name = identity_name("stylize-tune", identity)
    uri = tracking_uri()
    init_ray(params, uri)  # type: ignore[arg-type]  # reads .ray, as Params has it
    client = connect(uri)
    experiment_id(client, params.mlflow.experiment)  # before trials log in parallel
    tags = {**provenance_tags(".", "stages/stylize_tune.py", identity["images_sha256"]),
            "features_sha256": str(identity["features_sha256"]), "dvc_stage": "stylize_tune"}  # fmt: skip
    parent_id = start_run(client, params.mlflow.experiment, name,
                          {"stylize": to_dict(params.stylize), "features": to_dict(params.features),
                           "tune": to_dict(params.tune)}, tags)  # fmt: skip
    sweep = StyleSweep(params, name, parent_id, uri, contents, styles)
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(style_trial, sweep=sweep), TRIAL_RESOURCES
    )
    with recorded(client, parent_id, finish=False):
        log.info("sweep %s: %s", name, {k: s.values for k, s in specs.items()})
        progress = SweepProgress(METRIC, desc="stylize tune")
        tuner = new_tuner(trainable, specs, tune_config(params), name, progress)
        table = results_table(tuner.fit(), list(specs))
    table.insert(2 + len(specs), "ratio", weight_ratio(params, table))
    best, winning = winner(table, list(specs), name, client, parent_id)
    write_best_params(winning, best_params_path,
                      f"sweep {name}: trial {best['trial_id']}, score {best[METRIC]:.4f}")  # fmt: skip
    with atomic_path(results_csv) as tmp:
        table.to_csv(tmp, index=False)
    completed = (table["status"] == "completed").sum()
    plot_sweep(table, plot_png, f"{name}: {completed} trials at {params.tune.size} px")
    client.log_batch(
        parent_id, metrics=[Metric(f"best_{k}", float(best[k]), 0, 0) for k in REPORTED]
    )
    client.set_tag(parent_id, "tune.best_trial_id", str(best["trial_id"]))
    for path in (best_params_path, results_csv, plot_png):
        client.log_artifact(parent_id, str(path), "tune")
    client.set_terminated(parent_id, RunStatus.to_string(RunStatus.FINISHED))
    log.info("%s\nbest: %s", table.to_string(index=False), winning)
    return {"sweep": name, "trial_id": best["trial_id"], **{k: float(best[k]) for k in REPORTED},
            **winning}  # fmt: skip


def apply_best(params: StyleParams, path: str | Path) -> StyleParams:
    """``params`` with the tuned values of ``path`` applied (validated: pipeline.tune.best.read_tuned)
    when tune.enabled; ``params`` unchanged when it is false."""
    if not params.tune.enabled:
        return params
    values = read_tuned(path, params.tune.specs, "dvc repro stylize/dvc.yaml")
    try:
        return replace(params, stylize=with_values(params.stylize, values))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None

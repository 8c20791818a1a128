"""The DVC pipeline run for real (`dvc repro`) in a temporary git repository."""

import dataclasses
import json
import math
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from pipeline.config import override
from pipeline.config.keys import nest
from pipeline.diffusion import BETA_SCHEDULES, make_betas
from pipeline.methods.export import load_model
from tests.conftest import ROOT


def set_param(repo, key: str, value, file: str = "params.yaml") -> None:
    path = repo / file
    path.write_text(yaml.safe_dump(override(yaml.safe_load(path.read_text()), {key: value})))


def ran(result) -> set[str]:
    """The stages a `dvc repro` ran."""
    return {
        line.split("'")[1]
        for line in result.stdout.splitlines()
        if line.startswith("Running stage")
    }


TINY_TRAINING = {
    "model.base_channels": 8,
    "model.channel_mult": [1, 2],
    "model.num_res_blocks": 1,
    "model.attention_resolutions": [],
    "model.mid_attention": False,
    "model.num_heads": 1,
    "train.steps": 4,
    "train.batch_size": 8,
    "train.warmup_steps": 2,
    "train.checkpoint_every": 2,
    "train.log_every": 2,
    "train.sample_every": 0,
    "train.sample_count": 4,
    "train.sample_steps": 2,
    "featurenet.epochs": 1,
    "eval.num_samples": 20,
    "eval.steps": 3,
    "eval.batch_size": 10,
    "eval.grid_count": 16,
    "eval.trajectory_count": 4,
    "eval.kid_subset_size": 10,
    # a real two-trial sweep: one trial per schedule, the winner's schedule goes to train
    "tune.space": nest({"diffusion.schedule": {"grid": ["linear", "cosine"]}}),
    "tune.steps": 2,
    "tune.eval_every": 2,
    "tune.batch_size": None,
    "tune.scheduler": "fifo",
    "tune.eval_samples": 8,
    "tune.eval_steps": 2,
}
ALL_STAGES = {"download", "preprocess", "schedules", "featurenet", "tune", "train", "evaluate"}


@pytest.mark.slow
def test_pipeline_runs_skips_and_reruns_only_what_params_affect(dvc_repo):
    repo = dvc_repo.repo
    for key, value in TINY_TRAINING.items():
        set_param(repo, key, value)
    first = dvc_repo("dvc", "repro")
    assert ran(first) == ALL_STAGES
    manifest = json.loads((repo / "data/processed/manifest.json").read_text())
    assert manifest["source"] == "mnist-5k" and manifest["splits"]["train"]["images"]["shape"][
        1:
    ] == [1, 28, 28]
    assert sum(manifest["splits"][s]["count"] for s in ("train", "val", "test")) == 5000
    table = pd.read_csv(repo / "reports/schedules.csv")
    assert list(table.columns) == ["t", *BETA_SCHEDULES] and len(table) == 1000
    for name in BETA_SCHEDULES:
        alpha_bar_0 = 1 - make_betas(name, 1000)[0].item()
        assert table[name][0] == pytest.approx(math.log(alpha_bar_0 / (1 - alpha_bar_0)), rel=1e-9)
    assert (repo / "reports/schedules.png").stat().st_size > 10_000

    best = yaml.safe_load((repo / "reports/best_params.yaml").read_text())
    table = pd.read_csv(repo / "reports/tune_results.csv")
    assert set(table["diffusion.schedule"]) == {"linear", "cosine"}
    assert set(table["status"]) == {"completed"}
    assert best == {"diffusion": {"schedule": table.iloc[0]["diffusion.schedule"]}}
    summary = json.loads((repo / "reports/tune.json").read_text())  # a metrics file: dvc exp show
    assert summary["best_trial_id"] == table.iloc[0]["trial_id"]
    assert summary["best_fid_featurenet"] == pytest.approx(table.iloc[0]["fid_featurenet"])
    assert summary["num_trials"] == summary["num_completed"] == 2
    trained = load_model(repo / "models").params  # the train stage applied the winner
    assert trained.diffusion.schedule == best["diffusion"]["schedule"]

    report = json.loads((repo / "reports/train.json").read_text())
    assert report["steps"] == 4 and (repo / "models/ema.pt").is_file()
    assert list(pd.read_csv(repo / "reports/plots/train_loss.csv")["step"]) == [2, 4]
    metrics = json.loads(dvc_repo("dvc", "metrics", "show", "--json").stdout)
    shown = metrics[""]["data"]["reports/train.json"]["data"]
    assert shown["final_loss"] == report["final_loss"]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")  # the default store, in the project
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags["dvc_stage"] == "train" and run.info.status == "FINISHED"
    assert run.data.tags["git_commit"] == dvc_repo("git", "rev-parse", "HEAD").stdout.strip()

    scores = json.loads((repo / "reports/metrics.json").read_text())
    assert scores["num_samples"] == 20 and scores["num_real"] == 498
    assert (
        scores["features"] == "featurenet" and scores["sampler"] == "ddim" and scores["steps"] == 3
    )
    assert scores["fid_featurenet"] > 0 and len(scores["weights_sha256"]) == 64
    assert {"kid_featurenet", "kid_featurenet_std", "eta", "seed", "wall_time_s"} <= set(scores)
    assert 0.5 < scores["featurenet_test_accuracy"] <= 1
    with Image.open(repo / "reports/trajectory.gif") as gif:
        assert gif.n_frames >= 2  # one per DDIM step (3); PIL merges frames that look identical
    assert Image.open(repo / "reports/samples.png").size == (4 * 30 + 2, 4 * 30 + 2)
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.metrics["fid_featurenet"] == pytest.approx(scores["fid_featurenet"])
    assert run.data.tags["eval.num_samples"] == "20"
    version = client.get_model_version(
        "diffusion-pipeline-ddpm", str(report["registered_model_version"])
    )
    assert version.run_id == run.info.run_id  # the registered model carries its scores
    assert float(version.tags["fid_featurenet"]) == pytest.approx(scores["fid_featurenet"])
    assert version.tags["features"] == "featurenet"
    champion = client.get_model_version_by_alias("diffusion-pipeline-ddpm", "champion")
    assert champion.version == version.version  # the first scored version
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert evaluation == {
        f"evaluation/{f}" for f in ("metrics.json", "samples.png", "trajectory.gif")
    }

    again = dvc_repro_and_server(dvc_repo, run.info.run_id, scores["fid_featurenet"])
    assert ran(again) == set() and "up to date" in again.stdout
    queued_experiments_are_tracked_in_the_workspace(dvc_repo, client)

    # a changed training loop: every stage that runs it is stale, and the train stage starts a new
    # run (not the old checkpoint); the sweep is not re-run here: the code goes back after it
    step = repo / "pipeline/methods/step.py"
    original = step.read_text()
    step.write_text(original + "\n# a changed training loop\n")
    stale = json.loads(dvc_repo("dvc", "status", "--json", "dvc.yaml").stdout)
    assert {"tune", "train", "evaluate"} <= set(stale)  # stages whose own deps changed
    changed = dvc_repo("dvc", "repro", "--single-item", "train")
    assert ran(changed) == {"train"}
    new_report = json.loads((repo / "reports/train.json").read_text())
    assert new_report["run_name"] != report["run_name"]
    log = changed.stdout + changed.stderr
    assert f"training {new_report['run_name']}" in log and "reusing the finished run" not in log
    assert "resuming" not in log
    step.write_text(original)

    set_param(repo, "train.steps", 6)  # train depends on it, the sweep does not
    stale = json.loads(dvc_repo("dvc", "status", "--json", "dvc.yaml").stdout)
    assert "params.yaml" in json.dumps(stale["train"]) and "tune" not in stale
    untuned = dvc_repo("dvc", "exp", "run", "-S", "tune.enabled=false", "train")
    assert ran(untuned) == {"tune", "train"}  # evaluate (stale now) follows its models as above
    assert json.loads((repo / "reports/train.json").read_text())["steps"] == 6
    assert yaml.safe_load((repo / "reports/best_params.yaml").read_text()) == {}
    assert load_model(repo / "models").params.diffusion.schedule == "linear"  # params.yaml's

    def status() -> dict:
        return json.loads(dvc_repo("dvc", "status", "--json", "dvc.yaml").stdout)

    left = status()
    assert set(left) == {"evaluate"}
    set_param(repo, "download.retries", 5)  # how files are fetched, not what they are
    set_param(repo, "mlflow.experiment", "elsewhere")  # where runs are recorded
    assert status() == left  # neither makes any stage stale

    set_param(repo, "diffusion.timesteps", 200)
    set_param(repo, "data.image_size", 32)  # re-preprocess, no re-download
    stale = status()
    assert {"preprocess", "schedules", "tune", "train"} <= set(stale) and "download" not in stale
    # the stages that read these params directly (the rest follow their outputs, as above)
    assert ran(dvc_repo("dvc", "repro", "schedules", "preprocess")) == {"schedules", "preprocess"}
    assert len(pd.read_csv(repo / "reports/schedules.csv")) == 200
    manifest = json.loads((repo / "data/processed/manifest.json").read_text())
    assert manifest["splits"]["test"]["images"]["shape"][1:] == [1, 32, 32]


def experiments_shown(dvc_repo) -> dict[str, dict]:
    """``dvc exp show --json``'s experiments: name -> {metrics file -> its values}."""
    found: dict[str, dict] = {}

    def walk(node) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            metrics = (node.get("data") or {}).get("metrics")
            if node.get("name") and metrics:
                found[node["name"]] = {f: v.get("data", {}) for f, v in metrics.items()}
            for value in node.values():
                walk(value)

    walk(json.loads(dvc_repo("dvc", "exp", "show", "--json").stdout))
    return found


def queued_experiments_are_tracked_in_the_workspace(dvc_repo, client) -> None:
    """Issue 42: three experiments queued with other params and run two at a time (`dvc queue
    start -j 2`, each in a temporary copy DVC deletes) record their MLflow runs in the workspace's
    store, tagged with their names; `dvc exp show` lists each run id and score; the store is
    intact; `dvc plots diff` draws two of them side by side."""
    repo = dvc_repo.repo
    dvc_repo("git", "add", "-A")
    dvc_repo("git", "commit", "-qm", "the tiny run")  # the experiments' baseline
    names = {f"steps-{n}": n for n in (2, 6, 8)}
    for name, steps in names.items():
        dvc_repo("dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.steps={steps}")
    dvc_repo("dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = dvc_repo("dvc", "queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(5)
    else:
        pytest.fail(f"the queue did not finish in 900 s:\n{status}")
    assert status.count("Success") == 3, status
    shown = experiments_shown(dvc_repo)
    for name, steps in names.items():
        report, scores = shown[name]["reports/train.json"], shown[name]["reports/metrics.json"]
        assert report["steps"] == steps and scores["fid_featurenet"] > 0
        run = client.get_run(report["mlflow_run_id"])  # in the workspace's mlflow.db
        assert run.info.status == "FINISHED" and run.data.tags["dvc.exp_name"] == name
        assert run.data.metrics["fid_featurenet"] == pytest.approx(scores["fid_featurenet"])
        assert (repo / "checkpoints" / report["run_name"]).is_dir()  # resumable, in the workspace
    with sqlite3.connect(repo / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    plots = json.loads(dvc_repo("dvc", "plots", "diff", "steps-2", "steps-8", "--json").stdout)
    revisions = {row["rev"] for p in plots["data"]["reports/plots/train_loss.csv"]
                 for row in p["content"]["data"]["values"]}  # fmt: skip
    assert revisions == {"steps-2", "steps-8"}


def dvc_repro_and_server(dvc_repo, run_id: str, fid: float):
    """A second `dvc repro` while a real `mlflow server` on 127.0.0.1 serves the project's store;
    the run's FID must come back through its REST API. Returns the repro's result."""
    repo = dvc_repo.repo
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}", "--workers", "1"],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        again = dvc_repo("dvc", "repro")
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={run_id}"
        for _ in range(120):  # the server takes a few seconds to start
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.load(response)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer on 127.0.0.1")
        metrics = {m["key"]: m["value"] for m in body["run"]["data"]["metrics"]}
        assert metrics["fid_featurenet"] == pytest.approx(fid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return again


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tune_stage_lists_exactly_the_train_params_trials_use():
    from pipeline.config import TRIAL_FIXED, TrainConfig

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["tune"]
    listed = {p.split(".", 1)[1] for p in stage["params"] if p.startswith("train.")}
    assert listed == {f.name for f in dataclasses.fields(TrainConfig)} - set(TRIAL_FIXED)


def test_tune_and_train_stages_list_every_section_a_family_trains_with():
    """The root pipeline trains any registered family: its tune and train stages list every
    section that shapes a model (diffusion, model and each family's own, from the registry: a new
    family's section is added here too, or this fails) and train (whole, or the keys a trial
    takes), so DVC re-runs them when one changes."""
    from pipeline.config import tune_sections

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    shaping = set(tune_sections()) - {"train"}
    for name in ("tune", "train"):
        whole = {p for p in stages[name]["params"] if "." not in p}
        assert whole - {"train", "tune"} == shaping, name


def test_bad_params_fail_the_stage_and_leave_no_outputs(dvc_repo):
    set_param(dvc_repo.repo, "diffusion.schedule", "quadratic")
    result = dvc_repo("dvc", "repro", "schedules", check=False)
    assert result.returncode != 0
    assert "unknown beta schedule 'quadratic'" in result.stdout + result.stderr
    assert not (dvc_repo.repo / "reports/schedules.csv").exists()


def declared_plots(repo) -> dict[str, str]:
    """Every plot the project's dvc.yaml files declare, as DVC names it in ``dvc plots``, with
    the file it reads: stage-level plots by their path, top-level ones by id (``dir/dvc.yaml::id``
    outside the root when the id is used in several files)."""
    declared: dict[str, list[tuple[str, str]]] = {}
    for dvcfile in sorted(repo.rglob("dvc.yaml")):
        spec, where = yaml.safe_load(dvcfile.read_text()), dvcfile.parent.relative_to(repo)
        for stage in spec.get("stages", {}).values():
            for entry in stage.get("plots", []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                declared.setdefault(path, []).append((str(dvcfile.relative_to(repo)), path))
        for entry in spec.get("plots", []):
            name, props = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            source = next(iter(props["y"])) if isinstance(props.get("y"), dict) else name
            declared.setdefault(name, []).append(
                (str(dvcfile.relative_to(repo)), str(where / source))
            )
    return {
        (name if len(files) == 1 else f"{file}::{name}"): source
        for name, files in declared.items()
        for file, source in files
    }


def test_dvc_plots_diff_renders_every_declared_plot_of_two_revisions(dvc_repo):
    """Issue 42: each CSV a person compares (every pipeline's training history, each sweep's
    trials) is a DVC plot, and ``dvc plots diff`` of two revisions renders all of them."""
    repo = dvc_repo.repo
    declared = declared_plots(repo)
    tables = {  # the tables git holds (the others, and the pictures, are DVC outputs)
        name: source
        for name, source in declared.items()
        if source.endswith(".csv") and (repo / source).is_file()
    }
    histories = {s for s in tables.values() if s.endswith("_loss.csv")}
    assert len(histories) == 5  # train (root), train + baseline (colorize), train + guide (shipped)
    assert {"dvc.yaml::tune_trials", "colorize/dvc.yaml::tune_trials", "score_by_ratio"} <= set(
        tables
    )
    for history in histories:  # a second revision: each history three rows shorter
        table = pd.read_csv(repo / history)
        assert {"step", "lr", "grad_norm", "images_per_s"} <= set(table.columns)
        table.iloc[:-3].to_csv(repo / history, index=False)
    dvc_repo("git", "commit", "-qam", "shorter histories")
    shown = json.loads(dvc_repo("dvc", "plots", "diff", "HEAD~1", "HEAD", "--json").stdout)
    rendered = {name for name, plots in shown["data"].items() if plots}
    assert set(tables) - rendered <= {"colorize/dvc.yaml::tune_trials"}  # the sweep is off there
    for name in set(tables) & rendered:
        revisions = {
            row["rev"] for plot in shown["data"][name] for row in plot["content"]["data"]["values"]
        }
        assert revisions == {"HEAD~1", "HEAD"}, name
    html = dvc_repo("dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", "plots_html")
    assert html.returncode == 0
    page = (repo / "plots_html" / "index.html").read_text()
    for name in rendered:  # DVC's element id: the name, other characters as "_"; a drawn spec
        block = page.split(f'<div id = "{re.sub("[^a-zA-Z0-9]", "_", name)}">')[1]
        assert "var spec = {}" not in block.split("</div>")[0], name


TINY_COLORIZER = {
    "data.image_size": 16,
    "data.tile_scales": [1],  # one scale: the centred 16 px crops of each photo at 16 px
    "data.scene": "box",  # each crop told where it sits in its photo (issue 40)
    **{k: v for k, v in TINY_TRAINING.items() if k.startswith(("model.", "train."))},
    "train.sample_every": 2,
    "eval.num_samples": 12,
    "eval.steps": 3,
    "eval.batch_size": 6,
    "eval.trajectory_count": 2,
    "eval.kid_subset_size": 6,
    "eval.colorizer.diversity_count": 2,
    "eval.colorizer.diversity_samples": 2,
    "eval.colorizer.photos": 3,
    # a real two-trial sweep ranked on fid_colour; the winner's prediction type goes to train
    "tune.enabled": True,
    "tune.space": nest({"diffusion.prediction_type": {"grid": ["epsilon", "v_prediction"]}}),
    "tune.steps": 2,
    "tune.eval_every": 2,
    "tune.batch_size": None,
    "tune.scheduler": "fifo",
    "tune.eval_samples": 8,
    "tune.eval_steps": 2,
}


@pytest.mark.slow
def test_colorization_pipeline_scores_the_model_and_both_baselines(dvc_repo):
    repo = dvc_repo.repo
    for key, value in TINY_COLORIZER.items():
        set_param(repo, key, value, "colorize/params.yaml")
    result = dvc_repo("dvc", "repro", "colorize/dvc.yaml")
    stages = {"download", "preprocess", "tune", "train", "baseline", "evaluate"}
    assert ran(result) == {f"colorize/dvc.yaml:{s}" for s in stages}
    assert not (repo / "models").exists()  # the default pipeline's outputs are untouched

    manifest = json.loads((repo / "colorize/data/processed/manifest.json").read_text())
    assert manifest["source"] == "photos" and manifest["params"]["fit"] == "tiles"
    assert manifest["params"]["scene"] == "box"
    assert manifest["splits"]["train"]["images"]["shape"][1:] == [4, 16, 16]  # RGB, box
    assert manifest["splits"]["test"]["count"] >= 36  # at least one crop of each test photo
    table = pd.read_csv(repo / "colorize/reports/tune_results.csv")
    assert set(table["status"]) == {"completed"} and len(table) == 2
    assert table["fid_colour"].notna().all() and "fid_colour@2" in table
    best = yaml.safe_load((repo / "colorize/reports/best_params.yaml").read_text())
    winner = table.iloc[0]["diffusion.prediction_type"]
    assert best == {"diffusion": {"prediction_type": winner}}
    trained = load_model(repo / "colorize/models").params
    assert trained.model.family == "ddpm_color" and trained.diffusion.prediction_type == winner
    assert load_model(repo / "colorize/models_regression").params.model.family == "regression_color"

    scores = json.loads((repo / "colorize/reports/metrics.json").read_text())
    per_model = [
        "fid_colour",
        "kid_colour",
        "psnr",
        "ssim",
        "ciede2000",
        "ciede2000_relative",
        "hue_accuracy",
        "colourfulness",
        "colourfulness_gap",
    ]
    for prefix in ("", "gray_", "regression_"):
        for key in per_model:
            assert math.isfinite(scores[f"{prefix}{key}"]), (prefix, key)
    assert scores["features"] == "colour" and scores["num_samples"] == 12
    assert scores["gray_colourfulness"] < 0.5 < scores["colourfulness_truth"]
    assert "gray_colourfulness_truth" not in scores  # the truth's is reported once
    assert scores["diversity_ab"] > 0 and scores["psnr"] < 100
    assert scores["gray_fid_colour"] > 0 and scores["colourfulness"] > 0
    # three test photos colorized whole as the command does: with the regression as the guide
    # (the command's default decoding), the draws alone, the guide alone
    for prefix in ("photo_", "photo_draws_", "photo_regression_"):
        for key in ("ciede2000_relative", "hue_accuracy", "chroma_ratio", "fid_colour"):
            assert math.isfinite(scores[f"{prefix}{key}"]), (prefix, key)
    assert 0 < scores["photo_chroma_ratio"] and scores["photo_gray_fid_colour"] > 0
    assert scores["photo_draws_chroma_ratio"] > scores["photo_regression_chroma_ratio"]
    # gray | 2 samples | truth, twice in a row
    with Image.open(repo / "colorize/reports/triptychs.png") as grid:
        assert grid.size == (2 + 8 * 18, 2 + 18)

    report = json.loads((repo / "colorize/reports/train.json").read_text())
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.metrics["regression_psnr"] == pytest.approx(scores["regression_psnr"])
    assert run.data.metrics["diversity_ab"] == pytest.approx(scores["diversity_ab"])
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/triptychs.png", "evaluation/trajectory.gif"} <= evaluation
    logged = client.list_artifacts(run.info.run_id)
    assert any(a.path.startswith("images") for a in logged)  # training triptychs (log_image)
    baseline = json.loads((repo / "colorize/reports/baseline.json").read_text())
    tags = client.get_run(baseline["mlflow_run_id"]).data.tags
    assert tags["dvc_stage"] == "train --family regression_color"

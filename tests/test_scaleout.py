"""The pipeline on a real two-node Ray cluster on 127.0.0.1 (token auth), submitted as a Ray job,
tracked by a real `mlflow server` on PostgreSQL 15 with basic auth, its outputs coming back through a
DVC directory remote. One cluster, database and server for the module; the job runs once."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT, assert_same_tensors, project_files
from tests.loopback import BIN, mlflow_server, pg_bindir, postgres, ray_cluster
from tests.test_dvc_pipeline import TINY_TRAINING, set_param

pytestmark = pytest.mark.slow

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "DVC_NO_ANALYTICS": "1",
}


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def local_env(**extra: str) -> dict[str, str]:
    """This machine's environment for a local command: the venv first, no cluster, no server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.pop("PIPELINE_SHARED_DIR", None)
    return {**env, **GIT_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, server):
    # the nodes hold the tracking server's credentials (a real cluster: ~/.mlflow/credentials or a
    # Secret); submit.sh never sends them with a job
    credentials = {
        "MLFLOW_TRACKING_USERNAME": server.username,
        "MLFLOW_TRACKING_PASSWORD": server.password,
    }
    root = Path(tmp_path_factory.mktemp("ray"))
    with ray_cluster(root, nodes=2, cpus=1, node_env=credentials) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL cannot run here: pg_config --bindir has no initdb, or this is root "
            "without a 'postgres' account to run it as"
        )
    with postgres(bindir) as database:
        root = Path(tmp_path_factory.mktemp("mlflow"))
        with mlflow_server(root, database.uri, ROOT / "infra/mlflow/serve.sh") as running:
            yield running


def api(server, path: str, host: str | None = None, auth: bool = True) -> dict:
    """GET ``path`` of the server's REST API, as its admin (``auth``), with a Host header."""
    request = urllib.request.Request(f"{server.url}{path}")
    if auth:
        token = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    if host:
        request.add_header("Host", host)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def job(cluster, server, tmp_path_factory):
    """The tiny pipeline (a 2-trial sweep, training on 2 workers, evaluation) submitted with
    `ray job submit --working-dir` from a git + DVC repository whose default remote is a directory
    on the shared storage. Returns the repository, the shared dir and the submission's output."""
    base = Path(tmp_path_factory.mktemp("job"))
    repo, shared = base / "project", base / "shared"
    for f in project_files():
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, repo / f)
    for key, value in TINY_TRAINING.items():
        set_param(repo, key, value)
    set_param(repo, "mlflow.experiment", "scaleout")
    env = local_env()
    run(["git", "init", "-q"], repo, env)
    run([str(BIN / "dvc"), "remote", "add", "-d", "shared", str(shared / "dvc-remote")], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "project"], repo, env)
    results = shared / "results" / "job-1"
    env = {
        **cluster.env,
        "RAY_ADDRESS": cluster.dashboard,
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": server.username,
        "MLFLOW_TRACKING_PASSWORD": server.password,
        "PIPELINE_SHARED_DIR": str(shared / "storage"),
    }
    submitted = run(
        ["bash", "infra/ray/submit.sh", "--results", str(results)], repo, env, check=False
    )
    assert submitted.returncode == 0, submitted.stdout[-6000:] + submitted.stderr[-3000:]
    assert "MLFLOW_TRACKING_PASSWORD is not sent with the job" in submitted.stderr
    jobs = run([str(BIN / "ray"), "job", "list", "--address", cluster.dashboard], repo, cluster.env)
    assert server.url in jobs.stdout and server.password not in jobs.stdout  # the job's metadata
    outputs = [p for d in ("data/processed", "models") for p in sorted((repo / d).rglob("*"))]
    assert not outputs  # made by the job, on the cluster, not here
    return {"repo": repo, "shared": shared, "results": results, "log": submitted.stdout}


@pytest.fixture(scope="module")
def pulled(job, tmp_path_factory):
    """A fresh clone of the submitter's repository that fetched the job's commit and `dvc pull`ed
    its outputs; with the job's reports as they came (a later test re-trains there)."""
    clone = Path(tmp_path_factory.mktemp("clone")) / "project"
    env = local_env()
    run(["git", "clone", "-q", str(job["repo"]), str(clone)], clone.parent, env)
    run(["git", "pull", "-q", str(job["results"] / "results.bundle"), "HEAD"], clone, env)
    run([str(BIN / "dvc"), "pull", "-q", "dvc.yaml"], clone, env)  # the default pipeline
    return {
        "clone": clone,
        "train": json.loads((clone / "reports/train.json").read_text()),
        "metrics": json.loads((clone / "reports/metrics.json").read_text()),
        "history": pd.read_csv(clone / "reports/plots/train_loss.csv"),
    }


def test_the_job_trains_on_two_nodes_and_logs_every_point_to_the_server(pulled, cluster, server):
    report = pulled["train"]
    assert set(report["worker_nodes"]) == set(cluster.nodes)  # rank 0 and 1 on either node
    run = api(server, f"/api/2.0/mlflow/runs/get?run_id={report['mlflow_run_id']}")["run"]
    assert run["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["worker_nodes"].split(",") == report["worker_nodes"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["fid_featurenet"] == pytest.approx(pulled["metrics"]["fid_featurenet"])
    history = pulled["history"]  # the job's loss per logged step (DVC plots)
    points = api(
        server,
        f"/api/2.0/mlflow/metrics/get-history?run_id={run['info']['run_id']}&metric_key=loss",
    )["metrics"]
    assert [p["step"] for p in points] == list(history["step"]) == [2, 4]
    assert [p["value"] for p in points] == pytest.approx(list(history["loss"]), rel=1e-6)

    parent = tags_search(server, "tags.dvc_stage = 'tune'")
    assert len(parent) == 1
    trials = tags_search(server, f"tags.`mlflow.parentRunId` = '{parent[0]['info']['run_id']}'")
    assert len(trials) == 2 and {t["info"]["status"] for t in trials} == {"FINISHED"}
    for trial in trials:
        trial_tags = {t["key"]: t["value"] for t in trial["data"]["tags"]}
        assert set(trial_tags["worker_nodes"].split(",")) <= set(cluster.nodes)
        for key in ("loss", "fid_featurenet"):
            path = f"/api/2.0/mlflow/metrics/get-history?run_id={trial['info']['run_id']}"
            assert [p["step"] for p in api(server, f"{path}&metric_key={key}")["metrics"]] == [2]


def tags_search(server, filter_string: str) -> list[dict]:
    """The runs of the 'scaleout' experiment that ``filter_string`` selects (REST search)."""
    experiment = api(server, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=scaleout")
    body = json.dumps(
        {"experiment_ids": [experiment["experiment"]["experiment_id"]], "filter": filter_string}
    ).encode()
    request = urllib.request.Request(
        f"{server.url}/api/2.0/mlflow/runs/search", data=body, method="POST"
    )
    token = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response).get("runs", [])


def test_outputs_come_back_byte_for_byte_through_the_dvc_remote(job, pulled):
    pulled = pulled["clone"]
    listed = (job["results"] / "outputs.sha256").read_text().splitlines()
    assert any(" data/processed/" in line for line in listed)
    assert any(" models/ema.pt" in line for line in listed)
    check = run(["sha256sum", "--check", "--strict", str(job["results"] / "outputs.sha256")],
                pulled, local_env())  # fmt: skip
    assert check.stdout.count(": OK") == len(listed)


def test_the_one_node_run_of_the_same_config_gives_the_same_weights(pulled):
    multi, pulled = pulled["train"], pulled["clone"]
    assert len(set(multi["worker_nodes"])) == 2
    before = torch.load(pulled / "models/ema.pt", map_location="cpu", weights_only=True)
    run([str(BIN / "dvc"), "repro", "-f", "-s", "train"], pulled, local_env())
    single = json.loads((pulled / "reports/train.json").read_text())
    assert len(set(single["worker_nodes"])) == 1 and single["num_workers"] == 2
    assert single["run_name"] == multi["run_name"]  # the same params, data and code
    after = torch.load(pulled / "models/ema.pt", map_location="cpu", weights_only=True)
    assert_same_tensors(before, after)


def test_a_submission_without_the_token_is_refused(cluster, tmp_path):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    refused = run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--", "true"],
                  tmp_path, env, check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "Authentication required" in refused.stderr + refused.stdout
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 48)
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)}
    refused = run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--", "true"],
                  tmp_path, env, check=False)  # fmt: skip
    assert refused.returncode != 0


def test_the_server_wants_credentials_and_its_own_host_name(server):
    with pytest.raises(urllib.error.HTTPError) as denied:
        api(server, "/api/2.0/mlflow/experiments/search?max_results=1", auth=False)
    assert denied.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as foreign:
        api(server, "/api/2.0/mlflow/experiments/search?max_results=1", host="evil.example.com")
    assert foreign.value.code == 403
    assert "experiments" in api(server, "/api/2.0/mlflow/experiments/search?max_results=1")


@pytest.mark.parametrize(
    "extra, message",
    [
        ({}, "but MLflow tracks into sqlite:"),  # two nodes, the project's sqlite file
        ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "but ray.shared_dir is null"),
    ],
)
def test_a_two_node_cluster_refuses_what_would_lose_results(
    cluster, pulled, tmp_path, extra, message
):
    env = {**local_env(**extra), **{k: v for k, v in cluster.env.items() if k.startswith("RAY_")}}
    env["RAY_ADDRESS"] = cluster.address
    refused = run(
        [sys.executable, "-m", "stages.train", "--data", str(pulled["clone"] / "data/processed"),
         "--checkpoints",
         str(tmp_path / "c"), "--models", str(tmp_path / "m"), "--report", str(tmp_path / "r.json"),
         "--history", str(tmp_path / "h.csv"), "--samples", str(tmp_path / "s.png")],
        ROOT, env, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert message in refused.stderr
    assert not (tmp_path / "m").exists()


def test_the_job_entrypoint_refuses_to_run_without_a_remote_or_a_server(tmp_path):
    env = local_env()
    run(["git", "init", "-q"], tmp_path, env)
    run([str(BIN / "dvc"), "init", "-q"], tmp_path, env)
    no_remote = run(["bash", str(ROOT / "infra/ray/job.sh")], tmp_path, env, check=False)
    assert no_remote.returncode == 2 and "no default DVC remote" in no_remote.stderr
    run([str(BIN / "dvc"), "remote", "add", "-d", "r", str(tmp_path / "remote")], tmp_path, env)
    no_server = run(["bash", str(ROOT / "infra/ray/job.sh")], tmp_path, env, check=False)
    assert no_server.returncode == 2 and "MLFLOW_TRACKING_URI is not set" in no_server.stderr

"""Models by MLflow URI: the shipped colorizer as a registered photo model (pipeline.photo_model),
served by the real ``mlflow models serve``, and ``colorize --model`` / ``sample --model`` taking
``models:/NAME/VERSION`` and ``models:/NAME@ALIAS`` from a real store (SQLite)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from pipeline.photo_model import log_photo_model
from pipeline.shipped import SHIPPED_DIR
from pipeline.tracking import fluent_store
from pipeline.train.mlflow_model import log_model
from tests.factories import train_report
from tests.test_colorize import export

ROOT = Path(__file__).parents[1]
PHOTO = ROOT / "pipeline" / "data" / "photos" / "aqua.jpg"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real tracking store holding the shipped colorizer as the photo model ``photo`` (version 1,
    alias ``shipped``) and a tiny ddpm logged as the train stage logs it (``tiny``)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ddpm = export(root / "ddpm", "ddpm")
    with fluent_store(uri):
        experiment = mlflow.create_experiment("t", artifact_location=(root / "art").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            photo = log_photo_model(SHIPPED_DIR, "photo")
            log_model(ddpm, "tiny")
    MlflowClient(uri).set_registered_model_alias("photo", "shipped", photo.registered_model_version)
    return {"uri": uri, "ddpm": ddpm}


def command(store, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.slow
def test_colorize_and_sample_take_a_registered_model(store, tmp_path):
    shipped = command(store, "colorize", PHOTO, "--out", tmp_path / "shipped")
    by_alias = command(store, "colorize", PHOTO, "--model", "models:/photo@shipped",
                       "--out", tmp_path / "alias")  # fmt: skip
    assert shipped.returncode == 0 and by_alias.returncode == 0, by_alias.stderr
    # the photo model brings its guide: the same colours as the shipped default
    np.testing.assert_array_equal(
        pixels(tmp_path / "alias/aqua.png"), pixels(tmp_path / "shipped/aqua.png")
    )

    folder = command(store, "sample", "--model", store["ddpm"], "--count", "2", "--steps", "2",
                     "--out", tmp_path / "folder.png")  # fmt: skip
    by_version = command(store, "sample", "--model", "models:/tiny/1", "--count", "2",
                         "--steps", "2", "--out", tmp_path / "version.png")  # fmt: skip
    assert folder.returncode == 0 and by_version.returncode == 0, by_version.stderr
    np.testing.assert_array_equal(pixels(tmp_path / "version.png"), pixels(tmp_path / "folder.png"))

    missing = command(store, "sample", "--model", "models:/nope/3", "--count", "1",
                      "--out", tmp_path / "none.png")  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "models:/nope/3: not found in the tracking store sqlite:///" in missing.stderr
    assert not (tmp_path / "none.png").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_photo_with_the_colorized_photo(store, tmp_path):
    made = command(store, "colorize", PHOTO, "--vividness", "0", "--seed", "5",
                   "--out", tmp_path / "cli")  # fmt: skip
    assert made.returncode == 0, made.stderr
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"],
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/photo@shipped",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.5)
        photo = base64.b64encode(PHOTO.read_bytes()).decode()
        status, answer = post(f"{url}/invocations", {
            "dataframe_split": {"columns": ["image"], "data": [[photo]]},
            "params": {"vividness": 0.0, "seed": 5},
        })  # fmt: skip
        assert status == 200, answer
        (tmp_path / "served.png").write_bytes(base64.b64decode(answer["predictions"][0]["png"]))
        np.testing.assert_array_equal(
            pixels(tmp_path / "served.png"), pixels(tmp_path / "cli/aqua.png")
        )
        junk = base64.b64encode(b"not a photo").decode()
        status, answer = post(f"{url}/invocations",
                              {"dataframe_split": {"columns": ["image"], "data": [[junk]]}})  # fmt: skip
        assert status == 400 and "photo 0: cannot identify image file" in json.dumps(answer)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn it started
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_ship_stage_ships_and_registers_the_photo_model(tmp_path):
    """``python -m stages.ship`` on two tiny exported models: the folder, and the photo model
    logged to the colorizer's run, registered with the alias ``shipped``, that colours a photo."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("c", artifact_location=(tmp_path / "art").as_uri())
    made = {}
    for family in ("ddpm_color", "regression_color"):
        run = client.create_run(experiment, tags={"git_commit": "abc", "data_manifest_sha256": "d"})
        train_report(mlflow_run_id=run.info.run_id).write(tmp_path / f"{family}.json")
        (tmp_path / f"{family}.yaml").write_text(f"model:\n  family: {family}\n")
        made[family] = (export(tmp_path / family, family), run.info.run_id)
    (tmp_path / "metrics.json").write_text(json.dumps({"num_samples": 8, "fid_colour": 1.5}))
    shipped = subprocess.run(
        [sys.executable, "-m", "stages.ship",
         "--params", str(tmp_path / "ddpm_color.yaml"), "--models", str(made["ddpm_color"][0]),
         "--train-report", str(tmp_path / "ddpm_color.json"),
         "--guide-params", str(tmp_path / "regression_color.yaml"),
         "--guide", str(made["regression_color"][0]),
         "--guide-report", str(tmp_path / "regression_color.json"),
         "--metrics", str(tmp_path / "metrics.json"), "--out", str(tmp_path / "colorizer"),
         "--register", "p"],
        cwd=ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert shipped.returncode == 0, shipped.stderr
    assert "mlflow models serve -m models:/p@shipped" in shipped.stdout + shipped.stderr
    assert (tmp_path / "colorizer" / "guide" / "ema.pt").is_file()
    version = client.get_model_version_by_alias("p", "shipped")
    assert int(version.version) == 1 and version.run_id == made["ddpm_color"][1]
    with fluent_store(uri):
        model = mlflow.pyfunc.load_model("models:/p@shipped")
    answer = model.predict(pd.DataFrame({"image": [PHOTO.read_bytes()]}), params={"steps": 2})
    colour = Image.open(io.BytesIO(answer["png"][0]))
    assert colour.format == "PNG" and colour.size == Image.open(PHOTO).size

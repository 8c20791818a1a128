"""Trustworthy results: bad params and bad files end in one ERROR line naming the key or file, exit
status 2 and untouched previous outputs; corrupted files are never read silently; a code change
never reuses an old run. (Each case failed before issue 11: see docs/reliability.md.)"""

import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import pipeline
from pipeline.apps import main as cli_main
from pipeline.cluster import init_ray
from pipeline.config import FeatureNetConfig, ModelConfig, Params, TrainConfig
from pipeline.data import download_source, preprocess
from pipeline.data.download import DownloadError, RemoteFile, fetch
from pipeline.data.sources import Folder, list_images
from pipeline.evaluate.featurenet import FeatureNet, FeatureNetResult, save_featurenet
from pipeline.evaluate.scores import ImageFeatures, cached_features, extract
from pipeline.io import atomic_dir, atomic_path, save_verified, sidecar, write_checksum
from pipeline.methods.ddpm import build_unet
from pipeline.methods.export import export_model
from pipeline.models import make_ema
from pipeline.provenance import code_digest, imports_of, source_closure
from pipeline.registry import FAMILIES, method_module
from pipeline.train.checkpoint import STATE_KEYS, latest_checkpoint_dir
from stages.evaluate import main as evaluate_main
from stages.train import main as train_main
from tests.conftest import ROOT
from tests.factories import train_report

TINY_MODEL = ModelConfig(
    base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
    mid_attention=False, num_heads=1,
)  # fmt: skip
PARAMS = Params(model=TINY_MODEL, train=TrainConfig(steps=4, batch_size=8))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Valid inputs of the evaluate and train stages: processed data, an exported model (untrained
    weights: only the files matter), a featurenet, a train report, and params.yaml."""
    root = tmp_path_factory.mktemp("pristine")
    download_source(PARAMS.data, PARAMS.download, root / "raw")
    from pipeline.config import DataConfig

    preprocess(DataConfig(limit=64), root / "raw", root / "processed", progress=False)
    torch.manual_seed(0)
    net = build_unet(PARAMS)
    export_model(make_ema(net).module.state_dict(), step=4, params=PARAMS, out_dir=root / "models")
    config = FeatureNetConfig(epochs=1)
    save_featurenet(FeatureNet(1, 10, config), config, FeatureNetResult(0.1, 2.3, 1), root / "fn")
    (root / "reports").mkdir()
    train_report().write(root / "reports/train.json")
    raw = yaml.safe_load((pipeline_root() / "params.yaml").read_text())
    raw["download"]["cache_dir"] = str(root / "cache")
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root


def pipeline_root():
    from tests.conftest import ROOT

    return ROOT


@pytest.fixture
def work(pristine, tmp_path):
    """A copy of the pristine inputs, with previous outputs (sentinels) in place."""
    root = tmp_path / "w"
    shutil.copytree(pristine, root)
    for name in ("metrics.json", "samples.png", "trajectory.gif"):
        (root / "reports" / name).write_text(f"previous {name}")
    return root


def outputs(root):
    return {p.name: p.read_text() for p in (root / "reports").iterdir() if p.name != "train.json"}


def one_error(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0], errors[0]
    return errors[0]


def flip(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


class Evil:  # a pickle of this runs code when unpickled without weights_only
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def pickled_code(path):
    torch.save({"x": Evil()}, path)
    write_checksum(path)  # even with a matching checksum, it must not load


# -------------------------------------------------------------------- bad files, one table
FILE_CASES = [
    ("truncated .npy", lambda r: truncate(r / "processed/test_images.npy"), "test_images.npy is not a readable .npy array"),
    ("flipped array byte", lambda r: flip(r / "processed/train_images.npy"), "train_images.npy: sha256"),
    ("truncated manifest", lambda r: truncate(r / "processed/manifest.json"), "manifest.json is not valid JSON"),
    ("manifest dtype lie", lambda r: _edit_json(r / "processed/manifest.json", ["splits", "val", "images", "dtype"], "float32"), "val_images.npy: dtype float32, expected uint8"),
    ("garbage config.json", lambda r: (r / "models/config.json").write_text("garbage"), "models/config.json: sha256"),
    ("garbage config.json, checksum re-recorded", lambda r: _resummed(r / "models/config.json", lambda p: p.write_text("garbage")), "models/config.json is not valid JSON"),
    ("config.json without params", lambda r: _edit_json(r / "models/config.json", ["params"], None, resum=True), "models/config.json lacks key(s) params"),
    ("invalid params in config.json", lambda r: _edit_json(r / "models/config.json", ["params", "diffusion", "schedule"], "quadratic", resum=True), "models/config.json: params: diffusion: unknown beta schedule 'quadratic'"),
    ("edited params in config.json", lambda r: _edit_json(r / "models/config.json", ["params", "eval", "steps"], 7), "models/config.json: sha256"),
    ("a huge network in config.json", lambda r: _edit_json(r / "models/config.json", ["params", "model", "base_channels"], 4096), "models/config.json: sha256"),
    ("config.json without its checksum", lambda r: sidecar(r / "models/config.json").unlink(), "config.json: no readable config.json.sha256"),
    ("config.json naming other weights", lambda r: _edit_json(r / "models/config.json", ["weights_sha256"], "0" * 64, resum=True), "models/config.json: weights_sha256 0000000000000000000000000000000000000000000000000000000000000000 is not the sha256 of"),
    ("edited featurenet config.json", lambda r: _edit_json(r / "fn/config.json", ["num_classes"], 11), "fn/config.json: sha256"),
    ("train.json without mlflow_run_id", lambda r: _edit_json(r / "reports/train.json", ["mlflow_run_id"], None), "train.json lacks key(s) mlflow_run_id"),
    ("truncated ema.pt", lambda r: truncate(r / "models/ema.pt"), "models/ema.pt: sha256"),
    ("truncated ema.pt, checksum re-recorded", lambda r: (truncate(r / "models/ema.pt"), write_checksum(r / "models/ema.pt")), "models/ema.pt: cannot be loaded as a tensor file"),
    ("flipped ema.pt byte", lambda r: flip(r / "models/ema.pt"), "models/ema.pt: sha256"),
    ("ema.pt without its checksum", lambda r: sidecar(r / "models/ema.pt").unlink(), "ema.pt: no readable ema.pt.sha256"),
    ("ema.pt holding a pickle of code", lambda r: pickled_code(r / "models/ema.pt"), "models/ema.pt: cannot be loaded as a tensor file"),
    ("flipped featurenet byte", lambda r: flip(r / "fn/weights.pt"), "fn/weights.pt: sha256"),
    ("a huge network in config.json, checksum re-recorded", lambda r: _edit_json(r / "models/config.json", ["params", "model", "base_channels"], 4096, resum=True), "models/ema.pt: does not fit the ddpm network of"),
    ("NaN weights, checksums consistent", lambda r: nan_weights(r / "models"), "holds NaN or infinite values"),
]  # fmt: skip


def nan_weights(models):
    """ema.pt with one NaN, saved and recorded as the trainer records weights (its sidecar and
    config.json's weights_sha256 rewritten): only the values themselves can tell."""
    state = torch.load(models / "ema.pt", weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = float("nan")
    torch.save(state, models / "ema.pt")
    _edit_json(models / "config.json", ["weights_sha256"], write_checksum(models / "ema.pt"),
               resum=True)  # fmt: skip


def _resummed(path, edit):
    edit(path)
    write_checksum(path)  # as if written so: the content itself must be refused


def _edit_json(path, keys, value, *, resum=False):
    if resum:
        return _resummed(path, lambda p: _edit_json(p, keys, value))
    data = json.loads(path.read_text())
    node = data
    for key in keys[:-1]:
        node = node[key]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("name, corrupt, message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_files_fail_the_evaluate_stage_naming_the_file(work, caplog, name, corrupt, message):
    before = outputs(work)
    corrupt(work)
    assert evaluate_work(work) == 2
    assert message in one_error(caplog)
    assert outputs(work) == before
    assert not (work / "pwned").exists()


def evaluate_work(work):
    return evaluate_main(
        ["--params", str(work / "params.yaml"), "--models", str(work / "models"),
         "--featurenet", str(work / "fn"), "--data", str(work / "processed"),
         "--train-report", str(work / "reports/train.json"),
         "--metrics", str(work / "reports/metrics.json"), "--grid", str(work / "reports/samples.png"),
         "--trajectory", str(work / "reports/trajectory.gif")]
    )  # fmt: skip


def test_evaluate_refuses_a_training_run_the_store_lacks_before_sampling(work, caplog, monkeypatch):
    """Issue 47, class 4: evaluate sampled and scored, rewrote metrics.json and its pictures, and
    only then failed to log into the training run. Now the run is checked first (missing, or
    deleted in the UI) and the outputs are written after the store took the scores."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(work)  # the default store: ./mlflow.db
    before = outputs(work)
    assert evaluate_work(work) == 2  # train.json names run 000...0
    assert (
        f"reports/train.json: mlflow_run_id {'0' * 32} is not a run of the tracking store sqlite:///"
        f"{work}/mlflow.db" in one_error(caplog)
    )
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    run_id = client.create_run(client.create_experiment("deleted")).info.run_id
    client.delete_run(run_id)
    _edit_json(work / "reports/train.json", ["mlflow_run_id"], run_id)
    caplog.clear()
    assert evaluate_work(work) == 2
    assert f"reports/train.json: MLflow run {run_id} is deleted; restore it" in one_error(caplog)
    assert outputs(work) == before


def test_a_huge_network_in_a_consistent_config_is_refused_before_it_is_allocated(work):
    """Issue 47, class 3: config.json asking for base_channels 4096 (its checksum re-recorded) is
    refused from the weights' shapes, compared with the network built on the meta device: the
    loading process never holds the network (gigabytes) in memory."""
    from pipeline.config import Params, from_dict
    from pipeline.registry import method_class

    _edit_json(work / "models/config.json", ["params", "model", "base_channels"], 4096, resum=True)
    params = from_dict(Params, json.loads((work / "models/config.json").read_text())["params"])
    with torch.device("meta"):
        net = method_class(params.model.family).build_net(params)
    size = sum(p.numel() * p.element_size() for p in net.parameters())
    assert size > 3e9  # what building it would allocate
    script = (
        "import sys\n"
        "from pipeline.methods.export import load_model\n"
        "try:\n    load_model(sys.argv[1])\nexcept ValueError as exc:\n    print(exc)\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "print(status.split()[0])\n"
    )  # VmHWM: this process's own peak (ru_maxrss also counts the forking pytest's pages)
    result = subprocess.run([sys.executable, "-c", script, str(work / "models")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    message, peak_kb = result.stdout.strip().splitlines()
    assert "models/ema.pt: does not fit the ddpm network of" in message, result.stderr
    assert int(peak_kb) * 1024 < 1.5e9, peak_kb  # torch itself and the small weights


# ------------------------------------------------------------------- bad params, one table
# "billion laughs": 9 levels of 9 aliases, 9^9 = 387 million strings from 300 bytes
ALIAS_BOMB = (
    "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    + "{key}: *a8\n"
)
PARAMS_CASES = [
    ("train:\n  1: 3\n", "line 2: key '1' is read as int 1"),
    ("tune:\n  space:\n    on: 3\n", "line 3: key 'on' is read as bool True"),
    ("train:\n  seed: 1" + "0" * 400 + "\n", "train.seed must be an integer of at most 2^63 - 1, got 1000"),
    ("train:\n  lr: 0.1\n  lr: 0.2\n", "line 3: duplicate key 'lr' (first at line 2)"),
    ("train:\n  lr: 1e-4\n", "train.lr must be a finite number, got '1e-4' (YAML reads 1e-4 as text: write 1.0e-4)"),
    ("train: [1, 2\n", "is not valid YAML"),
    ("train:\n  sample_steps: 2000\n  sample_every: 0\n", "train.sample_steps 2000 exceeds diffusion.timesteps 1000"),
    ("tune:\n  space:\n    diffusion:\n      timesteps: {uniform: [100, 1000]}\n", "space: diffusion.timesteps: uniform draws real numbers but diffusion.timesteps takes int values; use randint or choice"),
    ("tune:\n  space:\n    model:\n      base_channels: {loguniform: [8, 64]}\n", "model.base_channels: loguniform draws real numbers"),
    ("tune:\n  space:\n    diffusion:\n      schedule: {randint: [0, 3]}\n", "diffusion.schedule: randint draws integers but diffusion.schedule takes str values; use choice"),
    ("tune:\n  space: {}\n", "tune: space is empty but enabled is true"),
    ("data:\n  val_fraction: 0\n", "data.val_fraction 0 leaves no validation images, on which the tune stage ranks"),
    ("data:\n  test_fraction: 0\n", "data.test_fraction 0 leaves no test images (source 'mnist-5k' has no official test split)"),
    ("eval:\n  num_samples: 1000000000\n", "eval: num_samples must be at most 200,000, got 1,000,000,000"),
    ("data:\n  image_size: 100000\n", "data: image_size must be at most 1,024, got 100,000"),
    ("train:\n  seed: 18446744073709551616\n", "train.seed must be an integer of at most 2^63 - 1"),
    ("eval:\n  seed: -1\n", "eval: seed must be an integer in [0, 2^63 - 1], got -1"),
    ("eval:\n  kid_subset_size: 1\n", "eval: kid_subset_size must be an integer >= 2"),
    ("tune:\n  space:\n    diffusion:\n      schedule: {grid: [linear, cosine]}\n      loss:\n        min_snr_gamma: {uniform: [0, 5]}\n", "tune: space.diffusion.loss.min_snr_gamma value 0: "),
    (ALIAS_BOMB.format(key="train:\n  lr"), "values with aliases expanded (more than 100,000)"),
    (ALIAS_BOMB.format(key="tune:\n  space:\n    train:\n      lr"), "values with aliases expanded (more than 100,000)"),
    ("a: &a [*a]\n", "line 1: an alias that contains itself"),
    ("train:\n  lr: [" + "0, " * 150_000 + "0]\n", "values with aliases expanded (more than 100,000)"),
    ("data:\n  folder: " + "x" * (1 << 20) + "\n", "bytes, more than the 1,048,576 a params file may have"),
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to be a params file"),
]  # fmt: skip


@pytest.mark.parametrize("text, message", PARAMS_CASES, ids=[c[1][:40] for c in PARAMS_CASES])
def test_bad_params_fail_validation_naming_the_key(tmp_path, caplog, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert cli_main(["validate", str(path)]) == 2
    error = one_error(caplog)
    assert message in error, error


# --------------------------------------------------------------- best_params.yaml, one table
BEST_CASES = [
    ("ray:\n  address: bogus\n", "best_params.yaml: key ray.address is not in tune.space"),
    ("train:\n  steps: 5\n", "best_params.yaml: key train.steps is not in tune.space"),
    ("tune:\n  enabled: false\n", "best_params.yaml: key tune.enabled is not in tune.space"),
    ("diffusion:\n  schedule: quadratic\n", "best_params.yaml: diffusion.schedule value 'quadratic' is outside tune.space's grid"),
    ("train:\n  lr: 0.5\n", "best_params.yaml: train.lr value 0.5 is outside tune.space's loguniform [0.0001, 0.001]"),
    ("diffusion: {schedule: [linear\n", "best_params.yaml is not valid YAML"),
]  # fmt: skip


@pytest.mark.parametrize("text, message", BEST_CASES, ids=[c[1][18:50] for c in BEST_CASES])
def test_best_params_may_only_set_searched_keys(work, caplog, text, message):
    (work / "reports/best_params.yaml").write_text(text)
    before = {p.name: p.read_bytes() for p in (work / "models").iterdir()}
    code = train_main(
        ["--params", str(work / "params.yaml"), "--data", str(work / "processed"),
         "--checkpoints", str(work / "checkpoints"), "--models", str(work / "models"),
         "--report", str(work / "reports/train.json"), "--history", str(work / "h.csv"),
         "--samples", str(work / "reports/samples.png"), "--best", str(work / "reports/best_params.yaml")]
    )  # fmt: skip
    assert code == 2
    assert message in one_error(caplog)
    assert {p.name: p.read_bytes() for p in (work / "models").iterdir()} == before
    assert not (work / "checkpoints").exists() and not (work / "mlflow.db").exists()


# ---------------------------------------------------------------------------- checkpoints
def write_checkpoint(run_dir, name, step, corrupt=None):
    directory = run_dir / f"checkpoint_{name}"
    directory.mkdir(parents=True)
    state = {key: {} for key in STATE_KEYS} | {"step": step, "history": [], "samples": None}
    save_verified(state, directory / "state.pt")
    if corrupt:
        corrupt(directory / "state.pt")
    return directory


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda f: flip(f),
        lambda f: truncate(f),
        pickled_code,
        lambda f: (torch.save({"weights": torch.zeros(2)}, f), write_checksum(f)),
    ],
    ids=["flipped byte", "truncated", "pickle of code", "wrong structure"],
)
def test_a_bad_checkpoint_is_skipped_for_the_previous_one_with_a_warning(tmp_path, caplog, corrupt):
    good = write_checkpoint(tmp_path, "a", 2)
    bad = write_checkpoint(tmp_path, "b", 4, corrupt)
    assert latest_checkpoint_dir(tmp_path) == good
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(bad) in w for w in warnings), warnings
    assert not (tmp_path / "pwned").exists()


def test_without_any_valid_checkpoint_the_run_starts_fresh(tmp_path):
    write_checkpoint(tmp_path, "a", 2, lambda f: flip(f))
    assert latest_checkpoint_dir(tmp_path) is None


# --------------------------------------------------------------------- feature cache
def test_a_poisoned_feature_cache_entry_is_recomputed_and_replaced(tmp_path, caplog):
    torch.manual_seed(0)
    config = FeatureNetConfig()
    extractor = ImageFeatures(FeatureNet(1, 10, config), "featurenet:test")
    images = np.random.default_rng(0).integers(0, 256, (40, 1, 28, 28), dtype=np.uint8)
    real = cached_features(extractor, images, tmp_path)
    (entry,) = tmp_path.glob("*.pt")
    flip(entry, offset=-200)  # tensor bytes: torch would load them without complaint
    again = cached_features(extractor, images, tmp_path)
    assert torch.equal(again, real) and torch.equal(again, extract(extractor, images, desc=None))
    assert any(str(entry) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert torch.equal(cached_features(extractor, images, tmp_path), real)  # replaced: valid again
    # keyed by the actual bytes: other pixels (even under the same claimed name) miss the cache
    other = cached_features(extractor, np.zeros_like(images), tmp_path)
    assert not torch.equal(other, real) and len(list(tmp_path.glob("*.pt"))) == 2


# ----------------------------------------------------------------------------- run identity
def test_the_training_code_digest_covers_what_trains_and_only_that(tmp_path):
    copy = tmp_path / "pipeline"
    shutil.copytree(
        os.path.dirname(pipeline.__file__), copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    module = "pipeline.train.driver"
    assert code_digest(module, copy) == code_digest(module)
    closure = source_closure(module)
    for name in ("pipeline.train.worker", "pipeline.methods.step", "pipeline.diffusion.gaussian",
                 "pipeline.models.unet", "pipeline.config"):  # fmt: skip
        assert name in closure
    assert "pipeline.evaluate.run" not in closure and "pipeline.cli" not in closure
    (copy / "evaluate/run.py").write_text((copy / "evaluate/run.py").read_text() + "\n# edit\n")
    assert code_digest(module, copy) == code_digest(module)  # not training code: same run
    step = copy / "methods/step.py"
    step.write_text(step.read_text() + "\n# a changed training loop\n")
    assert code_digest(module, copy) != code_digest(module)  # a new run


# ----------------------------------------------------------------------------- Ray/MLflow
def test_a_remote_cluster_with_a_local_sqlite_store_is_refused_before_connecting(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.255.255.1:6379")
    with pytest.raises(
        ValueError,
        match="RAY_ADDRESS '10.255.255.1:6379' is a remote Ray cluster, but MLflow tracks into sqlite:",
    ):
        init_ray(PARAMS, "sqlite:////tmp/x/mlflow.db")


def train_stage(work, **env):
    """``python -m stages.train`` on ``work``'s inputs, its outputs beside them, with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "stages.train", "--params", str(work / "params.yaml"),
         "--data", str(work / "processed"), "--checkpoints", str(work / "checkpoints"),
         "--models", str(work / "new-models"), "--report", str(work / "reports/new.json"),
         "--history", str(work / "h.csv"), "--samples", str(work / "s.png")],
        cwd=work, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(pipeline_root()), **env},
    )  # fmt: skip


def test_a_bad_ray_address_fails_before_an_mlflow_run_exists(work):
    raw = yaml.safe_load((work / "params.yaml").read_text())
    raw["ray"]["address"] = "bogus:x:y"
    raw["tune"]["enabled"] = False
    raw["train"]["batch_size"] = 8  # 52 training images: valid data, so only the address is bad
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    result = train_stage(work)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "ray.address 'bogus:x:y'" in errors[0], result.stderr
    assert not (work / "mlflow.db").exists() and not (work / "new-models").exists()


@pytest.mark.slow  # a real mlflow server and a real train stage on its own Ray cluster
def test_a_tracking_password_reaches_no_log(work):
    """Issue 47, class 1: with MLFLOW_TRACKING_URI=http://user:PASSWORD@host, the train stage
    writes the password nowhere: not to the terminal, logs/train.log (mode 0600) or the logs of
    its Ray cluster (under a private temp dir, mode 0700); MLflow's "View run ... at: <URI>" line
    was the leak."""
    import urllib.request

    from pipeline.cluster import private_ray_dir
    from tests.loopback import free_port, start, stop, wait_for

    port, secret = free_port(), os.urandom(8).hex()
    server = start([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                    str(port), "--backend-store-uri", f"sqlite:///{work / 'server.db'}",
                    "--workers", "1"], work / "server.log", dict(os.environ))  # fmt: skip

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    raw = yaml.safe_load((work / "params.yaml").read_text())
    raw["tune"]["enabled"] = False
    raw["train"] |= {"steps": 4, "batch_size": 8, "checkpoint_every": 4, "sample_every": 0,
                     "sample_count": 4, "sample_steps": 2}  # fmt: skip
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    started = time.time()
    try:
        wait_for(ready, "mlflow server", 120, server)
        uri = f"http://user:{secret}@127.0.0.1:{port}"
        result = train_stage(work, RAY_ADDRESS="", MLFLOW_TRACKING_URI=uri)
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    log = work / "logs/train.log"
    assert "user:***@127.0.0.1" in log.read_text() or "View run" not in log.read_text()
    assert secret not in result.stdout + result.stderr + log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    ray_dir = private_ray_dir()
    assert stat.S_IMODE(ray_dir.stat().st_mode) == 0o700
    session_logs = [p for p in ray_dir.rglob("*") if p.is_file() and not p.is_symlink()
                    and p.stat().st_mtime >= started]  # fmt: skip
    assert any(p.suffix in (".out", ".err", ".log") for p in session_logs)  # this run's logs
    leaked = [p for p in session_logs if secret.encode() in p.read_bytes()]
    assert not leaked, leaked


# ------------------------------------------------------------------------ folder source
def test_folder_images_keep_their_tones_and_transparency_is_white(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(folder / "wide.png")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:4, :, 3] = 255  # top half opaque black, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(outside)
    (folder / "link.png").symlink_to(outside)
    (folder / "inside.png").symlink_to(folder / "wide.png")
    files = [p.name for p in list_images(folder)]
    assert files == ["alpha.png", "inside.png", "wide.png"]
    assert any("link.png" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    examples = {e.origin: e.image for e in Folder().examples(folder)}
    assert examples["wide.png"].dtype == np.uint8 and (examples["wide.png"] == 128).all()
    alpha = examples["alpha.png"]  # (8, 8, 3)
    assert (alpha[:4] == 0).all() and (alpha[4:] == 255).all()


# ------------------------------------------------------------------------------ file output
def test_a_failed_write_leaves_no_folder_it_made(tmp_path):
    """Issue 47: a write that failed (a full disk) left the subfolders made for it behind, empty;
    folders that existed before, or that another file landed in meanwhile, stay."""
    target = tmp_path / "out/sub/deeper/a.png"
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{target}'")):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            (tmp_path / "out/sub/other.png").write_bytes(b"another writer's")
            raise OSError(28, "No space left on device")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["other.png", "out", "sub"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.png"]


def test_atomic_dir_keeps_the_old_version_when_the_swap_fails(tmp_path, monkeypatch):
    target = tmp_path / "models"
    target.mkdir()
    (target / "ema.pt").write_text("old")
    real_replace = os.replace

    def failing(src, dst):
        if os.fspath(dst) == os.fspath(target) and ".old-" not in os.fspath(src):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "ema.pt").write_text("new")
    monkeypatch.undo()
    assert (target / "ema.pt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{target}'")):
        with atomic_dir(target) as tmp:  # a write inside the block that found the disk full
            raise OSError(28, "No space left on device")
    with atomic_dir(target) as tmp:
        (tmp / "ema.pt").write_text("new")
    assert (target / "ema.pt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_atomic_path_files_get_the_usual_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_a_local_disk_error_fails_the_download_at_once_naming_the_path(http_server, tmp_path):
    (http_server.root / "f.bin").write_bytes(b"x" * 100)
    cache = tmp_path / "cache"
    (cache / "f.bin.part").mkdir(parents=True)  # EISDIR when the download opens it
    remote = RemoteFile("f.bin", (f"{http_server.url}/f.bin", f"{http_server.url}/f.bin"), "md5:0")
    with pytest.raises(DownloadError, match=f"cannot write {cache / 'f.bin.part'}: Is a directory"):
        fetch(remote, cache, retries=3, backoff_s=5.0, progress=False)
    assert len(http_server.requests) == 1  # no retry, no second mirror


def test_tune_state_is_restored_only_for_the_same_sweep_identity(tmp_path, caplog):
    from pipeline.tune.sweep import IDENTITY_FILE, restorable

    identity = {"tune": {"steps": 2}, "code_sha256": "a" * 64}
    (tmp_path / "tuner.pkl").write_bytes(b"not unpickled by this check")
    assert not restorable(tmp_path, identity)  # no identity recorded: never unpickled
    (tmp_path / IDENTITY_FILE).write_text(json.dumps({**identity, "code_sha256": "b" * 64}))
    assert not restorable(tmp_path, identity)  # another sweep's state
    assert any(str(tmp_path) in r.getMessage() for r in caplog.records)
    (tmp_path / IDENTITY_FILE).write_text(json.dumps(identity))
    assert restorable(tmp_path, identity)
    assert not restorable(tmp_path / "missing", identity)


@pytest.mark.parametrize(
    "pipeline, stage, script",
    [
        ("dvc.yaml", "featurenet", "featurenet"),
        ("dvc.yaml", "tune", "tune"),
        ("dvc.yaml", "train", "train"),
        ("dvc.yaml", "evaluate", "evaluate"),
        ("colorize/dvc.yaml", "train", "train"),
        ("colorize/dvc.yaml", "baseline", "train"),
        ("colorize/dvc.yaml", "evaluate", "evaluate"),
        ("colorize/shipped/dvc.yaml", "train", "train"),
        ("colorize/shipped/dvc.yaml", "guide", "train"),
        ("colorize/shipped/dvc.yaml", "evaluate", "evaluate"),
        ("colorize/shipped/dvc.yaml", "ship", "ship"),
        ("stylize/dvc.yaml", "stylize", "stylize"),
        ("stylize/dvc.yaml", "tune", "stylize_tune"),
    ],
)
def test_dvc_deps_cover_the_code_each_result_comes_from(pipeline, stage, script):
    """Each pipeline lists, for each stage whose result comes from trained or measured code, every
    source file the stage script imports, transitively, and every model family's module (the
    registry imports them by name): DVC re-runs the stage whenever that code changes."""
    stages = yaml.safe_load((ROOT / pipeline).read_text())["stages"]
    deps = stages[stage]["deps"]
    modules = {
        n
        for n in imports_of(ROOT / "stages" / f"{script}.py", f"stages.{script}")
        if n.startswith("pipeline")
    }
    if script in ("tune", "train", "evaluate"):
        modules |= {method_module(family) for family in FAMILIES}
    files = {
        str(path.relative_to(ROOT))
        for module in modules
        for path in source_closure(module).values()
    }
    uncovered = sorted(f for f in files if not any(f == d or f.startswith(d + "/") for d in deps))
    assert not uncovered, f"{pipeline} stage {stage} lacks deps {uncovered}"


# ------------------------------------------------------------------------ a busy store
HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def locked_for(db, seconds):
    """Another process holding ``db``'s write lock for ``seconds`` (as a long `mlflow ui` query or a
    second pipeline's write does); returns once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow  # waits on locks or runs the commands: out of make test-fast
def test_a_busy_sqlite_store_delays_a_write_instead_of_failing_it(tmp_path, monkeypatch, caplog):
    """Issue 47, class 4: another process holding mlflow.db's lock for longer than SQLite's 5 s
    made a metric write fail ('database is locked'), which stopped a training. Now the write waits
    (pipeline.tracking.patient_sqlite) and lands; a store locked past BUSY_TIMEOUT_S is reported as
    busy, not as a damaged file to move aside."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from pipeline import tracking

    monkeypatch.setattr(tracking, "BUSY_NOTICE_S", 2)
    db = tmp_path / "mlflow.db"
    client = tracking.connect(f"sqlite:///{db}")
    run_id = client.create_run(client.create_experiment("busy")).info.run_id
    holder = locked_for(db, 8)
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="pipeline"):
        client.log_batch(run_id, metrics=[Metric("loss", 0.5, 0, 1)])
    waited = time.monotonic() - start
    holder.wait(timeout=30)
    assert waited > 6  # it waited for the lock (SQLite alone gives up after 5 s)
    assert [
        m.value for m in MlflowClient(f"sqlite:///{db}").get_metric_history(run_id, "loss")
    ] == [0.5]
    notices = [r.getMessage() for r in caplog.records if "waiting for the MLflow" in r.message]
    assert notices == [
        f"{db}: waiting for the MLflow database, which another process holds locked (up to "
        f"{tracking.BUSY_TIMEOUT_S} s)"
    ]  # said once per wait

    # a training's metrics are buffered: logging them does not wait for the lock, flush does
    buffered = tracking.BufferedMetrics(client, run_id)
    holder = locked_for(db, 6)
    start = time.monotonic()
    for step in range(2, 12):
        buffered.log([Metric("loss", 1 / step, 0, step)])
    logged_in = time.monotonic() - start
    buffered.flush()
    flushed_in = time.monotonic() - start
    holder.wait(timeout=30)
    assert logged_in < 2 < flushed_in
    history = MlflowClient(f"sqlite:///{db}").get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 12))
    buffered.log([Metric("loss", 0.1, 0, 1)])
    buffered.run_id = "0" * 32  # a run the store does not have: the failure surfaces at flush
    buffered.log([Metric("loss", 0.1, 0, 1)])
    with pytest.raises(ConnectionError, match="the run's metrics were not all recorded"):
        buffered.flush()

    other = tmp_path / "other.db"
    tracking.connect(f"sqlite:///{other}")  # creates the store
    holder = locked_for(other, 15)
    script = (
        "import sys\nfrom pipeline import tracking\ntracking.BUSY_TIMEOUT_S = 1\n"
        "tracking.connect(sys.argv[1])\n"
    )  # a new process: MLflow opens the store afresh, and writes to it
    try:
        result = subprocess.run([sys.executable, "-c", script, f"sqlite:///{other}"],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(pipeline_root())})  # fmt: skip
    finally:
        holder.wait(timeout=30)
    assert result.returncode != 0
    assert (
        f"{other}: the MLflow database stayed locked by another process for 1 s (busy, not "
        "damaged); re-run when that process is done" in result.stderr
    ), result.stderr

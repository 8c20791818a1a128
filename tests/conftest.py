import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.cluster import local_cluster_env

ROOT = Path(__file__).resolve().parent.parent

# Every Ray cluster the tests start runs on this machine, as the pipeline's own local one does: the
# same settings (the tests' subprocesses and the clusters they start inherit them)
local_cluster_env()


@pytest.fixture
def run_python():
    """Run ``python <args>`` in a directory; return the CompletedProcess (text, both streams)."""

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300
        )

    return run


@pytest.fixture
def run_pipeline(capsys, monkeypatch):
    """``python -m pipeline <args>`` in this process: the same result as ``run_python`` (exit
    status, stdout, stderr with the log lines a user sees) without an interpreter's start-up, for
    the many command checks of the fast tier. What needs a process of its own (sys.exit's status,
    signals, a fresh interpreter) keeps ``run_python``."""
    import io
    import logging

    from pipeline.apps import main
    from pipeline.console import FORMAT

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()  # what earlier steps printed is not this command's
        logs = io.StringIO()
        handler = logging.StreamHandler(logs)
        handler.setFormatter(logging.Formatter(FORMAT))
        root = logging.getLogger()
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's bad option
            status = exc.code
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["python", "-m", "pipeline", *args], status, out,
                                           err + logs.getvalue())  # fmt: skip

    return run


def project_files() -> list[str]:
    """The files a fresh clone has: tracked plus untracked-but-not-ignored, minus DVC's locks."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [f for f in out if not f.endswith("dvc.lock") and (ROOT / f).is_file()]


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch):
    """A temporary git + DVC repository holding a copy of this project (no outputs, no lock).

    Returns a ``run(*args)`` helper that runs a command there and fails the test on a non-zero exit.
    """
    import shutil

    repo = tmp_path / "project"
    for f in project_files():
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, repo / f)
    env = {
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "DVC_NO_ANALYTICS": "1",
        # Stage commands call `python`: make it this interpreter (the project's venv).
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
        result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=1200)
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "project copy")
    run.repo = repo
    return run


@pytest.fixture
def http_server(tmp_path):
    """A LocalServer (tests/data_fixtures.py) over tmp_path/'www'."""
    from tests.data_fixtures import LocalServer

    root = tmp_path / "www"
    root.mkdir()
    server = LocalServer(root)
    yield server
    server.close()


def assert_same_tensors(a: dict, b: dict) -> None:
    """Two flat state dicts hold the same keys and bit-identical tensors (a failure names the key)."""
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs, started once and shared by every test that trains or samples
    in this process; yields its GCS address. With the dashboard: Ray Train's placement-group
    cleanup queries its state API."""
    import ray

    if not ray.is_initialized():  # a stage run in-process before may have connected already
        ray.init(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def processed_data(tmp_path_factory):
    """A factory: the processed data of a DataConfig, downloaded and preprocessed once a session
    per config (tests read it, never change it)."""
    from pipeline.config import DownloadConfig
    from pipeline.data import download_source, preprocess

    built = {}

    def build(data):
        if data not in built:
            root = tmp_path_factory.mktemp("data")
            download_source(data, DownloadConfig(cache_dir=str(root / "cache")), root / "raw")
            preprocess(data, root / "raw", root / "processed", progress=False)
            built[data] = root / "processed"
        return built[data]

    return build


@pytest.fixture(scope="module")
def processed(processed_data):
    """The tiny training data (tests.factories.TINY's: 64 images of the default source)."""
    from tests.factories import TINY

    return processed_data(TINY.data)


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A module's monkeypatch, with no MLFLOW_TRACKING_URI: runs track into the test's folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield mp

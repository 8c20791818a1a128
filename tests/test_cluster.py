"""Where workers on other nodes find their inputs (pipeline.cluster), without a cluster: the shared
directory's copies, their checks, the settings that are refused before connecting, and (in a
subprocess) what a local cluster listens on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.cluster import (
    LOCAL_CLUSTER_ENV,
    SHARED_DIR_ENV,
    checkpoints_for_workers,
    for_workers,
    init_ray,
    local_cluster_env,
    shared_dir,
    tree_digest,
)
from pipeline.config import ConfigError, Params, from_dict
from tests.conftest import ROOT


def inputs(tmp_path):
    source = tmp_path / "project/data/processed"
    (source / "sub").mkdir(parents=True)
    (source / "manifest.json").write_text('{"a": 1}')
    (source / "sub/images.npy").write_bytes(bytes(range(256)) * 4)
    return source


def with_shared(tmp_path) -> Params:
    return from_dict(Params, {"ray": {"shared_dir": str(tmp_path / "shared")}})


def test_without_a_shared_dir_workers_read_the_paths_themselves(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_DIR_ENV, raising=False)
    source = inputs(tmp_path)
    assert shared_dir(Params()) is None
    assert for_workers(Params(), source) == source
    assert checkpoints_for_workers(Params(), tmp_path / "ckpt") == tmp_path / "ckpt"


def test_inputs_are_copied_once_by_content_and_checked_on_reuse(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_DIR_ENV, raising=False)
    source, params = inputs(tmp_path), with_shared(tmp_path)
    copy = for_workers(params, source)
    assert copy == tmp_path / f"shared/inputs/processed-{tree_digest(source)[:16]}"
    assert tree_digest(copy) == tree_digest(source)
    assert (copy / "sub/images.npy").read_bytes() == (source / "sub/images.npy").read_bytes()
    made = (copy / "manifest.json").stat().st_mtime_ns
    assert for_workers(params, source) == copy  # reused, not copied again
    assert (copy / "manifest.json").stat().st_mtime_ns == made
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no partial copy left

    (source / "manifest.json").write_text('{"a": 2}')  # new content: a copy of its own
    assert for_workers(params, source) not in (copy, source)

    (copy / "sub/images.npy").write_bytes(b"corrupt")  # the shared copy went bad
    (source / "manifest.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match=f"the shared copy {copy} of {source} differs from it"):
        for_workers(params, source)
    assert checkpoints_for_workers(params, tmp_path / "ckpt") == tmp_path / "shared/checkpoints"


def test_the_environment_overrides_the_params_and_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path / "env"))
    assert shared_dir(with_shared(tmp_path)) == tmp_path / "env"
    monkeypatch.setenv(SHARED_DIR_ENV, "relative/dir")
    with pytest.raises(ValueError, match="PIPELINE_SHARED_DIR must be an absolute path"):
        shared_dir(Params())


@pytest.mark.parametrize(
    "ray, message",
    [
        ({"shared_dir": "shared"}, "ray: shared_dir must be an absolute path that every node"),
        (
            {"shared_dir": "s3://bucket/x"},
            "ray: shared_dir must be an absolute path .* got 's3://bucket/x'",
        ),
        ({"address": "ray://head:10001"}, "Ray Client \\(ray://\\) does not support Ray Train"),
    ],
)
def test_bad_cluster_settings_fail_with_one_line(ray, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Params, {"ray": ray})


def test_a_ray_client_address_in_the_environment_is_refused_before_connecting(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    with pytest.raises(ValueError, match="RAY_ADDRESS 'ray://head:10001': Ray Client"):
        init_ray(Params(), "http://tracking:5000")


def test_a_local_cluster_runs_without_the_preemption_watcher_unless_the_user_set_it(monkeypatch):
    for key in LOCAL_CLUSTER_ENV:
        monkeypatch.delenv(key, raising=False)
    local_cluster_env()
    assert {key: os.environ[key] for key in LOCAL_CLUSTER_ENV} == {
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        "RAY_enable_metrics_collection": "0",
    }
    monkeypatch.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "1")
    local_cluster_env()
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "1"


LISTENERS = """
import json, socket, sys, urllib.request
import psutil, ray
from pipeline.cluster import init_ray
from pipeline.config import Params
init_ray(Params())
me = psutil.Process()
pids = {me.pid} | {child.pid for child in me.children(recursive=True)}
ports = {c.laddr.port for c in psutil.net_connections("inet")
         if c.status == psutil.CONN_LISTEN and c.pid in pids}
ip = ray.nodes()[0]["NodeManagerAddress"]  # the machine's address other machines reach
answering = []
for port in sorted(ports):
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=3) as response:
            answering.append([port, response.status, response.read(200).decode(errors="replace")])
    except Exception:  # refused, 401 without the token, or not HTTP (gRPC)
        pass
print(json.dumps({"ip": ip, "ports": len(ports), "answering": answering,
                  "exporter": [node["MetricsExportPort"] for node in ray.nodes()]}))
ray.shutdown()
"""


@pytest.mark.slow  # starts its own local cluster
def test_a_local_cluster_has_no_per_node_metrics_exporter(tmp_path):
    """Issue 47: Ray's per-node Prometheus exporter answered without the token on every
    interface of the machine. A stage's own cluster runs without it; what still answers from
    the machine's address is the dashboard's and the autoscaler's own request counters, which
    Ray binds with the node (docs/reliability.md)."""
    from ray.autoscaler._private.constants import AUTOSCALER_METRIC_PORT
    from ray.dashboard.consts import DASHBOARD_METRIC_PORT

    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_enable_metrics_collection", None)
    result = subprocess.run([sys.executable, "-c", LISTENERS], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["ports"] >= 5 and found["exporter"] == [-1]  # -1: no exporter on the node
    assert {port for port, _, _ in found["answering"]} <= {
        AUTOSCALER_METRIC_PORT,
        DASHBOARD_METRIC_PORT,
    }, found["answering"]

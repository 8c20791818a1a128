"""Where workers on other nodes find their inputs (pipeline.cluster), without a cluster: the shared
directory's copies, their checks, and the settings that are refused before connecting."""

from __future__ import annotations

import os

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
    (key,) = LOCAL_CLUSTER_ENV
    monkeypatch.delenv(key, raising=False)
    local_cluster_env()
    assert os.environ[key] == "0"
    monkeypatch.setenv(key, "1")
    local_cluster_env()
    assert os.environ[key] == "1"

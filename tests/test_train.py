"""Training on real Ray Train workers (local cluster, 2 CPU workers) on the real default data."""

import dataclasses
import json

import pytest
import ray
import torch

from pipeline.build import build_unet
from pipeline.config import DataConfig, DownloadConfig, ModelConfig, Params, TrainConfig, from_dict
from pipeline.data import download_source, preprocess
from pipeline.train.driver import export_model, fit, run_name


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data = DataConfig(limit=64)
    download_source(data, DownloadConfig(cache_dir=str(root / "cache")), root / "raw")
    preprocess(data, root / "raw", root / "processed", progress=False)
    return root / "processed"


TINY = Params(
    data=DataConfig(limit=64),
    model=ModelConfig(
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        mid_attention=False,
        num_heads=1,
    ),
    train=TrainConfig(
        steps=4,
        batch_size=8,
        num_workers=2,
        lr=1e-3,
        warmup_steps=2,
        checkpoint_every=2,
        log_every=1,
    ),
)


def test_two_workers_train_checkpoint_and_export_a_loadable_ema_model(
    ray_cluster, processed, tmp_path
):
    result = fit(TINY, processed, tmp_path / "checkpoints")
    assert result.error is None
    assert result.metrics["step"] == 4 and torch.isfinite(torch.tensor(result.metrics["loss"]))
    assert result.metrics["images_per_s"] > 0
    out = export_model(result, TINY, tmp_path / "models")
    config = json.loads((out / "config.json").read_text())
    assert config["step"] == 4 and from_dict(Params, config["params"]) == TINY
    net = build_unet(TINY)
    net.load_state_dict(torch.load(out / "ema.pt", weights_only=True))
    x = torch.randn(2, 1, 28, 28)
    assert torch.isfinite(net(x, torch.tensor([1, 500]))).all()
    assert (
        net(x, torch.tensor([1, 500])).abs().max() > 0
    )  # trained away from the zero-initialised output


def test_run_name_changes_with_params_and_data(processed):
    other = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, lr=2e-3))
    assert run_name(TINY, processed) == run_name(TINY, processed)
    assert run_name(TINY, processed) != run_name(other, processed)


def test_batch_must_split_across_workers():
    with pytest.raises(ValueError, match="batch_size 10 is not divisible by num_workers 4"):
        TrainConfig(batch_size=10, num_workers=4)


def test_too_few_images_for_one_batch_fails_before_ray_starts(processed, tmp_path):
    huge = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, batch_size=1024))
    with pytest.raises(
        ValueError,
        match="train.batch_size 1024 over 2 workers needs at least 512 training images per worker; the data has 52 in total",
    ):
        fit(huge, processed, tmp_path / "checkpoints")
    assert not (tmp_path / "checkpoints").exists()

"""What several test modules build their runs from: the tiny training params and the train stage
with every output under one folder."""

import dataclasses

from pipeline.config import DataConfig, ModelConfig, Params, TrainConfig
from pipeline.train.driver import train

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
        sample_every=2,
        sample_count=4,
        sample_steps=3,
    ),
)


def with_train(params: Params, **changes) -> Params:
    return dataclasses.replace(params, train=dataclasses.replace(params.train, **changes))


def run_train(tmp_path, params=TINY, processed=None, **kwargs):
    """pipeline.train.driver.train with every output under tmp_path; returns the report."""
    return train(
        params,
        processed_dir=processed,
        checkpoints_dir=tmp_path / "checkpoints",
        models_dir=tmp_path / "models",
        report_path=tmp_path / "reports/train.json",
        history_csv=tmp_path / "reports/plots/train_loss.csv",
        samples_png=tmp_path / "reports/train_samples.png",
        project_dir=tmp_path,
        **kwargs,
    )

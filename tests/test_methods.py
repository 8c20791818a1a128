"""A model family is a plug-in: a throwaway "mean image" family with a params section of its own
(``mean:``), written and registered in this test module as a new family is (its module, one
registry line), is validated with the rest of the params, trains and samples through the real loop
(driver, worker, checkpoints, export, MLflow) on 2 Ray workers, through the sample command and the
evaluate stage, with no edit to the loop, the driver, the export, the evaluation or the config.
Plus the registry's error, and a throwaway sampler."""

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import ray
import ray.cloudpickle
import torch
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image
from torch import nn

from pipeline.config import (
    ConfigError,
    DownloadConfig,
    EvalConfig,
    FeatureNetConfig,
    ModelConfig,
    Params,
    from_dict,
    load_params,
    section,
    to_dict,
)
from pipeline.data.dataset import ProcessedImages
from pipeline.diffusion.samplers import SAMPLERS, Sampler, StepOutput
from pipeline.evaluate.featurenet import save_featurenet, train_featurenet
from pipeline.methods.base import GenerativeModel, Method, Signature, TensorSpec
from pipeline.methods.export import load_model
from pipeline.methods.step import optimizer_step
from pipeline.registry import FAMILIES, Family
from pipeline.train.driver import run_name
from tests.factories import TINY, run_evaluate, run_train, with_train


@dataclass(frozen=True)
class MeanConfig:
    """params ``mean:``, the family's own section: the gray level the mean image starts from."""

    start: float = 0.0  # in [-1, 1]

    def __post_init__(self) -> None:
        with section("mean"):
            if not -1 <= self.start <= 1:
                raise ValueError(f"start must be in [-1, 1], got {self.start!r}")

    def check(self, params: Params) -> None:
        """A rule tying the section to another: the mean image is one gray level per channel."""
        if params.data.channels != 1 and self.start != 0:
            raise ConfigError("mean.start colours a gray image: data.channels must be 1")


class MeanNet(nn.Module):
    """One parameter: an image."""

    def __init__(self, shape: tuple[int, int, int], start: float = 0.0) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.full(shape, start))

    def forward(self, n: int) -> torch.Tensor:
        return self.mean.expand(n, *self.mean.shape)


class MeanImageModel(GenerativeModel):
    """Every sample is the learned mean image."""

    def sample_progressive(self, n, *, generator, how=None, cond=None):
        yield self.net(n)

    def predict(self, inputs: Mapping[str, np.ndarray], params=None) -> np.ndarray:
        with torch.no_grad():
            return self.net(int(inputs["n"][0])).numpy()

    def input_example(self) -> dict[str, np.ndarray]:
        return {"n": np.array([1], dtype=np.int64)}

    def signature(self) -> Signature:
        c, h, w = self.params.data.image_shape
        return Signature([TensorSpec("int64", (1,), "n")], [TensorSpec("float32", (-1, c, h, w))])


class MeanImage(Method):
    """Fits the mean training image by minimising the MSE to each batch (Adam)."""

    family = "mean"
    model_class = MeanImageModel

    def __init__(self, params: Params, device: torch.device) -> None:
        super().__init__(params, device)
        self.net = MeanNet(params.data.image_shape, params.mean.start).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=params.train.lr)
        self.scaler = torch.amp.GradScaler(device.type, enabled=False)
        self.wrapped: nn.Module = self.net

    @classmethod
    def build_net(cls, params: Params) -> nn.Module:
        return MeanNet(params.data.image_shape, params.mean.start)

    def prepare(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.wrapped = wrap(self.net)

    def train_step(self, micro_batches: Sequence[torch.Tensor], *, lr: float, step: int) -> dict:
        def loss_terms(net: nn.Module, x0: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": ((net(x0.shape[0]) - x0) ** 2).mean()}

        result = optimizer_step(
            self.wrapped, loss_terms, micro_batches, self.optimizer, self.scaler, lr=lr,
            grad_clip=0.0,
        )  # fmt: skip
        return {**result.terms, "grad_norm": result.grad_norm}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])


def mean_params(**mean) -> Params:
    """The tiny params with the mean family, its section ``mean`` from ``mean``: built as a params
    file is read, so the registry's section is checked with the rest."""
    raw = to_dict(with_train(
        TINY,
        steps=40,
        lr=0.05,
        warmup_steps=0,
        ema_decay=0.0,  # the EMA is the latest weights: the test compares them to the data
        log_every=10,
        checkpoint_every=20,
        sample_every=20,
    ))  # fmt: skip
    raw["model"]["family"] = "mean"
    raw["tune"]["enabled"] = False  # its sections: train and its own
    raw["mlflow"]["registered_model"] = None
    return from_dict(Params, {**raw, "mean": mean})


@pytest.fixture
def mean_family(monkeypatch):
    """The toy family registered for this test (the one line a new family adds to
    pipeline/registry.py); Ray ships its classes to the workers by value."""
    monkeypatch.setitem(FAMILIES, "mean", Family(f"{__name__}:MeanImage", section="mean",
                                                config=f"{__name__}:MeanConfig"))  # fmt: skip
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_new_familys_section_is_read_and_checked_with_the_params(mean_family, tmp_path):
    assert mean_params().mean == MeanConfig() and mean_params(start=0.5).mean.start == 0.5
    assert "mean" in Params().family_sections  # its defaults in every params, as vae's are
    with pytest.raises(ConfigError, match=r"mean: start must be in \[-1, 1\], got 2"):
        mean_params(start=2)
    with pytest.raises(ConfigError, match="unknown key.s. mean.stop; allowed: start"):
        mean_params(stop=0)
    raw = to_dict(mean_params(start=0.5))
    raw["data"]["channels"] = 3
    with pytest.raises(ConfigError, match="mean.start colours a gray image: data.channels"):
        from_dict(Params, raw)
    searched = {
        **to_dict(mean_params()),
        "tune": {"space": {"mean": {"start": {"uniform": [-0.5, 0.5]}}}},
    }
    assert "mean.start" in from_dict(Params, searched).tune.specs  # tune.space may search it
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="mean.start colours a gray image"):
        load_params(path)


def test_a_new_family_trains_samples_and_is_evaluated_through_the_real_loop(
    mean_family,
    ray_cluster,
    processed,
    tmp_path,
    monkeypatch,
    run_pipeline,
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = mean_params(start=0.5)
    report = run_train(tmp_path, params, processed)
    assert report.steps == 40 and report.num_workers == 2 and report.run_name
    assert report.run_name != run_name(mean_params(start=0.25), processed)  # its section: identity
    history = pd.read_csv(tmp_path / "reports/plots/train_loss.csv")
    assert list(history["step"]) == [10, 20, 30, 40]
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(report.mlflow_run_id)
    assert run.data.params["mean.start"] == "0.5"

    model = load_model(tmp_path / "models")  # the export, rebuilt through the registry
    assert isinstance(model, MeanImageModel) and model.params.model.family == "mean"
    assert model.params.mean.start == 0.5
    target = ProcessedImages(processed, "train").images.astype(np.float32).mean(0) / 127.5 - 1
    learned = model.net.mean.detach().numpy()
    start_error = np.abs(target - 0.5).mean()  # the gray image the family starts from (mean.start)
    assert np.abs(learned - target).mean() < 0.25 * start_error
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, *params.data.image_shape)
    torch.testing.assert_close(samples[2], torch.from_numpy(learned).clamp(-1, 1))
    assert (tmp_path / "reports/train_samples.png").read_bytes().startswith(b"\x89PNG")
    out = tmp_path / "drawn.png"  # the sample command, as a user runs it
    result = run_pipeline("sample", "--model", tmp_path / "models", "--count", "2", "--each",
                          "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    drawn = np.array(Image.open(tmp_path / "drawn" / sorted(os.listdir(tmp_path / "drawn"))[0]))
    expected = np.round((np.clip(learned[0], -1, 1) + 1) * 127.5)
    assert np.abs(drawn.astype(float) - expected).max() <= 1

    # the evaluate stage: its samples drawn by Ray tasks on the session's cluster (the model
    # travels to them through the object store, the family's classes by value: no worker needs
    # it registered), scored against the test split and logged to the training run
    featurenet = FeatureNetConfig(epochs=1, width=8, feature_dim=16)
    net, result = train_featurenet(processed, featurenet, False)
    save_featurenet(net, featurenet, result, tmp_path / "featurenet")
    scored = dataclasses.replace(
        params,
        eval=EvalConfig(num_samples=12, batch_size=4, grid_count=4, kid_subset_size=6),
        download=DownloadConfig(cache_dir=str(tmp_path / "cache")),
    )
    metrics = run_evaluate(tmp_path, scored, processed, tmp_path / "featurenet")
    assert metrics["family"] == "mean" and metrics["num_samples"] == 12
    assert math.isfinite(metrics["fid_featurenet"]) and metrics["fid_featurenet"] > 0
    grid = np.array(Image.open(tmp_path / "reports/samples.png"))  # 2 x 2 copies of the mean
    tile = grid[2:30, 2:30]
    assert np.abs(tile.astype(float) - expected).max() <= 1
    np.testing.assert_array_equal(grid[2:30, 32:60], tile)
    logged = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(report.mlflow_run_id)
    assert logged.data.metrics["fid_featurenet"] == pytest.approx(metrics["fid_featurenet"])


def test_an_unknown_family_is_refused_with_the_registered_names():
    raw = to_dict(Params())
    raw["model"]["family"] = "diffusion"
    with pytest.raises(
        ConfigError, match="model: family: unknown value 'diffusion'; allowed: ddpm"
    ):
        from_dict(Params, raw)
    assert ModelConfig().family == "ddpm"


class Renoise(Sampler):
    """A throwaway sampler, written as a new one would be (a class and its name): each step jumps
    to the x_0 estimate and noises it afresh to the next timestep, x = sqrt(a') x0 + sqrt(1 - a')
    z, a' = alpha_bar there (1 at the end)."""

    calls: list[int] = []

    def step(self, model_output, i, x_t, noise):
        t = torch.full((x_t.shape[0],), int(self.timesteps[i]), device=x_t.device)
        pred_x0, _ = self.process.denoised(model_output, t, x_t, None)
        t_prev = self.t_prev(i)
        a = float(self.process.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
        Renoise.calls.append(int(self.timesteps[i]))
        return StepOutput(math.sqrt(a) * pred_x0 + math.sqrt(1 - a) * noise, pred_x0)


def test_a_new_sampler_is_a_class_and_a_name_and_every_sampling_path_takes_it(
    run_pipeline, monkeypatch, tmp_path
):
    """Issue 44: registered in SAMPLERS (the one line a new sampler adds), the throwaway sampler
    is an eval.sampler value, a choice of `python -m pipeline sample --sampler`, and it draws."""
    from tests.test_colorize import export

    monkeypatch.setitem(SAMPLERS, "renoise", Renoise)
    raw = to_dict(Params())
    raw["eval"]["sampler"] = "renoise"
    assert from_dict(Params, raw).eval.sampler == "renoise"
    raw["eval"]["sampler"] = "euler"
    with pytest.raises(ConfigError, match="eval: sampler: unknown value 'euler'; allowed: ddpm"):
        from_dict(Params, raw)
    model = export(tmp_path, "ddpm")
    outputs = {}
    for sampler in ("ddim", "renoise"):
        Renoise.calls.clear()
        out = tmp_path / f"{sampler}.png"
        result = run_pipeline("sample", "--model", model, "--count", "2", "--steps", "5",
                              "--sampler", sampler, "--out", out)  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[sampler] = out.read_bytes()
        assert len(Renoise.calls) == (5 if sampler == "renoise" else 0)
    assert outputs["ddim"] != outputs["renoise"]

"""A model family is a plug-in: a throwaway "mean image" family, registered from this test module,
trains and samples through the real loop (driver, worker, checkpoints, export, MLflow) on 2 Ray
workers with no edit to the loop, the driver or the export. Plus the registry's error."""

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pytest
import ray
import ray.cloudpickle
import torch
from torch import nn

from pipeline.config import ConfigError, MlflowConfig, ModelConfig, Params, from_dict, to_dict
from pipeline.data.dataset import ProcessedImages
from pipeline.diffusion.samplers import SAMPLERS, Sampler, StepOutput
from pipeline.methods.base import GenerativeModel, Method, Signature, TensorSpec
from pipeline.methods.export import load_model
from pipeline.methods.step import optimizer_step
from pipeline.registry import METHODS, Family
from tests.factories import TINY, run_train, with_train


class MeanNet(nn.Module):
    """One parameter: an image."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(shape))

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
        self.net = MeanNet(params.data.image_shape).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=params.train.lr)
        self.scaler = torch.amp.GradScaler(device.type, enabled=False)
        self.wrapped: nn.Module = self.net

    @classmethod
    def build_net(cls, params: Params) -> nn.Module:
        return MeanNet(params.data.image_shape)

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


def mean_params() -> Params:
    params = with_train(
        TINY,
        steps=40,
        lr=0.05,
        warmup_steps=0,
        ema_decay=0.0,  # the EMA is the latest weights: the test compares them to the data
        log_every=10,
        checkpoint_every=20,
        sample_every=20,
    )
    return dataclasses.replace(
        params,
        model=dataclasses.replace(params.model, family="mean"),
        tune=dataclasses.replace(params.tune, enabled=False),  # its sections: train only
        mlflow=MlflowConfig(registered_model=None),
    )


@pytest.fixture
def mean_family(monkeypatch):
    """The toy family registered for this test; Ray ships its classes to the workers by value."""
    monkeypatch.setitem(METHODS, "mean", Family(f"{__name__}:MeanImage"))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_new_family_trains_and_samples_through_the_real_loop(
    mean_family,
    ray_cluster,
    processed,
    tmp_path,
    monkeypatch,
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = mean_params()
    report = run_train(tmp_path, params, processed)
    assert report.steps == 40 and report.num_workers == 2 and report.run_name
    history = pd.read_csv(tmp_path / "reports/plots/train_loss.csv")
    assert list(history["step"]) == [10, 20, 30, 40]
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]

    model = load_model(tmp_path / "models")  # the export, rebuilt through the registry
    assert isinstance(model, MeanImageModel) and model.params.model.family == "mean"
    target = ProcessedImages(processed, "train").images.astype(np.float32).mean(0) / 127.5 - 1
    learned = model.net.mean.detach().numpy()
    start_error = np.abs(target).mean()  # the zero image the family starts from
    assert np.abs(learned - target).mean() < 0.25 * start_error
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, *params.data.image_shape)
    torch.testing.assert_close(samples[2], torch.from_numpy(learned).clamp(-1, 1))
    assert (tmp_path / "reports/train_samples.png").read_bytes().startswith(b"\x89PNG")


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

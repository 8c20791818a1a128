"""The VAE, DCGAN and class-conditional DDPM with classifier-free guidance: their losses against
closed forms, guidance, bit-exact resume; then, on a real 2-worker Ray cluster with real MLflow,
each learns two shapes through the shared loop, and the sample command, the evaluate stage and the
comparison report work on what they trained."""

import copy
import dataclasses
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from torch.distributions import Normal, kl_divergence

from pipeline.apps import main as cli
from pipeline.config import ConfigError, DownloadConfig, FeatureNetConfig, Params, from_dict
from pipeline.config.keys import nest
from pipeline.data import download_source, preprocess
from pipeline.evaluate.featurenet import save_featurenet, train_featurenet
from pipeline.evaluate.figures import slerp
from pipeline.evaluate.run import evaluate
from pipeline.methods.base import Sampling
from pipeline.methods.export import load_model
from pipeline.methods.gan import DCGAN, discriminator_loss, generator_loss, pairwise_distance
from pipeline.methods.guided import Guided
from pipeline.methods.vae import kl_divergence as vae_kl
from pipeline.methods.vae import kl_weight, reconstruction_nll
from pipeline.models import UNet
from pipeline.registry import FAMILIES, method_class
from pipeline.registry import family as registry_family
from pipeline.reports.compare import compare_table, write_compare
from pipeline.seeding import derived_seed
from pipeline.train.driver import train
from tests.conftest import assert_same_tensors
from tests.factories import family_tiny, run_evaluate

pytestmark = pytest.mark.slow  # real Ray training runs: `make test-fast` leaves them out

SHAPES = ("a_square", "b_cross")  # class folders: labels 0, 1


def shapes() -> torch.Tensor:
    """A filled square and a cross on black, (2, 1, 28, 28) in [-1, 1]."""
    square = -torch.ones(28, 28)
    square[6:22, 6:22] = 1
    cross = -torch.ones(28, 28)
    cross[12:16, 2:26] = 1
    cross[2:26, 12:16] = 1
    return torch.stack([square, cross])[:, None]


def nearest(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the MSE to the nearer shape, and which shape (0 square, 1 cross)."""
    mse = (samples[:, None] - shapes()[None]).pow(2).flatten(2).mean(2)  # (N, 2)
    return mse.min(1).values, mse.argmin(1)


TINY = {
    "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
              "attention_resolutions": [], "mid_attention": False, "num_heads": 1},
    "diffusion": {"timesteps": 100, "schedule": "cosine", "prediction_type": "v_prediction"},
    **family_tiny(),
    "train": {"batch_size": 8, "num_workers": 2, "warmup_steps": 10, "sample_steps": 10,
              "sample_count": 4, "sample_every": 0, "ema_decay": 0.9},
    "eval": {"steps": 10, "num_samples": 40, "batch_size": 20, "grid_count": 16,
             "trajectory_count": 4, "guided": {"guidance_sweep": [0.0, 3.0]},
             "latent": {"interpolation_pairs": 3}},
    "tune": {"enabled": False, "eval_steps": 10},
    "mlflow": {"registered_model": None},
}  # fmt: skip


def tiny(family: str, folder: str = "/unused", **sections) -> Params:
    raw = copy.deepcopy(TINY)
    raw["model"]["family"] = family
    raw["data"] = {"source": "folder", "folder": folder, "val_fraction": 0.2, "test_fraction": 0.2}
    raw["vae"]["kl_warmup_steps"] = 20
    raw["guidance"]["num_classes"] = 2  # the two shapes
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return from_dict(Params, raw)


# ------------------------------------------------------------------ losses and guidance, no Ray


def test_vae_kl_is_the_closed_form_of_two_gaussians():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    sigma = torch.exp(0.5 * logvar)
    expected = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(vae_kl(mu, logvar), expected)
    # the seed's KL(p || N(0, I)) = 1/2 [mu^T mu + tr(Sigma) - k - log |Sigma|]
    seed = 0.5 * ((mu * mu).sum(1) + sigma.pow(2).sum(1) - 4 - logvar.sum(1))
    torch.testing.assert_close(vae_kl(mu, logvar), seed)
    assert vae_kl(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0.0  # q = prior


def test_vae_reconstruction_is_the_bce_or_squared_error_of_the_pixels():
    torch.manual_seed(0)
    logits, x = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4) * 2 - 1
    p, target = torch.sigmoid(logits), (x + 1) / 2
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll(logits, x, "bce"), bce)
    squared = ((2 * p - 1) - x).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll(logits, x, "mse"), squared)


def test_the_kl_weight_warms_up_linearly_to_beta():
    config = tiny("vae", vae={"beta": 2.0, "kl_warmup_steps": 4}).vae
    assert [kl_weight(config, s) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert kl_weight(tiny("vae", vae={"kl_warmup_steps": 0}).vae, 0) == 1.0


def test_gan_losses_are_the_non_saturating_binary_cross_entropies():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.0, 1.0])
    sig = torch.sigmoid
    expected_d = (-sig(real).log() - (1 - sig(fake)).log()).mean()
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(generator_loss(fake), (-sig(fake).log()).mean())


def test_mode_collapse_is_flagged_when_the_samples_stop_varying():
    params = tiny("dcgan")
    same = torch.zeros(4, 1, 2, 2)
    assert pairwise_distance(same).item() == 0.0
    assert (
        pairwise_distance(torch.tensor([[[[1.0]]], [[[-1.0]]]])).item() == 2.0
    )  # |1 - (-1)| / sqrt(1)
    healthy = [{"step": 10, "spread_fake": 0.4, "spread_real": 0.5}]
    collapsed = healthy + [{"step": 20, "spread_fake": 0.05, "spread_real": 0.5}]
    assert DCGAN.warnings(params, healthy) == []
    (line,) = DCGAN.warnings(params, collapsed)
    assert "mode collapse suspected: at step 20" in line and "0.10x" in line


def test_guidance_zero_is_the_conditional_model_and_w_mixes_the_outputs():
    torch.manual_seed(0)
    config = tiny("ddpm_cfg").model
    net = UNet(config, image_size=8, in_channels=1, num_classes=2, learned_variance=True)
    for p in net.parameters():  # leave the zero-initialised layers' starting point
        p.data.add_(0.05 * torch.randn_like(p))
    x, t, labels = torch.randn(3, 1, 8, 8), torch.tensor([5, 50, 90]), torch.tensor([0, 1, 0])
    cond, uncond = net(x, t, labels), net(x, t, torch.full_like(labels, 2))
    assert torch.equal(Guided(net, 0.0, null=2, channels=1)(x, t, labels), cond)
    guided = Guided(net, 2.0, null=2, channels=1)(x, t, labels)
    torch.testing.assert_close(guided[:, :1], 3 * cond[:, :1] - 2 * uncond[:, :1])
    torch.testing.assert_close(guided[:, 1:], cond[:, 1:])  # the learned variance: conditional


def test_guided_samples_are_their_class_more_often_than_unguided_ones():
    """A tiny class-conditional DDPM after 40 steps on the two shapes (class 0 the square, 1 the
    cross) draws the right shape about half the time unguided; guidance w = 3 makes it most."""
    params = tiny("ddpm_cfg", train={"num_workers": 1, "warmup_steps": 0})
    torch.manual_seed(0)
    method = method_class("ddpm_cfg")(params, torch.device("cpu"))
    method.prepare(lambda net: net)
    x, y = shapes().repeat(8, 1, 1, 1), torch.tensor([0, 1]).repeat(8)
    for step in range(40):
        torch.manual_seed(step)
        method.train_step([[x, y]], lr=3e-3, step=step)
    model = method.model(method.net)
    labels = torch.arange(64) % 2
    accuracy = {}
    for w in (0.0, 3.0):
        generator = torch.Generator().manual_seed(0)
        samples = model.sample(64, generator=generator, how=Sampling(10, guidance=w), cond=labels)
        accuracy[w] = (nearest(samples)[1] == labels).float().mean().item()
    assert accuracy[3.0] >= accuracy[0.0] + 0.2 and accuracy[3.0] > 0.9, accuracy
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 1\], got 0..2"):
        model.sample(2, generator=torch.Generator(), how=Sampling(2), cond=torch.tensor([0, 2]))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_resuming_from_a_state_dict_continues_bit_exactly(family):
    """Every registered family: three steps, save, load into a fresh method, three more: the same
    weights, optimiser and batch-norm state as six uninterrupted steps (every step reseeded as in
    the loop). Its params are the tests' tiny ones (the registry's ``tiny`` for its section)."""
    entry = registry_family(family)
    channels = 3 if entry.needs_rgb else 1
    params = tiny(family, train={"num_workers": 1}, data={"channels": channels})
    x, y = shapes().repeat(4, channels, 1, 1), torch.tensor([0, 1]).repeat(4)
    batch = [x, y] if entry.needs_labels else x

    def fresh():
        torch.manual_seed(0)
        method = method_class(family)(params, torch.device("cpu"))
        method.prepare(lambda net: net)
        return method

    def steps(method, start, stop):
        for step in range(start, stop):
            torch.manual_seed(derived_seed(0, 0, step))
            method.train_step([batch], lr=1e-3, step=step)

    straight = fresh()
    steps(straight, 0, 6)
    first = fresh()
    steps(first, 0, 3)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    resumed = fresh()
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    steps(resumed, 3, 6)
    a, b = straight.state_dict(), resumed.state_dict()
    flat_a, flat_b = _tensors(a), _tensors(b)
    assert len(flat_a) > 10
    assert_same_tensors(flat_a, flat_b)


def _tensors(state, prefix=""):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out |= _tensors(value, f"{prefix}{key}.")
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
    return out


def test_slerp_keeps_the_norm_and_ends_on_both_latents():
    torch.manual_seed(0)
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    b = b * a.norm(dim=1, keepdim=True) / b.norm(dim=1, keepdim=True)  # equal norms
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    for lam in (0.25, 0.5, 0.8):
        torch.testing.assert_close(slerp(a, b, lam).norm(dim=1), a.norm(dim=1))
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(slerp(e1, e2, 0.5), torch.tensor([[0.5**0.5, 0.5**0.5]]))
    assert (e1 + e2).norm() / 2 < 0.71  # the linear midpoint falls inside the sphere


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": {"family": "vae"}, "data": {"image_size": 30}},
         "model.family 'vae' scales the image by 4: data.image_size must be a multiple of 4, got 30"),
        ({"model": {"family": "ddpm_cfg"}, "data": {"source": "photos", "channels": 3}},
         "model.family 'ddpm_cfg' trains on class labels: data.source 'photos' has none"),
        ({"model": {"family": "ddpm_cfg"}, "guidance": {"num_classes": 3}},
         "guidance.num_classes 3 differs from the 10 classes of data.source 'mnist-5k'"),
        ({"guidance": {"p_uncond": 0.0}}, "guidance: p_uncond must be > 0"),
        ({"eval": {"guided": {"guidance_sweep": [0.0, -1.0]}}},
         "eval.guided: guidance_scale and guidance_sweep take"),
        ({"vae": {"reconstruction": "l1"}}, "vae.reconstruction: unknown value 'l1'; allowed: bce, mse"),
        ({"gan": {"width": 12}}, "gan: width must be a positive multiple of 8, got 12"),
        ({"tune": {"space": nest({"guidance.num_classes": {"choice": [2, 3]}})}},
         "unknown or untunable key(s) guidance.num_classes"),
        ({"model": {"family": "vae"}},  # the default search is over diffusion keys
         "tune: space.diffusion.schedule has no effect on model.family 'vae' (its sections: train, vae)"),
        ({"tune": {"space": {"gan": {"beta1": {"choice": [0.5, 0.9]}}}}},
         "tune: space.gan.beta1 has no effect on model.family 'ddpm' (its sections: diffusion, model, train)"),
    ],
)  # fmt: skip
def test_family_params_are_checked_before_any_compute(raw, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Params, raw)
    assert message in str(info.value)


def test_a_search_over_families_may_search_each_familys_keys():
    space = nest({"model.family": {"grid": ["vae", "dcgan"]}, "vae.beta": {"choice": [0.5, 1.0]},
                  "gan.lr_d": {"choice": [1e-4]}})  # fmt: skip
    params = from_dict(Params, {"model": {"family": "vae"}, "tune": {"space": space}})
    assert params.families == ("vae", "dcgan")
    off = from_dict(Params, {"model": {"family": "vae"}, "tune": {"enabled": False}})
    assert off.families == ("vae",)


# ------------------------------------------------------- the real loop: 2 Ray workers, MLflow


@pytest.fixture(scope="module")
def two_shapes(tmp_path_factory):
    """The two shapes, 64 copies each in class folders, preprocessed (labels 0, 1)."""
    root = tmp_path_factory.mktemp("shapes")
    for name, image in zip(SHAPES, shapes(), strict=True):
        (root / "folder" / name).mkdir(parents=True)
        pixels = ((image[0] + 1) * 127.5).round().byte().numpy()
        for i in range(64):
            Image.fromarray(pixels).save(root / "folder" / name / f"{i}.png")
    params = tiny("vae", str(root / "folder"))
    download_source(params.data, params.download, root / "raw")
    preprocess(params.data, root / "raw", root / "processed", progress=False)
    return root


STEPS = {"ddpm_cfg": (300, 3e-3), "vae": (300, 3e-3), "dcgan": (300, 1e-3)}


@pytest.fixture(scope="module")
def project(ray_cluster, two_shapes, tmp_path_factory):
    """Each family trained on the two shapes by the train stage's driver into one MLflow db."""
    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        reports = {}
        for family, (steps, lr) in STEPS.items():
            params = tiny(
                family,
                str(two_shapes / "folder"),
                guidance={"num_classes": None},
                train={
                    "steps": steps,
                    "lr": lr,
                    "log_every": steps // 2,
                    "checkpoint_every": steps,
                },
            )
            out = root / family
            reports[family] = train(
                params,
                processed_dir=two_shapes / "processed",
                checkpoints_dir=out / "checkpoints",
                models_dir=out / "models",
                report_path=out / "reports/train.json",
                history_csv=out / "reports/plots/train_loss.csv",
                samples_png=out / "reports/train_samples.png",
                project_dir=root,  # one MLflow db for all three
                tags={"dvc_stage": "train"},
            )
    return root, reports


def trained(project, family):
    root, reports = project
    return root / family, reports[family]


@pytest.mark.parametrize("family", list(STEPS))
def test_each_family_learns_the_two_shapes_on_two_workers(project, family):
    out, report = trained(project, family)
    assert report.steps == STEPS[family][0] and report.num_workers == 2
    history = pd.read_csv(out / "reports/plots/train_loss.csv")
    model = load_model(out / "models")
    assert model.params.model.family == family
    generator = torch.Generator().manual_seed(0)
    if family == "ddpm_cfg":
        assert model.num_classes == 2  # resolved from the data's classes
        labels = torch.arange(20) % 2
        samples = model.sample(20, generator=generator, how=Sampling(10), cond=labels)
        error, which = nearest(samples)
        assert (which == labels).all() and error.mean() < 0.25, error
    else:
        samples = model.sample(20, generator=generator)
        error, which = nearest(samples)
        untrained = nearest(torch.zeros(1, 1, 28, 28))[0].item()  # a flat gray image: 1.0
        assert error.mean() < 0.4 * untrained, error
    if family == "vae":  # encoder and decoder reproduce both shapes
        mu, _ = model.net.encode(shapes())
        torch.testing.assert_close(model.decode(mu), shapes(), atol=0.6, rtol=0)
        assert (model.decode(mu) - shapes()).pow(2).mean() < 0.05
        assert history["kl"].iloc[-1] > 0 and history["kl_weight"].iloc[-1] == 1.0
    if family == "dcgan":
        assert {"loss_d", "loss_g", "d_real", "d_fake", "spread_fake"} <= set(history.columns)
        assert 0 < history["d_fake"].iloc[-1] < history["d_real"].iloc[-1] < 1
    run = MlflowClient(f"sqlite:///{project[0] / 'mlflow.db'}").get_run(report.mlflow_run_id)
    assert run.data.params["model.family"] == family
    assert run.data.metrics["loss"] == pytest.approx(history["loss"].iloc[-1])


def test_the_sample_command_draws_any_family_reproducibly(project, run_pipeline, tmp_path):
    cfg = trained(project, "ddpm_cfg")[0] / "models"
    done = run_pipeline("sample", "--model", str(cfg), "--count", "6", "--class", "1",
                        "--guidance", "2", "--steps", "8", "--out",
                        str(tmp_path / "cross.png"), "--each")  # fmt: skip
    assert done.returncode == 0, done.stderr
    each = sorted((tmp_path / "cross").glob("*.png"))
    assert len(each) == 6
    for path in each:  # every image drawn for class 1 is the cross
        image = torch.from_numpy(np.array(Image.open(path))).float()[None, None] / 127.5 - 1
        assert nearest(image)[1].item() == 1
    grid = np.array(Image.open(tmp_path / "cross.png"))
    assert grid.shape == (2 + 2 * 30, 2 + 3 * 30)  # 6 images: 2 rows of 3, 28 px + 2 padding
    for family in STEPS:
        models = str(trained(project, family)[0] / "models")
        x, y = tmp_path / f"{family}-x.png", tmp_path / f"{family}-y.png"
        for out in (x, y):
            assert cli(["sample", "--model", models, "--count", "5", "--out", str(out)]) == 0
        assert x.read_bytes() == y.read_bytes()  # same seed
        # the same output again: refused, the file kept; with --overwrite, replaced
        assert (
            cli(["sample", "--model", models, "--count", "5", "--out", str(y), "--seed", "1"]) == 2
        )
        assert y.read_bytes() == x.read_bytes()
    assert cli(["sample", "--model", models, "--count", "5", "--seed", "1",
                "--out", str(y), "--overwrite"]) == 0  # fmt: skip
    assert y.read_bytes() != x.read_bytes()


@pytest.mark.parametrize(
    ("family", "args", "message"),
    [
        ("vae", ["--class", "1"], "--class applies to class-conditional models (ddpm_cfg)"),
        ("dcgan", ["--guidance", "2"], "--guidance applies to class-conditional models"),
        ("ddpm_cfg", ["--class", "2"], "--class must be in [0, 1] (the model's classes), got 2"),
        ("vae", ["--steps", "5"], "--steps applies to diffusion families; 'vae' samples in one"),
        ("ddpm_cfg", ["--steps", "500"], "--steps must be in [1, 100] (diffusion.timesteps)"),
        (None, [], "no trained model in"),
    ],
)
def test_the_sample_command_refuses_what_the_model_cannot_do(
    project, tmp_path, caplog, family, args, message
):
    models = trained(project, family)[0] / "models" if family else tmp_path / "nothing"
    code = cli(
        ["sample", "--model", str(models), "--count", "2", "--out", str(tmp_path / "g.png"), *args]
    )
    assert code == 2 and message in caplog.text
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize(
    ("family", "missing", "message"),
    [
        ("ddpm_cfg", {"featurenet_dir": None}, "whose class accuracy FeatureNet's classifier "
         "measures: pass --featurenet"),
        ("ddpm_cfg", {"figures_dir": None}, "model.family 'ddpm_cfg' draws figures: pass --figures"),
        ("vae", {"figures_dir": None}, "model.family 'vae' draws figures: pass --figures"),
        ("dcgan", {"baseline_dir": "vae"}, "a baseline ("),
    ],
)  # fmt: skip
def test_evaluate_refuses_what_the_family_lacks_before_sampling(
    project, two_shapes, tmp_path, family, missing, message
):
    """Each family's evaluation hook checks its inputs before any compute; nothing is written."""
    root, _ = project
    inputs = {"featurenet_dir": tmp_path / "featurenet", "figures_dir": tmp_path / "figures",
              "baseline_dir": None, **missing}  # fmt: skip
    if inputs["baseline_dir"]:
        inputs["baseline_dir"] = root / inputs["baseline_dir"] / "models"
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate(
            load_model(root / family / "models").params,
            models_dir=root / family / "models",
            processed_dir=two_shapes / "processed",
            train_report=root / family / "reports/train.json",
            metrics_path=tmp_path / "metrics.json",
            grid_png=tmp_path / "samples.png",
            trajectory_gif=tmp_path / "trajectory.gif",
            project_dir=root,
            **inputs,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def evaluated(project, two_shapes):
    """evaluate() of every family with a FeatureNet trained on the two shapes; then the
    comparison report from the MLflow experiment."""
    root, _ = project
    featurenet_dir = root / "featurenet"
    net, result = train_featurenet(
        two_shapes / "processed", FeatureNetConfig(epochs=1, width=8, feature_dim=16), False
    )
    save_featurenet(
        net, FeatureNetConfig(epochs=1, width=8, feature_dim=16), result, featurenet_dir
    )
    metrics = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for family in STEPS:
            out = root / family
            params = dataclasses.replace(
                load_model(out / "models").params, download=DownloadConfig(cache_dir=str(root))
            )
            metrics[family] = run_evaluate(
                out, params, two_shapes / "processed", featurenet_dir, project_dir=root,
                figures_dir=out / "reports/figures",
            )  # fmt: skip
    return root, metrics


def test_evaluate_scores_every_family_and_draws_its_figures(evaluated):
    root, metrics = evaluated
    for family, scores in metrics.items():
        assert scores["family"] == family and scores["fid_featurenet"] >= 0
        assert (root / family / "reports/trajectory.gif").read_bytes().startswith(b"GIF8")
    cfg = metrics["ddpm_cfg"]
    assert (
        cfg["class_accuracy"] == 1.0 and cfg["class_accuracy_0"] == cfg["class_accuracy_1"] == 1.0
    )
    sweep = pd.read_csv(root / "ddpm_cfg/reports/figures/guidance.csv")
    assert list(sweep["guidance_scale"]) == [0.0, 3.0] and (sweep["class_accuracy"] > 0.9).all()
    figures = {p.name for p in (root / "ddpm_cfg/reports/figures").iterdir()}
    assert figures == {"guidance.csv", "guidance.png", "guidance_strip.png"}
    strip = np.array(Image.open(root / "ddpm_cfg/reports/figures/guidance_strip.png"))
    assert strip.shape == (2 + 2 * 30, 2 + 2 * 30)  # rows: w = 0, 3; columns: the two classes
    for family in ("vae", "dcgan"):
        grid = np.array(Image.open(root / family / "reports/figures/interpolation.png"))
        assert grid.shape == (2 + 3 * 30, 2 + 8 * 30)  # 3 pairs x 8 points
        frames = Image.open(root / family / "reports/trajectory.gif")
        assert frames.n_frames == 25
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(
        json.loads((root / "ddpm_cfg/reports/train.json").read_text())["mlflow_run_id"]
    )
    assert run.data.metrics["class_accuracy"] == 1.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/guidance_strip.png" in artifacts and "evaluation/guidance.csv" in artifacts


def test_the_comparison_report_has_one_point_per_evaluated_run(evaluated, tmp_path):
    root, metrics = evaluated
    table = compare_table(MlflowClient(f"sqlite:///{root / 'mlflow.db'}"), "diffusion-pipeline")
    assert sorted(table["family"]) == sorted(STEPS)
    assert list(table["fid"]) == sorted(m["fid_featurenet"] for m in metrics.values())
    for row in table.to_dict("records"):
        train = json.loads((root / row["family"] / "reports/train.json").read_text())
        assert row["compute_s"] == pytest.approx(train["wall_time_s"] * 2, abs=0.1)
        assert row["accelerator"] == "cpu" and row["features"] == "featurenet"
    assert table.loc[table["family"] == "ddpm_cfg", "class_accuracy"].item() == 1.0
    write_compare(table, tmp_path / "compare.csv", tmp_path / "compare.png")
    assert pd.read_csv(tmp_path / "compare.csv")["run_name"].tolist() == table["run_name"].tolist()
    assert (tmp_path / "compare.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="no MLflow experiment 'nope'"):
        compare_table(MlflowClient(f"sqlite:///{root / 'mlflow.db'}"), "nope")

"""The colorization families (pipeline.methods.colorize) without Ray: what they train on, that they
learn, that their outputs keep the condition's lightness, their triptych panel and their config."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.color import split_lab
from pipeline.config import ConfigError, DataConfig, Params, from_dict
from pipeline.methods.base import Sampling
from pipeline.pixels import to_uint8, to_unit
from pipeline.registry import method_class

TINY = {
    "data": {"source": "photos", "image_size": 8, "channels": 3, "fit": "tiles"},
    "model": {"base_channels": 16, "channel_mult": [1, 2], "attention_resolutions": [],
              "mid_attention": False, "num_res_blocks": 1, "num_heads": 1},
    "diffusion": {"schedule": "cosine", "timesteps": 100, "prediction_type": "v_prediction"},
    "train": {"sample_steps": 5, "lr": 2e-3, "warmup_steps": 0},
    "eval": {"steps": 5},
    "tune": {"eval_steps": 5, "enabled": False},
}  # fmt: skip


def params(family):
    return from_dict(Params, {**TINY, "model": {**TINY["model"], "family": family}})


def two_images():
    """A light red image brightening downwards and a dark blue one brightening to the right, in
    [-1, 1]: their lightness tells them apart."""
    ramp = torch.linspace(0.0, 1.0, 8).reshape(1, 8, 1).expand(1, 8, 8)
    red = torch.cat([0.7 + 0.3 * ramp, 0.4 + 0.2 * ramp, 0.3 + 0.2 * ramp])
    blue = torch.cat([0.1 * ramp.mT, 0.1 + 0.1 * ramp.mT, 0.3 + 0.3 * ramp.mT])
    return torch.stack([red, blue]) * 2 - 1


@pytest.mark.parametrize("family", ["ddpm_color", "regression_color", "classify_color"])
def test_a_colorizer_learns_two_images_and_keeps_their_lightness(family):
    torch.manual_seed(0)
    method = method_class(family)(params(family), torch.device("cpu"))
    method.prepare(lambda net: net)
    x = two_images()
    batch = x.repeat(8, 1, 1, 1)
    losses = [float(method.train_step([batch], lr=2e-3, step=i)["loss"]) for i in range(300)]
    assert sum(losses[-10:]) / 10 < 0.25 * sum(losses[:10]) / 10, (losses[:3], losses[-3:])
    model = method.model(method.net)
    condition = model.condition(x)
    out = model.sample(
        2, generator=torch.Generator().manual_seed(1), how=Sampling(20), cond=condition
    )
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(model.condition(out), condition, rtol=0, atol=2e-3)  # L* kept
    _, ab_true = split_lab(x)
    _, ab_out = split_lab(out)
    gray_error = ab_true.pow(2).mean()
    assert (ab_out - ab_true).pow(2).mean() < 0.2 * gray_error  # far closer to the truth than gray
    with pytest.raises(ValueError, match=r"a colorizer samples from cond of shape \(2, 1, H, W\)"):
        model.sample(2, generator=torch.Generator(), how=Sampling(5))


def test_ab_bins_cover_the_srgb_gamut_and_decode_a_likely_colour_not_the_mean():
    """Zhang et al. 2016: 261 bins of 10 units reach every sRGB colour's ab; the soft encoding
    of a colour decodes back to it; and where a grey patch is red 70% of the time and green 30%,
    the annealed mean (T 0.38) keeps most of the red's chroma and hue where the mean (an L2
    estimate) falls to a dull brown."""
    from pipeline.ab_bins import GRID, ab_bins, annealed_mean, soft_encode
    from pipeline.color import rgb_to_lab

    bins = ab_bins()
    assert bins.shape == (261, 2) and bins.abs().max() <= 110
    rgb = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).double()
    ab = rgb_to_lab(rgb)[:, 1:].float()
    assert torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2), bins).min(1).values.max() < GRID
    z = soft_encode(ab, bins)
    torch.testing.assert_close(z.sum(1), torch.ones(1, 32, 32))
    decoded = annealed_mean(torch.log(z + 1e-12), bins, temperature=1.0)
    assert (decoded - ab).norm(dim=1).max() < GRID / 2  # the encoding's mean is the colour
    red, green = torch.tensor([[[[60.0]], [[50.0]]]]), torch.tensor([[[[-60.0]], [[50.0]]]])
    rival = 0.7 * soft_encode(red, bins) + 0.3 * soft_encode(green, bins)
    mean = annealed_mean(torch.log(rival + 1e-12), bins, temperature=1.0).flatten()
    annealed = annealed_mean(torch.log(rival + 1e-12), bins).flatten()
    torch.testing.assert_close(mean, torch.tensor([24.0, 50.0]), rtol=0, atol=1.0)
    assert (annealed - red.flatten()).norm() < 0.35 * (mean - red.flatten()).norm()


def test_a_classify_color_export_loads_in_a_fresh_process(tmp_path, run_python):
    """A process's first ab_bins() may come while load_model builds the network on the meta
    device (no values there): the bins are computed on the CPU whatever the default device."""
    folder = export(tmp_path, "classify_color")
    load = f"from pipeline.methods.export import load_model; print(load_model({str(folder)!r}).net.conv_out.out_channels)"
    done = run_python("-c", load)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "261"


def test_the_colorizer_panel_is_gray_samples_truth():
    model = method_class("ddpm_color")(params("ddpm_color"), torch.device("cpu")).model(
        torch.nn.Identity()
    )
    references = to_uint8(two_images()).numpy()  # the conditions: real images, uint8
    samples = torch.zeros(6, 3, 8, 8)  # K = 3 samples per reference
    images, nrow = model.panel(samples, references)
    assert images.shape == (10, 3, 8, 8) and nrow == 10
    torch.testing.assert_close(images[4], to_unit(references[0]))
    gray = images[0]
    assert (gray[0] - gray[1]).abs().max() < 1e-3 and (gray[1] - gray[2]).abs().max() < 1e-3


def test_colorizers_need_rgb_data():
    with pytest.raises(
        ConfigError,
        match="model.family 'ddpm_color' colorizes RGB images: data.channels must be 3, got 1",
    ):
        from_dict(Params, {**TINY, "data": {**TINY["data"], "channels": 1},
                           "model": {**TINY["model"], "family": "ddpm_color"}})  # fmt: skip


# ------------------------------------------------------------------ python -m pipeline colorize
def export(tmp_path, family, **overrides):
    """An exported (untrained, seeded) model of ``family``: what the command reads."""
    from pipeline.methods.export import export_model

    torch.manual_seed(0)
    p = (
        params(family)
        if family != "ddpm"
        else from_dict(Params, {**TINY, "data": {"image_size": 8}})
    )
    net = method_class(family).build_net(p)
    return export_model(net.state_dict(), step=0, params=p, out_dir=tmp_path / family)


def lightness_of(path):
    from PIL import Image

    from pipeline.color import rgb_to_lab

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
    return rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0].numpy()


def test_colorize_keeps_size_and_lightness_of_odd_sized_and_gray_inputs(run_pipeline, tmp_path):
    from PIL import Image

    from tests.conftest import ROOT

    models = export(tmp_path, "ddpm_color")
    photo = ROOT / "docs" / "kite.jpg"  # 517 x 389, not in the dataset
    gray = tmp_path / "in" / "scan.png"
    gray.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 71), dtype=np.uint8)).save(gray)
    out = tmp_path / "out"
    args = ("colorize", str(photo), str(gray.parent), "--model", str(models),
            "--out", str(out), "--steps", "3", "--samples", "2", "--seed", "7")  # fmt: skip
    result = run_pipeline(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "kite.png",
        "kite_2.png",
        "scan.png",
        "scan_2.png",
    ]
    for source, name in ((photo, "kite"), (gray, "scan")):
        with Image.open(source) as a, Image.open(out / f"{name}.png") as b:
            assert b.size == a.size and b.mode == "RGB"
        np.testing.assert_allclose(
            lightness_of(out / f"{name}.png"), lightness_of(source), atol=1.0
        )
    first = (out / "kite.png").read_bytes()
    assert first != (out / "kite_2.png").read_bytes()  # two samples differ
    again = run_pipeline(*args)  # the outputs exist: refused before any work, left as they were
    assert again.returncode == 2 and "kite.png exists; pass --overwrite" in again.stderr
    assert run_pipeline(*args, "--overwrite").returncode == 0
    assert (out / "kite.png").read_bytes() == first  # the same seed gives the same colours
    one = run_pipeline(*args, "--overwrite", "--draws", "1")
    assert one.returncode == 0, one.stderr
    assert (out / "kite.png").read_bytes() != first  # the default combines several draws
    for flag, value in (("--draws", "0"), ("--vividness", "1.5"), ("--saturation", "3.5")):
        bad = run_pipeline(*args, flag, value)
        assert bad.returncode == 2 and flag in bad.stderr and value in bad.stderr


def polar(chroma, degrees):
    """ab (1, 2, 1, 1) of a chroma and a hue angle (degrees)."""
    angle = np.radians(degrees)
    return torch.tensor([chroma * np.cos(angle), chroma * np.sin(angle)]).reshape(1, 2, 1, 1)


def hue_chroma(ab):
    return float(np.degrees(torch.atan2(ab[1], ab[0]))), float(ab.norm())


@pytest.mark.parametrize(
    "draws, hue, chroma",
    [
        ([(40, 10)], 10, 40),  # one draw: itself
        ([(40, 30), (40, -30)], 0, 40),  # mean's hue, the draws' chroma (plain mean: 34.6)
        ([(20, 100), (40, 100)], 100, 30),  # one hue: the mean chroma
        ([(30, 0), (30, 90), (30, 180)], 90, 30),  # the hue most of the chroma points to
    ],
)
def test_consensus_keeps_the_mean_hue_at_the_draws_chroma(draws, hue, chroma):
    from pipeline.photo import consensus

    out = consensus(torch.cat([polar(c, h) for c, h in draws]).double(), vividness=1.0)
    assert out.shape == (1, 2, 1, 1)
    assert hue_chroma(out[0, :, 0, 0]) == pytest.approx((hue, chroma), abs=1e-9)
    cancel = consensus(torch.tensor([[30.0, 0.0], [-30.0, 0.0]]).reshape(2, 2, 1, 1))
    assert cancel.abs().max() == 0  # draws that cancel exactly: gray, not NaN


@pytest.mark.parametrize("vividness, chroma", [(0.0, 20.0), (0.5, 30.0), (1.0, 40.0)])
def test_vividness_moves_the_chroma_from_the_mean_to_the_draws(vividness, chroma):
    """Draws of chroma 40 at hues 60 degrees either side of 90: their mean has hue 90 and chroma
    40 cos(60) = 20; vividness 0 is that plain mean, 1 the draws' chroma, 0.5 halfway."""
    from pipeline.photo import consensus

    draws = torch.cat([polar(40, 30), polar(40, 150)]).double()
    out = consensus(draws, vividness)
    assert hue_chroma(out[0, :, 0, 0]) == pytest.approx((90, chroma), abs=1e-9)
    if vividness == 0:
        assert torch.allclose(out, draws.mean(0, keepdim=True))


@pytest.mark.parametrize(
    "vividness, guide, chroma",
    [
        (0.0, (10, 0), 10),  # the guide alone
        (0.5, (10, 0), 25),  # halfway from the guide's chroma 10 to the draws' 40
        (1.0, (10, 0), 40),  # the draws' chroma, at the guide's hue
        (1.0, (50, -20), 50),  # never paler than the guide
    ],
)
def test_a_guide_sets_the_hue_and_the_chroma_the_draws_add_to(vividness, guide, chroma):
    """Draws of chroma 40 at hues 30 and 150 (their mean: hue 90, chroma 20) around a guide:
    the output takes the guide's hue, and vividness of the draws' chroma beyond the guide's."""
    from pipeline.photo import consensus

    draws = torch.cat([polar(40, 30), polar(40, 150)]).double()
    out = consensus(draws, vividness, polar(*guide).double())
    assert hue_chroma(out[0, :, 0, 0]) == pytest.approx((guide[1], chroma), abs=1e-9)
    assert consensus(draws, vividness, torch.zeros(1, 2, 1, 1).double()).abs().max() == 0


@pytest.mark.parametrize("saturation", [0.0, 0.5, 1.0, 1.6])
def test_saturation_scales_the_chroma_and_keeps_the_hue_and_lightness(saturation):
    """--saturation s: the joined colour's chroma is s times the decoded ab's, at its hue, on
    the photo's own L* (an in-gamut mid-gray photo and a muted orange ab)."""
    from pipeline.color import rgb_to_lab
    from pipeline.photo import join_full_size

    rgb = np.full((4, 6, 3), 128, dtype=np.uint8)
    ab = polar(15, 60).float().expand(1, 2, 2, 3)
    out = join_full_size(rgb, ab, saturation)
    lab = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1)[None].double() / 255)[0, :, 0, 0]
    gray_L = rgb_to_lab(torch.full((1, 3, 1, 1), 128 / 255, dtype=torch.float64))[0, 0, 0, 0]
    assert float(lab[0]) == pytest.approx(float(gray_L), abs=0.5)
    hue, chroma = hue_chroma(lab[1:])
    assert chroma == pytest.approx(15 * saturation, abs=0.6)  # within uint8 rounding
    if saturation:
        assert hue == pytest.approx(60, abs=2.5)


def test_colorize_skips_and_lists_unreadable_files_and_refuses_other_models(run_pipeline, tmp_path):
    from tests.conftest import ROOT

    kite = str(ROOT / "docs" / "kite.jpg")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    models = export(tmp_path, "regression_color")
    result = run_pipeline("colorize", kite, str(broken), "--model", str(models), "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "1 of 2 input(s) could not be colorized and were skipped" in result.stderr
    assert str(broken) in result.stderr
    assert [p.name for p in out.iterdir()] == ["kite.png"]  # the readable one was colorized

    unconditional = export(tmp_path, "ddpm")
    result = run_pipeline(
        "colorize", kite, "--model", str(unconditional), "--out", str(tmp_path / "none")
    )
    assert result.returncode == 2
    assert (
        "holds model.family 'ddpm', not a colorizer (ddpm_color, regression_color, classify_color)"
        in result.stderr
    )
    assert not (tmp_path / "none").exists()
    # weights holding NaN coloured the photo black with exit 0 (issue 47, class 2)
    from pipeline.methods.export import export_model, load_params_of

    state = torch.load(models / "ema.pt", weights_only=True)
    next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    broken_model = export_model(state, step=0, params=load_params_of(models),
                                out_dir=tmp_path / "nan")  # fmt: skip
    diffusion = export(tmp_path, "ddpm_color")
    for flags in (("--model", broken_model), ("--model", diffusion, "--guide", broken_model)):
        result = run_pipeline("colorize", kite, *map(str, flags), "--out", str(tmp_path / "none"))
        assert result.returncode == 2 and "holds NaN or infinite values" in result.stderr
        assert not (tmp_path / "none").exists()
    # a guide must be a regression_color of the model's crop size, for a diffusion model
    for model, guide, message in (
        (
            diffusion,
            diffusion,
            "holds a ddpm_color of 8 px images (data.fit tiles); a guide is a one-step colorizer "
            "(regression_color, classify_color) of the model's 8 px",
        ),
        (models, models, "--guide needs a diffusion --model, not a regression_color"),
    ):
        result = run_pipeline("colorize", kite, "--model", str(model), "--guide", str(guide),
                              "--out", str(tmp_path / "none"))  # fmt: skip
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not (tmp_path / "none").exists()
    # and the sample command sends a colorizer's user here, before drawing anything
    result = run_pipeline(
        "sample", "--model", str(models), "--count", "2", "--out", str(tmp_path / "grid.png")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "which colours given photos: use `python -m pipeline colorize`" in result.stderr
    assert not (tmp_path / "grid.png").exists()


# --------------------------------------------------------------------- colorization scores
@pytest.fixture(scope="module")
def photos_processed(processed_data):
    """The photos source preprocessed at 32 px (pipeline.data.preprocess)."""
    return processed_data(DataConfig(source="photos", image_size=32, channels=3, fit="tiles"))


@pytest.fixture(scope="module")
def photo_test_split(photos_processed):
    """The photos source's test split at 32 px: 4,392 real colour crops of 36 held-out photos."""
    return np.load(photos_processed / "test_images.npy")


def recolour(images, chroma=1.0, hue_degrees=0.0):
    """uint8 RGB images with ab scaled by ``chroma`` and rotated by ``hue_degrees``, L* kept."""
    from pipeline.color import lab_to_rgb, rgb_to_lab

    lab = rgb_to_lab(torch.from_numpy(images).double() / 255)
    angle = torch.tensor(hue_degrees * np.pi / 180, dtype=torch.float64)
    a, b = lab[:, 1], lab[:, 2]
    a, b = (
        chroma * (a * angle.cos() - b * angle.sin()),
        chroma * (a * angle.sin() + b * angle.cos()),
    )
    return (lab_to_rgb(torch.stack([lab[:, 0], a, b], 1)) * 255).round().to(torch.uint8).numpy()


@pytest.mark.slow  # 40 s: keeps make test-fast well under 5 minutes
def test_colour_fid_orders_real_desaturated_hue_rotated_gray(photo_test_split):
    from pipeline.evaluate.colour import ColourStatistics, gray_images
    from pipeline.evaluate.frechet import feature_statistics, frechet_distance

    features = ColourStatistics()

    def stats(images):
        return feature_statistics(
            features.image_features(torch.from_numpy(np.ascontiguousarray(images)))
        )

    real = stats(photo_test_split)
    fid = {
        name: frechet_distance(*real, *stats(images))
        for name, images in {
            "real (mirrored)": photo_test_split[..., ::-1],
            "desaturated 20%": recolour(photo_test_split, chroma=0.8),
            "hue +60 degrees": recolour(photo_test_split, hue_degrees=60),
            "gray": gray_images(photo_test_split),
        }.items()
    }
    values = list(fid.values())
    assert values == sorted(values) and values[0] < 0.5 and values[1] > 4 * values[0], fid
    assert values[2] > 4 * values[1] and values[3] > 1.2 * values[2], fid


def to_lab_of(images):
    from pipeline.color import rgb_to_lab

    return rgb_to_lab(torch.from_numpy(images).double() / 255).numpy()


def test_fidelity_and_diversity_against_closed_forms(photo_test_split):
    from pipeline.evaluate.colour import ab_diversity, fidelity, gray_images

    truth = photo_test_split[:20]
    same = fidelity(truth + 0, truth)
    assert same["ciede2000"] == 0 and same["ssim"] == pytest.approx(1.0)
    assert same["psnr"] == pytest.approx(10 * np.log10(12 * 255**2))  # capped, not infinite
    assert same["colourfulness"] == same["colourfulness_truth"] > 20
    shifted = np.clip(truth.astype(np.int16) + 4, 0, 255).astype(np.uint8)
    mse = ((shifted.astype(np.float64) - truth) ** 2).reshape(20, -1).mean(1)
    expected_psnr = np.mean(10 * np.log10(255**2 / mse))
    assert fidelity(shifted, truth)["psnr"] == pytest.approx(expected_psnr, rel=1e-6)
    gray = fidelity(gray_images(truth), truth)
    assert gray["colourfulness"] < 0.5 and gray["ciede2000"] > 3
    assert same["hue_accuracy"] == 1 and gray["hue_accuracy"] == 0
    assert same["ciede2000_relative"] == 0 and gray["ciede2000_relative"] == pytest.approx(
        1, abs=0.02
    )
    assert same["colourfulness_gap"] == 0
    assert gray["colourfulness_gap"] == pytest.approx(same["colourfulness"] - gray["colourfulness"])
    # hue: rotating every colour by 30 degrees keeps it right, by 60 degrees makes it wrong;
    # a fifth of the chroma keeps the hue but not the pixels whose chroma falls to 10 or below
    assert fidelity(recolour(truth, hue_degrees=30), truth)["hue_accuracy"] > 0.99
    assert fidelity(recolour(truth, hue_degrees=60), truth)["hue_accuracy"] < 0.01
    lab = to_lab_of(truth)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    coloured = chroma > 15
    expected = (chroma[coloured] / 5 > 10).mean()
    third = fidelity(recolour(truth, chroma=1 / 5), truth)["hue_accuracy"]
    assert third == pytest.approx(expected, abs=0.03) and 0.05 < third < 0.95
    assert ab_diversity(np.stack([truth, truth], 1)) == 0
    from pipeline.color import lab_to_rgb

    def flat(L, a, b):  # (1, 3, 8, 8) uint8 of one Lab colour
        lab = torch.tensor([L, a, b], dtype=torch.float64).reshape(1, 3, 1, 1).expand(1, 3, 8, 8)
        return (lab_to_rgb(lab) * 255).round().to(torch.uint8).numpy()

    two = np.stack([flat(50, 0, 0), flat(50, 30, 40)], 1)  # ab distance 50 (up to uint8 rounding)
    assert ab_diversity(two) == pytest.approx(50, abs=1.0)


# ------------------------------------------- the command against the crops' path (issue 25, step 1)
def test_the_command_and_evaluate_colour_a_crop_at_the_training_scale_alike(tmp_path):
    from pipeline.config import EvalConfig
    from pipeline.evaluate.sampling import sample_batch
    from pipeline.methods.export import load_model
    from pipeline.photo import colorize_image
    from pipeline.seeding import derived_seed

    models = export(tmp_path, "ddpm_color")  # crops of 8 px
    crop = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    config = EvalConfig(steps=5, seed=11)
    evaluated = sample_batch(
        load_model(models), 1, config, 0, crop.transpose(2, 0, 1)[None].copy()
    )[0]
    seed = derived_seed("sample", config.seed, 0)  # the same noise as evaluate's batch 0
    (commanded,) = colorize_image(load_model(models), crop, samples=1, steps=5, scale=1.0,
                                  generator=torch.Generator().manual_seed(seed), draws=1)  # fmt: skip
    # one L*a*b* -> RGB -> L*a*b* round trip apart (the command re-joins ab onto the input's L*)
    diff = np.abs(commanded.astype(int) - evaluated.transpose(1, 2, 0).astype(int))
    assert diff.max() <= 2, diff.max()


def rule_lab(L):
    """A colour per lightness, (N, 1, H, W) L* -> (N, 3, H, W) L*a*b*: bright (L* > 50) orange,
    dark blue."""
    bright = (L > 50).double()
    return torch.cat([L, 30 * bright + 10 * (1 - bright), 95 * bright - 45], dim=1)


def smooth_lightness(n, h, w, generator):
    """(n, 1, h, w) L* in [5, 95]: bicubic upsampling of 3 x 3 random values."""
    base = torch.rand(n, 1, 3, 3, generator=generator, dtype=torch.float64) * 80 + 10
    up = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic", align_corners=False)
    return up.clamp(5, 95)


def test_a_learned_colour_survives_the_command_on_a_larger_photo():
    """A colorizer with attention that learned bright -> orange, dark -> blue on 8 px crops
    colours a 96 x 128 photo through the command's path (working sizes up to 64 px, attention over
    16x as many positions as in training) as it colours crops: the command adds no cast."""
    from pipeline.color import lab_to_rgb, rgb_to_lab
    from pipeline.photo import colorize_image

    model_config = {**TINY["model"], "family": "regression_color", "attention_resolutions": [4],
                    "mid_attention": True, "num_heads": 2}  # fmt: skip
    p = from_dict(Params, {**TINY, "model": model_config})
    torch.manual_seed(0)
    method = method_class("regression_color")(p, torch.device("cpu"))
    method.prepare(lambda net: net)
    generator = torch.Generator().manual_seed(0)
    for step in range(300):
        crops = lab_to_rgb(rule_lab(smooth_lightness(32, 8, 8, generator))) * 2 - 1
        method.train_step([crops.float()], lr=2e-3, step=step)
    model = method.model(method.net)
    truth_lab = rule_lab(smooth_lightness(1, 96, 128, torch.Generator().manual_seed(5)))
    photo = (lab_to_rgb(truth_lab)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    truth_lab = rgb_to_lab(torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 255)
    for scale in (1.0, 4.0, 8.0):
        (out,) = colorize_image(model, photo, samples=1, steps=5, scale=scale,
                                generator=torch.Generator().manual_seed(0), draws=1)  # fmt: skip
        lab = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1)[None].double() / 255)
        hue_error = torch.atan2(lab[:, 2], lab[:, 1]) - torch.atan2(
            truth_lab[:, 2], truth_lab[:, 1]
        )
        hue_error = torch.remainder(hue_error + torch.pi, 2 * torch.pi) - torch.pi
        right_hue = (hue_error.abs() < torch.pi / 4).double().mean()
        chroma, truth_chroma = lab[:, 1:].norm(dim=1).mean(), truth_lab[:, 1:].norm(dim=1).mean()
        assert right_hue > 0.9, (scale, right_hue)
        assert chroma > 0.8 * truth_chroma, (scale, chroma, truth_chroma)


# ------------------------------------------------ training on the colourful crops (issue 25, step 4)
def test_min_colourfulness_trains_on_the_colourful_crops_only(photos_processed, photo_test_split):
    from pipeline.color import colourfulness
    from pipeline.config import TrainConfig
    from pipeline.data.dataset import colourful
    from pipeline.evaluate.colour import gray_images
    from pipeline.train.worker import train_split

    crops = photo_test_split[:300]
    scores = colourfulness(torch.from_numpy(crops).double() / 255).numpy()
    kept = colourful(crops, 15)
    np.testing.assert_array_equal(kept, np.flatnonzero(scores >= 15))
    assert 0 < len(kept) < len(crops)  # real crops fall on both sides of BigColor's cut
    assert len(colourful(gray_images(crops), 15)) == 0 and len(colourful(crops, 0)) == len(crops)

    everything = train_split(photos_processed, TrainConfig(batch_size=8))
    train = np.load(photos_processed / "train_images.npy", mmap_mode="r")
    assert len(everything) == len(train)
    filtered = train_split(photos_processed, TrainConfig(batch_size=8, min_colourfulness=15))
    expected = colourful(train, 15)
    assert len(filtered) == len(expected) and 0.5 * len(train) < len(expected) < 0.9 * len(train)
    np.testing.assert_array_equal(filtered[7].numpy(), everything[int(expected[7])].numpy())
    too_few = f"min_colourfulness 15 leaves {len(expected)} of {len(train)} train crops, fewer"
    with pytest.raises(ValueError, match=too_few):
        train_split(photos_processed, TrainConfig(batch_size=40_000, min_colourfulness=15))


# ------------------------------------------------------------ the colorizer that ships (issue 25, 3)
def test_ship_copies_a_checked_colorizer_and_its_guide_with_their_provenance(tmp_path, monkeypatch):
    import hashlib
    import json

    from pipeline import shipped
    from pipeline.io import CorruptFileError
    from pipeline.methods.export import load_model
    from tests.factories import train_report

    models, guide = export(tmp_path, "ddpm_color"), export(tmp_path, "regression_color")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"num_samples": 12, "fid_colour": 3.5, "hue_accuracy": 0.4}))
    params_file, guide_params = tmp_path / "params.yaml", tmp_path / "guide.yaml"
    params_file.write_text("train:\n  steps: 7\n")
    guide_params.write_text("train:\n  steps: 8\n")

    def trained(models_dir, params, run_id):
        tags = {"git_commit": run_id[0] * 40, "data_manifest_sha256": "d" * 64}
        return shipped.Trained(models_dir, params, train_report(mlflow_run_id=run_id), tags)

    def ship(colorizer, guide_dir, out):
        return shipped.ship(trained(colorizer, params_file, "abc"),
                            trained(guide_dir, guide_params, "bcd"), out, metrics=metrics)  # fmt: skip

    provenance = ship(models, guide, tmp_path / "shipped")
    assert shipped.shipped_colorizer(tmp_path / "shipped") == tmp_path / "shipped"
    assert shipped.shipped_guide(tmp_path / "shipped") == tmp_path / "shipped" / "guide"
    assert shipped.read_provenance(tmp_path / "shipped") == provenance
    assert provenance["git_commit"] == "a" * 40 and provenance["metrics"]["fid_colour"] == 3.5
    assert provenance["guide"]["git_commit"] == "b" * 40
    assert provenance["guide"]["mlflow_run_id"] == "bcd"
    assert provenance["data_manifest_sha256"] == "d" * 64 and provenance["step"] == 0
    assert provenance["params_sha256"] == hashlib.sha256(b"train:\n  steps: 7\n").hexdigest()
    assert (
        provenance["guide"]["params_sha256"] == hashlib.sha256(b"train:\n  steps: 8\n").hexdigest()
    )
    for source, copy in ((models, "shipped"), (guide, "shipped/guide")):
        reloaded, original = load_model(tmp_path / copy).net, load_model(source).net
        for a, b in zip(
            reloaded.state_dict().values(), original.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b)
    # an edited provenance is refused on read; a folder without a model names what to do
    path = tmp_path / "shipped" / shipped.PROVENANCE_FILE
    path.write_text(path.read_text().replace('"fid_colour": 3.5', '"fid_colour": 1.5'))
    with pytest.raises(CorruptFileError, match="provenance.json"):
        shipped.read_provenance(tmp_path / "shipped")
    with pytest.raises(FileNotFoundError, match="no colorizer ships with this install.*--model"):
        shipped.shipped_colorizer(tmp_path / "none")
    # only a ddpm_color and a regression_color within the size budget ship, else nothing is written
    with pytest.raises(
        ValueError, match="model.family 'regression_color'; the shipped colorizer is a ddpm"
    ):
        ship(guide, guide, tmp_path / "swapped")
    with pytest.raises(
        ValueError,
        match=r"holds a ddpm_color of 8 px images .data.fit \w+.; a guide is a one-step colorizer",
    ):
        ship(models, models, tmp_path / "two")
    monkeypatch.setattr(shipped, "MAX_SHIPPED_BYTES", 1000)
    with pytest.raises(ValueError, match="MiB, above the 0 MiB a shipped colorizer may take"):
        ship(models, guide, tmp_path / "large")
    assert not any((tmp_path / name).exists() for name in ("swapped", "two", "large"))


def test_the_colorizer_that_ships_colorizes_a_photo_without_model_and_says_where_it_came_from(
    run_pipeline, tmp_path
):
    import hashlib
    import json
    import re

    from PIL import Image

    from pipeline.shipped import MAX_SHIPPED_BYTES, SHIPPED_DIR, read_provenance, shipped_guide
    from tests.conftest import ROOT

    kite, guide = ROOT / "docs/kite.jpg", shipped_guide()

    provenance = read_provenance()  # checked against its sidecar
    assert sum(p.stat().st_size for p in SHIPPED_DIR.rglob("*")) <= MAX_SHIPPED_BYTES
    assert re.fullmatch(r"[0-9a-f]{40}", provenance["git_commit"])
    assert re.fullmatch(r"[0-9a-f]{64}", provenance["data_manifest_sha256"])
    # what ships is what the shipped pipeline last scored: no stale number in the provenance
    scored = json.loads((ROOT / "colorize/shipped/reports/metrics.json").read_text())
    assert provenance["metrics"] == scored and scored["num_samples"] == 500
    result = run_pipeline("colorize", str(kite), "--out", str(tmp_path), "--steps", "3")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "kite.png"
    with Image.open(kite) as original, Image.open(out) as colour:
        assert colour.size == original.size
    assert np.abs(lightness_of(out) - lightness_of(kite)).max() < 1.0
    rgb = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 2  # colours, not a gray copy
    # the shipped guide is used: by default (--vividness 0) the output is its colours alone at
    # --saturation 1.15, as when it runs as the model itself (the mean of identical draws);
    # --vividness 0.25 adds the diffusion draws' chroma
    for name, flags in (("alone", ["--model", str(guide), "--saturation", "1.15"]),
                        ("drawn", ["--vividness", "0.25", "--steps", "3"])):  # fmt: skip
        result = run_pipeline("colorize", str(kite), "--out", str(tmp_path / name), *flags)
        assert result.returncode == 0, result.stderr
    alone, drawn = (np.asarray(Image.open(tmp_path / name / "kite.png"), dtype=np.int16)
                    for name in ("alone", "drawn"))  # fmt: skip
    assert np.abs(rgb - alone).max() <= 1 and np.abs(drawn - rgb).max() > 4  # 9 at 3 steps
    # K samples of the guide alone would be K copies: refused before any work
    result = run_pipeline("colorize", str(kite), "--out", str(tmp_path / "k"), "--samples", "2")
    assert result.returncode == 2 and "--samples 2: at --vividness 0 with a guide" in result.stderr
    assert not (tmp_path / "k").exists()
    # the guide that ships is the one the shipped pipeline trained last, from today's guide.yaml
    guide_report = json.loads((ROOT / "colorize/shipped/reports/guide.json").read_text())
    assert provenance["guide"]["mlflow_run_id"] == guide_report["mlflow_run_id"]
    assert (
        provenance["guide"]["params_sha256"]
        == hashlib.sha256((ROOT / "colorize/shipped/guide.yaml").read_bytes()).hexdigest()
    )


# ------------------------------------------------------------- whole photos (issue 40, step 1)
def test_a_model_trained_on_views_sees_the_whole_photo_in_one_call(tmp_path):
    """A colorizer trained on views (data.fit views) runs once on the whole photo at its views'
    scale (the shorter side at data.image_size), not on tiles; a model of crops still tiles."""
    from pipeline.methods.export import export_model, load_model
    from pipeline.photo import colorize_image, default_scale

    seen = {}
    for fit in ("views", "tiles"):
        p = from_dict(Params, {**TINY, "data": {**TINY["data"], "fit": fit},
                               "model": {**TINY["model"], "family": "regression_color"}})  # fmt: skip
        torch.manual_seed(0)
        net = method_class("regression_color").build_net(p)
        model = load_model(export_model(net.state_dict(), step=0, params=p, out_dir=tmp_path / fit))
        shapes = seen.setdefault(fit, [])
        model.net.register_forward_hook(
            lambda net, args, out, shapes=shapes: shapes.append(tuple(out.shape))
        )
        photo = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
        (out,) = colorize_image(model, photo, samples=1, draws=1, steps=1,
                                scale=default_scale(model), generator=torch.Generator())  # fmt: skip
        assert out.shape == photo.shape
    assert seen["views"] == [(1, 2, 8, 13)]  # 24 x 40 at shorter side 8, in one call
    assert all(shape[-2:] == (8, 8) for shape in seen["tiles"])  # batches of 8 px tiles
    assert sum(shape[0] for shape in seen["tiles"]) > 1


def test_photo_scores_against_closed_forms():
    from pipeline.evaluate.colour import gray_images, photo_scores

    rng = np.random.default_rng(0)
    photos = [
        rng.integers(0, 256, shape, dtype=np.uint8)
        for shape in ((12, 20, 3), (16, 9, 3), (10, 10, 3))
    ]
    gray = [gray_images(p.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0) for p in photos]
    exact = photo_scores(photos, photos)
    assert exact["ciede2000"] == 0 and exact["ciede2000_relative"] == 0
    assert exact["hue_accuracy"] == 1 and exact["chroma_ratio"] == 1
    assert exact["colourfulness_gap"] == 0 and abs(exact["fid_colour"]) < 1e-6
    none = photo_scores(gray, photos)
    assert none["ciede2000_relative"] == pytest.approx(1, abs=0.02)  # gray's own, within rounding
    assert none["hue_accuracy"] == 0 and none["chroma_ratio"] < 0.02
    assert none["fid_colour"] > 1
    assert np.isnan(photo_scores(photos[:1], photos[:1])["fid_colour"])  # one photo: no covariance
    with pytest.raises(ValueError, match="as many outputs as truths, got 2, 3"):
        photo_scores(photos[:2], photos)


@pytest.mark.slow  # the evaluate stage on Ray (~25 s): make test-fast took 4:59 with it
def test_the_evaluate_stage_colours_the_held_out_photos_whole(tmp_path, processed_data):
    """eval.colorizer.photos: the first test photos of the raw source, colorized as the command
    does (pipeline.photo.decodings: the model around its baseline as guide, the draws alone, the
    guide alone) and scored whole."""
    import csv

    from pipeline.config import EvalConfig
    from pipeline.config.sections import ColorizerEvalConfig
    from pipeline.data.preprocess import split_images
    from pipeline.evaluate.hooks import ColorizerEvaluation, Inputs
    from pipeline.methods.export import load_model

    data = DataConfig(source="photos", image_size=8, channels=3, fit="tiles")
    raw = processed_data(data).parent / "raw"
    with open(raw / "index.csv", newline="") as f:
        test = [row["file"] for row in csv.DictReader(f) if row["split"] == "test"]
    found = [Path(e.origin).name for e in split_images(data, raw, "test")]
    assert found == test and len(found) == 36  # as preprocessing assigns them
    models, guide = export(tmp_path, "ddpm_color"), export(tmp_path, "regression_color")
    config = EvalConfig(steps=2, colorizer=ColorizerEvalConfig(photos=3))
    hooks = ColorizerEvaluation(load_model(models), config)
    with pytest.raises(ValueError, match="eval.colorizer.photos is 3: pass --photos"):
        hooks.prepare(Inputs(models, baseline_dir=guide))
    hooks.prepare(Inputs(models, baseline_dir=guide, photos_dir=raw))
    assert [p.shape[2] for p in hooks.photos] == [3, 3, 3]
    scores = hooks.photo_scores()
    for prefix in ("photo_", "photo_draws_", "photo_regression_"):
        for key in ("ciede2000_relative", "hue_accuracy", "chroma_ratio", "fid_colour"):
            assert np.isfinite(scores[f"{prefix}{key}"]), (prefix, key)
    assert scores["photo_gray_fid_colour"] > 0
    # the same seed, the same photos: the same scores
    assert hooks.photo_scores() == scores


def test_a_sepia_scan_is_coloured_as_its_lightness(tmp_path):
    """An archive's toned print (sepia: one warm hue at every lightness) gets the colours of the
    gray print of the same lightness: the model sees L* alone and the output keeps the input's
    L*, so the tint is neither kept nor mistaken for a colour."""
    from pipeline.color import lab_to_rgb, rgb_to_lab
    from pipeline.methods.export import load_model
    from pipeline.photo import colorize_image

    model = load_model(export(tmp_path, "ddpm_color"))
    rng = np.random.default_rng(1)
    L = torch.from_numpy(rng.uniform(20, 90, (1, 1, 24, 32)))
    toned = [
        torch.cat([L, a * torch.ones_like(L), b * torch.ones_like(L)], 1)
        for a, b in ((0, 0), (6, 18))
    ]
    gray, sepia = (to_uint8(lab_to_rgb(lab) * 2 - 1)[0].permute(1, 2, 0).numpy() for lab in toned)
    outs = [
        next(
            colorize_image(
                model,
                image,
                samples=1,
                draws=2,
                steps=3,
                scale=1.0,
                generator=torch.Generator().manual_seed(0),
            )
        )  # fmt: skip
        for image in (gray, sepia)
    ]
    lab = [
        rgb_to_lab(torch.from_numpy(o.transpose(2, 0, 1)[None].copy()).double() / 255) for o in outs
    ]
    assert (lab[0] - lab[1]).abs().amax() < 3  # uint8 rounding of the inputs' L* apart
    sepia_ab = rgb_to_lab(torch.from_numpy(sepia.transpose(2, 0, 1)[None].copy()).double() / 255)[
        :, 1:
    ]
    assert (lab[1][:, 1:] - sepia_ab).abs().mean() > 5  # the tint itself is not kept


def test_eval_colorizer_photos_are_none_or_at_least_two():
    from pipeline.config.sections import ColorizerEvalConfig

    with pytest.raises(
        ConfigError, match=r"eval.colorizer: photos must be 0 \(none\) or at least 2"
    ):
        ColorizerEvalConfig(photos=1)
    with pytest.raises(ConfigError, match="eval.colorizer: photos must be an integer >= 1, got -3"):
        ColorizerEvalConfig(photos=-3)
    assert ColorizerEvalConfig(photos=0).photos == 0 and ColorizerEvalConfig(photos=35).photos == 35


def test_non_finite_colours_are_never_written_as_black():
    """Issue 47, class 2: ab holding NaN (a diverged model) is a ValueError, not a black photo."""
    from pipeline.photo import join_full_size

    rgb = np.full((6, 9, 3), 120, np.uint8)
    ab = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    assert join_full_size(rgb, ab).shape == (6, 9, 3)
    ab[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite colours"):
        join_full_size(rgb, ab)


@pytest.mark.slow  # waits on locks or runs the commands: out of make test-fast
def test_a_file_named_dot_dot_png_is_colorized_and_stylized(run_pipeline, tmp_path):
    """Issue 47, class 7: ``..png`` given directly (colorize failed after the work, "unknown file
    extension"; stylize "has an empty name") is written as ``..png.png``, as inside a folder."""
    from PIL import Image

    from tests.conftest import ROOT

    photo = tmp_path / "in" / "..png"
    photo.parent.mkdir()
    with Image.open(ROOT / "docs/kite.jpg") as kite:
        kite.resize((40, 30)).save(photo, format="PNG")
    models = export(tmp_path, "regression_color")
    painting = ROOT / "pipeline/style/paintings/kandinsky_composition_viii.jpg"
    for command, extra in (
        ("colorize", ("--model", str(models))),
        ("stylize", ("--style", str(painting), "--steps", "2", "--size", "64")),
    ):
        for given in (photo, photo.parent):
            out = tmp_path / f"{command}-{'file' if given.is_file() else 'folder'}"
            result = run_pipeline(command, str(given), *extra, "--out", str(out))
            assert result.returncode == 0, result.stderr
            assert [p.name for p in out.iterdir()] == ["..png.png"]
            with Image.open(out / "..png.png") as image:
                assert image.format == "PNG" and image.size == (40, 30)

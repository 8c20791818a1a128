"""Style transfer (pipeline.style, ``python -m pipeline stylize``): the Gram matrix and losses
against closed forms, the features' invariances, the colour-transfer baseline's statistics, the
scores' fixed points, that the optimisation moves a synthetic photo toward a synthetic painting's
texture while keeping its edges, and the command's files and errors."""

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config.keys import nest
from pipeline.style.baseline import colour_transfer
from pipeline.style.features import RandomFeatures
from pipeline.style.gram import content_loss, gram, relative_error, style_loss
from pipeline.style.scores import (
    colour_distance,
    edge_agreement,
    moved,
    style_distance,
    texture_distance,
)
from pipeline.style.transfer import StyleOptions, pass_sizes, resize_longer, stylize


# ----------------------------------------------------------------------------- Gram and losses
def test_gram_is_the_mean_outer_product_of_the_features():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2).repeat(1, 2, 1, 1)
    x[0, 1] *= -1  # channel 1 = -channel 0
    g = gram(x)  # (1, 2, 2): mean of squares 30 / 4, products -30 / 4
    torch.testing.assert_close(g, torch.tensor([[[7.5, -7.5], [-7.5, 7.5]]]))


def test_a_gram_matrix_does_not_depend_on_where_or_how_large_the_texture_is():
    tile = torch.randn(1, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(tile, (2, 3), (2, 3))
    larger = tile.repeat(1, 1, 3, 2)  # the same texture over 6 times the area
    torch.testing.assert_close(gram(shifted), gram(tile))
    torch.testing.assert_close(gram(larger), gram(tile))


def test_losses_are_relative_errors_summed_over_layers():
    a, b = torch.ones(1, 2, 3, 3), torch.full((1, 2, 3, 3), 3.0)
    assert float(relative_error(a, b)) == pytest.approx(4 / 9)
    assert float(relative_error(torch.zeros(1, 5), b.flatten(1)[:, :5])) == pytest.approx(1.0)
    assert float(content_loss([a, a], [b, a])) == pytest.approx(4 / 9)
    assert float(style_loss([b], [gram(b)])) == 0.0
    assert float(style_loss([a], [gram(b)])) == pytest.approx((9 - 1) ** 2 / 81)


# -------------------------------------------------------------------------------------- features
def test_content_layers_see_the_pattern_of_light_not_its_level_contrast_or_colour():
    """The content layers take luminance standardised per image: an affine change of the light
    (the painting's tonal range) and any change at constant luminance leave them as they were;
    the style layers see both."""
    features = RandomFeatures(seed=3, channels=8)
    gray = torch.rand(1, 1, 32, 40, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    photo = gray.repeat(1, 3, 1, 1)
    darker = (photo * 0.6 + 0.1).clamp(0, 1)
    for a, b in zip(features(photo).content, features(darker).content, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert style_loss(features(darker).style, [gram(f) for f in features(photo).style]) > 0.01


def test_random_features_are_fixed_by_their_seed():
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(RandomFeatures(seed=5)(x).style,
                                               RandomFeatures(seed=5)(x).style, strict=True)]  # fmt: skip
    other = RandomFeatures(seed=6)(x).style[0]
    assert all(same) and not torch.equal(RandomFeatures(seed=5)(x).style[0], other)
    with pytest.raises(ValueError, match="content_levels"):
        RandomFeatures(levels=3, content_levels=(3,))


# -------------------------------------------------------------------------------------- baseline
def test_colour_transfer_gives_the_content_the_styles_lab_mean_and_deviation():
    from pipeline.color import rgb_to_lab

    g = torch.Generator().manual_seed(0)
    content = (
        torch.rand(1, 3, 20, 30, generator=g) * 0.4 + 0.3
    )  # mid tones: nothing leaves the gamut
    style = torch.rand(1, 3, 16, 16, generator=g) * 0.3 + torch.tensor([0.4, 0.35, 0.3]).reshape(
        1, 3, 1, 1
    )
    out = colour_transfer(content, style)
    assert out.shape == content.shape
    lab, target = rgb_to_lab(out.double()), rgb_to_lab(style.double())
    torch.testing.assert_close(lab.mean((2, 3)), target.mean((2, 3)), atol=0.05, rtol=0)
    torch.testing.assert_close(lab.std((2, 3)), target.std((2, 3)), atol=0.05, rtol=0)
    assert edge_agreement(out, content) > 0.95  # the colours move, the edges stay
    colour_moved = moved(style_distance(content, style), style_distance(out, style))
    texture_moved = moved(texture_distance(content, style), texture_distance(out, style))
    assert colour_moved > 0.8 and abs(texture_moved) < 0.05  # the texture score sees no colour


# ---------------------------------------------------------------------------------------- scores
def test_scores_fixed_points():
    g = torch.Generator().manual_seed(0)
    image, other = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    assert style_distance(image, image) == pytest.approx(0.0, abs=1e-9)
    assert texture_distance(image, image) == pytest.approx(0.0, abs=1e-9)
    assert colour_distance(image, image) == pytest.approx(0.0, abs=1e-6)
    assert edge_agreement(image, image) == pytest.approx(1.0)
    assert abs(edge_agreement(image, other)) < 0.3  # independent noise: unrelated edges
    assert moved(4.0, 1.0) == 0.75 and moved(0.0, 1.0) == 0.0


def test_the_search_score_is_the_style_distance_left_plus_a_penalty_for_lost_edges():
    from pipeline.style.runs import EDGE_FLOOR, EDGE_PENALTY, pair_scores

    photo, painting = stripes_photo(), checker_painting()
    unchanged = pair_scores(photo, photo, painting)
    assert unchanged["style_moved"] == pytest.approx(0.0)
    assert unchanged["edge_agreement"] == pytest.approx(1.0)
    assert unchanged["score"] == pytest.approx(1.0)  # all of the distance left, edges intact
    noise = torch.rand(photo.shape, generator=torch.Generator().manual_seed(0))
    lost = pair_scores(noise, photo, painting)
    assert lost["edge_agreement"] < EDGE_FLOOR
    left = lost["style_distance"] / lost["style_distance_before"]
    penalty = EDGE_PENALTY * (EDGE_FLOOR - lost["edge_agreement"])
    assert lost["score"] == pytest.approx(left + penalty)


# ------------------------------------------------------------------------------------ the transfer
def stripes_photo(h=48, w=64):
    """A 'photo': a bright disc on a dark ground with a soft gray gradient, (1, 3, h, w)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    disc = ((x**2 + y**2) < 0.35).float()
    gray = 0.2 + 0.6 * disc + 0.1 * x
    return gray.clamp(0, 1).expand(1, 3, h, w).clone()


def checker_painting(n=48, cell=4):
    """A 'painting': a red and blue checkerboard of ``cell`` px squares, (1, 3, n, n)."""
    i = torch.arange(n) // cell
    board = ((i[:, None] + i[None, :]) % 2).float()
    red, blue = torch.tensor([0.9, 0.2, 0.1]), torch.tensor([0.1, 0.2, 0.8])
    return (board[..., None] * red + (1 - board[..., None]) * blue).permute(2, 0, 1)[None]


def test_stylize_moves_a_photo_toward_the_paintings_texture_and_keeps_its_edges():
    photo, painting = stripes_photo(), checker_painting()
    options = StyleOptions(size=64, steps=60, passes=2, style_weight=10.0)
    steps = []
    out, history = stylize(photo, painting, RandomFeatures(channels=32), options,
                           on_step=steps.append)  # fmt: skip
    assert out.shape == (1, 3, 48, 64) and 0 <= out.min() and out.max() <= 1
    assert history.sizes == [(24, 32), (48, 64)] and pass_sizes(options) == [32, 64]
    assert pass_sizes(StyleOptions(size=64, passes=3), longest=12) == [8, 8, 12]
    for side in (2, 5, 8, 9):  # passes of 1 px painted NaN: a black image
        image, _ = stylize(torch.rand(1, 3, side, side), torch.rand(1, 3, 64, 64),
                           RandomFeatures(seed=0), StyleOptions(steps=3, size=64, passes=3))  # fmt: skip
        assert torch.isfinite(image).all() and image.max() > 0.05, side
    assert sum(steps) == 2 * options.steps  # the progress bar's total, exactly
    assert history.style[-1] < 0.2 * history.style[0]  # the optimised loss fell
    before, after = style_distance(photo, painting), style_distance(out, painting)
    baseline = style_distance(colour_transfer(photo, painting), painting)
    assert moved(before, after) > 0.5, (before, after)  # in held-out features too
    assert after < baseline, (after, baseline)  # texture, not only colour
    texture = moved(texture_distance(photo, painting), texture_distance(out, painting))
    texture_baseline = moved(texture_distance(photo, painting),
                             texture_distance(colour_transfer(photo, painting), painting))  # fmt: skip
    assert texture > 0.1 and texture_baseline < 0.0, (texture, texture_baseline)
    assert moved(colour_distance(photo, painting), colour_distance(out, painting)) > 0.5
    assert edge_agreement(out, photo) > 0.5  # the disc is still where it was


def test_resize_longer_keeps_the_aspect():
    assert resize_longer(torch.rand(1, 3, 300, 200), 150).shape == (1, 3, 150, 100)
    assert resize_longer(torch.rand(1, 3, 10, 41), 82).shape == (1, 3, 20, 82)


# ------------------------------------------------------------------------------------ the command
def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.slow  # several command runs: keeps make test-fast under 5 minutes
def test_stylize_command_writes_files_of_the_contents_size_and_lists_unreadable_ones(
    run_pipeline, tmp_path
):
    from tests.conftest import ROOT

    style = ROOT / "pipeline/style/paintings/van_gogh_village_street.jpg"
    fast = ("--size", "64", "--steps", "4")
    one = tmp_path / "one.jpg"
    result = run_pipeline(
        "stylize", str(ROOT / "docs/kite.jpg"), "--style", str(style), "--out", str(one), *fast
    )
    assert result.returncode == 0, result.stderr
    with Image.open(one) as img, Image.open(ROOT / "docs/kite.jpg") as kite:
        assert img.size == kite.size and img.format == "JPEG"

    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    write_png(photos / "a.png", rng.integers(0, 256, (40, 70, 3), dtype=np.uint8))
    write_png(photos / "sub/b.png", rng.integers(0, 256, (33, 21), dtype=np.uint8))  # gray
    (photos / "broken.png").write_bytes(b"not a png")
    write_png(photos / "tiny.png", rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))  # was black
    out = tmp_path / "out"
    args = ("stylize", str(photos), "--style", str(style), "--out", str(out))
    result = run_pipeline(*args, *fast)
    assert result.returncode == 2 and "broken.png" in result.stderr
    assert "tiny.png: 5x5 px; stylize paints images of at least 8 px on the longer side" in (
        result.stderr
    )
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a.png", "sub/b.png"]
    with Image.open(out / "sub/b.png") as b:
        assert b.size == (21, 33) and b.mode == "RGB"
    again = run_pipeline(*args, *fast)  # the outputs exist: refused before any work
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--style", "missing.jpg"), "--style missing.jpg"),
        (("--steps", "0"), "--steps"),
        (("--size", "32"), "--size"),
        (("--style-weight", "nan"), "--style-weight"),
        (("--content-weight", "0", "--style-weight", "0"), "both 0"),
        (("--features", "vgg19"), "--features vgg19 needs --vgg19 FILE"),
        (
            ("--features", "colorizer", "--vgg19", "w.safetensors", "--vgg19-sha256", "0" * 64),
            "goes with --features vgg19",
        ),
        (("--features", "learned"), "--features: invalid choice"),
    ],
)
def test_stylize_command_refuses_bad_input_in_one_line_and_writes_nothing(
    run_pipeline, tmp_path, extra, message
):
    from tests.conftest import ROOT

    style = ROOT / "pipeline/style/paintings/hokusai_great_wave.jpg"
    out = tmp_path / "out"
    args = ["stylize", str(ROOT / "docs/kite.jpg"), "--out", str(out)]
    if "--style" not in extra:
        args += ["--style", str(style)]
    result = run_pipeline(*args, *extra)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_fifo_as_the_painting_is_refused_instead_of_blocking(run_python, tmp_path):
    """Issue 47: reading a FIFO given as --style waited forever for a writer (a process of its
    own: a regression would block this one)."""
    from tests.conftest import ROOT

    fifo = tmp_path / "style.png"
    os.mkfifo(fifo)
    out = tmp_path / "out.png"
    result = run_python("-m", "pipeline", "stylize", str(ROOT / "docs/kite.jpg"), "--style",
                        str(fifo), "--out", str(out))  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"--style {fifo}: not a regular file; images are read from files" in result.stderr
    assert not out.exists()


# ----------------------------------------------------------------------- the features' choices
def test_colorizer_features_are_the_shipped_unets_first_levels_at_every_pyramid_level():
    from pipeline.methods.export import load_model
    from pipeline.shipped import shipped_colorizer
    from pipeline.style.learned import ColorizerFeatures

    net = load_model(shipped_colorizer()).net
    features = ColorizerFeatures(net, seed=0)
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0), requires_grad=True)
    layers = features(image)
    widths = [net.config.base_channels * m for m in net.config.channel_mult[:2]]
    blocks = net.config.num_res_blocks
    assert [f.shape[1] for f in layers.style] == [w for w in widths for _ in range(blocks)] * 4
    assert layers.style[0].shape[-2:] == (40, 56) and layers.style[-1].shape[-2:] == (3, 4)
    random = RandomFeatures(seed=0)(image)
    for ours, theirs in zip(layers.content, random.content, strict=True):
        assert torch.equal(ours, theirs)  # only the style layers differ from the default's
    style_loss(layers.style, [gram(f).detach() * 2 for f in layers.style]).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0  # the image can be optimised
    assert not any(p.requires_grad for p in features.parameters())
    with pytest.raises(ValueError, match="colorizer"):
        ColorizerFeatures(torch.nn.Conv2d(3, 3, 1))


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"kind": "vgg19"}, "kind vgg19 needs one"),
        ({"vgg19": "w.safetensors", "vgg19_sha256": "0" * 64}, "goes with kind vgg19"),
        ({"kind": "vgg19", "vgg19": "w.safetensors"}, "go together"),
        ({"kind": "vgg19", "vgg19": "w.safetensors", "vgg19_sha256": "abc"}, "64 hex digits"),
        ({"kind": "learned"}, "features.kind"),
    ],
)
def test_bad_feature_choices_are_refused_naming_the_key(raw, message):
    from pipeline.config import ConfigError, from_dict
    from pipeline.style.choice import FeatureChoice

    with pytest.raises(ValueError, match=re.escape(message)) as error:
        from_dict(FeatureChoice, raw, "features")
    assert "features" in str(error.value) or isinstance(error.value, ConfigError)


def test_build_features_gives_each_kind_its_network(tmp_path):
    import hashlib

    from pipeline.methods.export import read_config
    from pipeline.shipped import shipped_colorizer
    from pipeline.style.choice import FeatureChoice, build_features, features_sha256
    from pipeline.style.learned import ColorizerFeatures
    from pipeline.style.vgg import VGG19Features

    random = build_features(FeatureChoice(), seed=3)
    assert isinstance(random, RandomFeatures)
    assert torch.equal(random.style_filters, RandomFeatures(seed=3).style_filters)
    assert isinstance(build_features(FeatureChoice("colorizer"), seed=0), ColorizerFeatures)
    path, digest, _ = vgg19_file(tmp_path)
    assert isinstance(build_features(FeatureChoice("vgg19", str(path), digest), 0), VGG19Features)
    # what the pipeline records of each: the weights' sha256 (none for random filters)
    assert features_sha256(FeatureChoice()) is None
    assert features_sha256(FeatureChoice("vgg19", str(path), digest.upper())) == digest
    shipped = read_config(shipped_colorizer())["weights_sha256"]
    assert features_sha256(FeatureChoice("colorizer")) == shipped
    assert shipped == hashlib.sha256((shipped_colorizer() / "ema.pt").read_bytes()).hexdigest()


# ----------------------------------------------------------------------- the weights' search
def style_params_file(tmp_path, **sections):
    """stylize/params.yaml with absolute image paths and ``sections`` merged over its own."""
    import yaml

    from tests.conftest import ROOT

    raw = yaml.safe_load((ROOT / "stylize/params.yaml").read_text())
    for name in ("contents", "styles"):
        raw["pairs"][name] = [str(ROOT / f) for f in raw["pairs"][name]]
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_stylize_params_yaml_documents_the_defaults(tmp_path):
    from pipeline.config import RayConfig
    from pipeline.style.params import StyleSearch, load_style_params

    params = load_style_params(style_params_file(tmp_path))
    assert params.stylize == StyleOptions() and params.tune == StyleSearch()
    assert params.ray == RayConfig()
    assert params.trial_options({"stylize.style_weight": 30.0}) == StyleOptions(
        style_weight=30.0, size=256, steps=100
    )


@pytest.mark.parametrize(
    "tune, message",
    [
        (
            {"space": nest({"stylize.size": {"choice": [128]}})},
            "tune: space: unknown or untunable key",
        ),
        ({"space": nest({"stylize.passes": {"uniform": [1, 3]}})}, "use randint or choice"),
        ({"space": nest({"stylize.passes": {"choice": [2, 5]}}), "size": 64}, "stylize.passes 5"),
        (
            {"space": nest({"stylize.style_weight": {"grid": [1.0]}}), "search": "optuna"},
            "needs search",
        ),
        ({"space": {}}, "space is empty but enabled is true"),
        ({"num_samples": 0}, "tune: num_samples must be an integer >= 1, got 0"),
        ({"space": nest({"stylize.style_weight": {"loguniform": [1.0, 1e12]}})}, "style_weight"),
    ],
)
def test_bad_search_params_are_refused_naming_the_key(tmp_path, tune, message):
    from pipeline.config import ConfigError
    from pipeline.style.params import load_style_params

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_style_params(style_params_file(tmp_path, tune=tune))


def test_tuned_values_apply_only_within_the_searched_space(tmp_path):
    from pipeline.config import ConfigError
    from pipeline.style.params import load_style_params
    from pipeline.style.sweep import apply_best

    params = load_style_params(style_params_file(tmp_path))
    best = tmp_path / "best.yaml"
    best.write_text("stylize:\n  style_weight: 42.5\n")
    assert apply_best(params, best).stylize == StyleOptions(style_weight=42.5)
    for body, message in [
        ("{}\n", "holds no tuned values"),
        ("stylize:\n  steps: 3\n", "stylize.steps is not in tune.space"),
        ("stylize:\n  style_weight: 5000.0\n", "outside tune.space's loguniform"),
    ]:
        best.write_text(body)
        with pytest.raises(ConfigError, match=message):
            apply_best(params, best)
    off = load_style_params(style_params_file(tmp_path, tune={"enabled": False}))
    assert apply_best(off, best) == off  # tuning off: the file is not read


# ------------------------------------------------------------------- the pipeline: DVC and MLflow
@pytest.mark.slow
def test_stylize_pipeline_tunes_the_weights_records_each_pair_and_reruns_only_on_change(dvc_repo):
    """`dvc repro stylize/dvc.yaml` in a fresh git + DVC copy of the project, with small settings:
    the tune stage runs a Ray Tune trial per grid value, each an MLflow child run of the sweep, and
    writes the lowest mean score's value, which the stylize stage paints with; one output per pair
    at the content's size, the panels, metrics per pair and their means, one FINISHED MLflow run
    per pair with its loss curves, scores and pictures; a second repro does nothing, a changed
    search re-runs both stages."""
    import pandas as pd
    import yaml
    from mlflow.tracking import MlflowClient

    repo = dvc_repo.repo
    params_file = repo / "stylize/params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["stylize"].update(size=64, steps=6, passes=2)
    params["tune"].update(size=64, steps=4, num_samples=1,
                          space=nest({"stylize.style_weight": {"grid": [3.0, 300.0]}}))  # fmt: skip
    params["pairs"]["styles"] = params["pairs"]["styles"][:1]
    params_file.write_text(yaml.safe_dump(params))
    dvc_repo("dvc", "repro", "stylize/dvc.yaml")

    trials = pd.read_csv(repo / "stylize/reports/tune_results.csv")
    assert sorted(trials["stylize.style_weight"]) == [3.0, 300.0]
    assert (trials["status"] == "completed").all() and trials["score"].is_monotonic_increasing
    best = yaml.safe_load((repo / "stylize/reports/best_params.yaml").read_text())
    assert best == {"stylize": {"style_weight": trials["stylize.style_weight"].iloc[0]}}
    assert (repo / "stylize/reports/tune_score.png").stat().st_size > 10_000

    contents, style = params["pairs"]["contents"], params["pairs"]["styles"][0]
    names = [f"{Path(c).stem}__{Path(style).stem}" for c in contents]
    outputs = repo / "stylize/outputs"
    assert sorted(p.name for p in outputs.iterdir()) == sorted(f"{n}.png" for n in names)
    for content, name in zip(contents, names, strict=True):
        with Image.open(repo / content) as photo, Image.open(outputs / f"{name}.png") as out:
            assert out.size == photo.size
    metrics = json.loads((repo / "stylize/reports/metrics.json").read_text())
    assert metrics["stylize"]["style_weight"] == best["stylize"]["style_weight"]  # tuned
    assert metrics["features"] == {"kind": "random", "vgg19": None, "vgg19_sha256": None,
                                   "sha256": None}  # fmt: skip
    assert sorted(metrics["pairs"]) == sorted(names)
    assert metrics["style_moved"] == pytest.approx(
        np.mean([p["style_moved"] for p in metrics["pairs"].values()])
    )
    assert metrics["style_moved"] > metrics["baseline_style_moved"]  # texture, not only colour
    with Image.open(repo / "stylize/reports/panels.png") as panels:
        assert panels.height > 2 * 192

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("diffusion-pipeline-stylize")
    runs = client.search_runs([experiment.experiment_id])
    (sweep,) = [r for r in runs if r.info.run_name.startswith("stylize-tune-")
                and "mlflow.parentRunId" not in r.data.tags]  # fmt: skip
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert sweep.info.status == "FINISHED" and len(children) == 2
    assert sweep.data.metrics["best_score"] == pytest.approx(trials["score"].iloc[0])
    for child in children:
        row = trials[trials["trial_id"] == child.data.tags["tune.trial_id"]].iloc[0]
        assert child.info.status == "FINISHED"
        assert child.data.metrics["score"] == pytest.approx(row["score"])
        assert float(child.data.params["stylize.style_weight"]) == row["stylize.style_weight"]
        assert child.data.params["stylize.size"] == "64"  # the trial budget
    pair_runs = [r for r in runs if r.info.run_name.startswith("stylize-") and r not in children
                 and r.info.run_id != sweep.info.run_id]  # fmt: skip
    assert sorted(r.info.run_name for r in pair_runs) == sorted(f"stylize-{n}" for n in names)
    for run in pair_runs:
        pair = metrics["pairs"][run.info.run_name.removeprefix("stylize-")]
        assert run.info.status == "FINISHED" and pair["mlflow_run_id"] == run.info.run_id
        assert run.data.metrics["style_moved"] == pytest.approx(pair["style_moved"])
        assert float(run.data.params["stylize.style_weight"]) == best["stylize"]["style_weight"]
        assert len(client.get_metric_history(run.info.run_id, "loss")) >= 2 * 6
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"panel.png", "stylized.png"} <= artifacts
        assert run.data.tags["git_commit"] != "unknown"

    again = dvc_repo("dvc", "repro", "stylize/dvc.yaml")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
    params["tune"]["space"] = nest({"stylize.style_weight": 30.0})  # a fixed value: one trial
    params_file.write_text(yaml.safe_dump(params))
    rerun = dvc_repo("dvc", "repro", "stylize/dvc.yaml")
    assert "Running stage 'stylize/dvc.yaml:tune'" in rerun.stdout
    assert "Running stage 'stylize/dvc.yaml:stylize'" in rerun.stdout
    metrics = json.loads((repo / "stylize/reports/metrics.json").read_text())
    assert metrics["stylize"]["style_weight"] == 30.0


# ------------------------------------------------------------------------- VGG-19 from a user file
def write_safetensors(path, tensors, *, dtype="F32"):
    """A safetensors file written by hand (the format, not the package): 8-byte header length,
    JSON header, raw little-endian bytes."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, tensor in tensors.items():
        blob = tensor.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}  # fmt: skip
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_safetensors_are_read_without_pickle_and_checked(tmp_path):
    from pipeline.style.vgg import WeightsError, read_safetensors

    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([-1.5])}
    good = tmp_path / "good.safetensors"
    write_safetensors(good, tensors)
    read = read_safetensors(good)
    assert read.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert torch.equal(read[name], tensor)
    data = good.read_bytes()
    for i, (broken, message) in enumerate(
        [
            (data[:5], "5 bytes, not a safetensors file"),
            ((10**9).to_bytes(8, "little") + data[8:], "header length 1000000000 does not fit"),
            (data[:-4], "tensor 'b' has a bad dtype, shape or byte range"),  # bytes past the end
            (b"\x80\x04\x95" + data[3:], "does not fit the file; not safetensors"),  # a pickle
            (data[:9] + b"X" + data[10:], "unreadable safetensors header"),
        ]
    ):
        (tmp_path / f"case{i}").write_bytes(broken)
        with pytest.raises(WeightsError, match=message):
            read_safetensors(tmp_path / f"case{i}")


def crafted_safetensors(path, header, data=b"\0" * 8):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize(
    "header, message",
    [
        ([1, 2], "the safetensors header is not a JSON object"),
        ({"a": "F32"}, "tensor 'a' has a bad dtype, shape or byte range"),
        (
            {"a": {"dtype": "F32", "shape": [-2, -1], "data_offsets": [0, 8]}},
            "tensor 'a' has a bad",
        ),
        ({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, "tensor 'a' has a bad"),
        ({"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, "tensor 'a' has a bad"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}}, "tensor 'a' has a bad"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [True, 8]}}, "tensor 'a' has a bad"),
    ],
)
def test_crafted_safetensors_headers_get_one_line(tmp_path, header, message):
    """Issue 47, class 6: headers of the wrong types are a WeightsError naming the file."""
    from pipeline.style.vgg import WeightsError, read_safetensors

    path = crafted_safetensors(tmp_path / "w.safetensors", header)
    with pytest.raises(WeightsError, match=re.escape(f"{path}: {message}")):
        read_safetensors(path)


def test_weights_files_are_checked_before_they_are_read(tmp_path):
    """Issue 47, classes 2 and 3: NaN weights, a device, a FIFO and an oversized file are refused
    (without reading them) with one line naming the file."""
    from pipeline.style.vgg import MAX_WEIGHTS_BYTES, WeightsError, load_vgg19, read_safetensors

    nan = torch.tensor([1.0, float("nan")])
    write_safetensors(tmp_path / "nan.safetensors", {"a": nan})
    with pytest.raises(WeightsError, match="tensor 'a' holds NaN or infinite values"):
        read_safetensors(tmp_path / "nan.safetensors")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as f:
        f.truncate(MAX_WEIGHTS_BYTES + 1)  # sparse: no disk used
    for path, message in [
        ("/dev/zero", "/dev/zero: not a regular file"),
        (fifo, f"{fifo}: not a regular file"),
        (huge, f"{huge}: 1,073,741,825 bytes, more than the 1,073,741,824"),
        (tmp_path / "missing", "cannot read it"),
    ]:
        with pytest.raises(WeightsError, match=re.escape(message)):
            read_safetensors(path)
        with pytest.raises(WeightsError, match=re.escape(message)):
            load_vgg19(path, "0" * 64)


def vgg19_file(tmp_path):
    """Random VGG-19 weights (up to conv5_1) under torchvision's names, and their sha256."""
    import hashlib

    from pipeline.style.vgg import CONVS

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for _, index, c_in, c_out in CONVS:
        tensors[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * 0.05
        tensors[f"features.{index}.bias"] = torch.zeros(c_out)
    path = tmp_path / "vgg19.safetensors"
    write_safetensors(path, tensors)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), tensors


@pytest.mark.slow  # several command runs: keeps make test-fast under 5 minutes
def test_vgg19_loads_checked_weights_and_gives_gatys_layers(tmp_path, run_pipeline):
    from pipeline.style.vgg import STYLE_LAYERS, WeightsError, load_vgg19

    path, digest, tensors = vgg19_file(tmp_path)
    model = load_vgg19(path, digest)
    assert torch.equal(model.convs[9].weight, tensors["features.21.weight"])  # conv4_2
    layers = model(torch.rand(1, 3, 32, 48))
    assert [f.shape[1] for f in layers.style] == [64, 128, 256, 512, 512]
    assert [f.shape[-2:] for f in layers.style] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert len(STYLE_LAYERS) == 5 and layers.content[0].shape == (1, 512, 4, 6)
    with pytest.raises(WeightsError, match="sha256"):
        load_vgg19(path, "0" * 64)
    del tensors["features.28.weight"]
    write_safetensors(tmp_path / "partial.safetensors", tensors)
    import hashlib

    partial = hashlib.sha256((tmp_path / "partial.safetensors").read_bytes()).hexdigest()
    with pytest.raises(WeightsError, match=r"features\.28\.weight \(conv5_1\).*missing"):
        load_vgg19(tmp_path / "partial.safetensors", partial)

    from tests.conftest import ROOT

    out = tmp_path / "vgg.png"
    args = ["stylize", str(ROOT / "docs/kite.jpg"), "--style",
            str(ROOT / "pipeline/style/paintings/kandinsky_composition_viii.jpg"), "--out",
            str(out), "--size", "64", "--steps", "3", "--vgg19", str(path)]  # fmt: skip
    alone = run_pipeline(*args)
    assert alone.returncode == 2 and "--vgg19-sha256" in alone.stderr and not out.exists()
    result = run_pipeline(*args, "--vgg19-sha256", digest)
    assert result.returncode == 0, result.stderr
    assert out.is_file()

"""FID/KID scoring with a real FeatureNet on the real default data; sampling on real Ray tasks."""

import json

import numpy as np
import pytest
import ray
import torch
import torch.nn.functional as F

from pipeline.config import DataConfig, EvalConfig, FeatureNetConfig
from pipeline.data.dataset import ProcessedImages
from pipeline.evaluate.backends import load_extractor
from pipeline.evaluate.featurenet import load_featurenet, save_featurenet, train_featurenet
from pipeline.evaluate.inception import WEIGHTS_NAME, WEIGHTS_URL, InceptionV3FID
from pipeline.evaluate.sampling import generate
from pipeline.evaluate.scores import ImageFeatures, cached_features, extract, scores
from pipeline.io import file_digest
from pipeline.methods.ddpm import build_unet
from pipeline.methods.export import export_model, load_model
from pipeline.models import make_ema
from tests.factories import TINY


@pytest.fixture(scope="module")
def processed(processed_data):
    return processed_data(DataConfig())


@pytest.fixture(scope="module")
def featurenet(processed, tmp_path_factory):
    config = FeatureNetConfig(epochs=2)
    net, result = train_featurenet(processed, config, progress=False)
    out = save_featurenet(net, config, result, tmp_path_factory.mktemp("fn") / "featurenet")
    return out, result


def test_featurenet_learns_the_digits_and_round_trips(featurenet, processed):
    out, result = featurenet
    assert result.test_accuracy > 0.9 and result.epochs == 2  # 2 epochs on 4,000 digits
    net, sha256, meta = load_featurenet(out)
    assert len(sha256) == 64 and meta["test_accuracy"] == result.test_accuracy
    x = torch.from_numpy(np.asarray(ProcessedImages(processed, "test").images[:5]))
    assert ImageFeatures(net, "f")(x).shape == (5, 128)


def test_fid_orders_real_degraded_and_noise(featurenet, processed, tmp_path):
    net, sha256, _ = load_featurenet(featurenet[0])
    extractor = ImageFeatures(net, f"featurenet:{sha256}")
    # two held-out sets of the same distribution (mnist-5k's file is sorted by label, so halves of
    # one split would differ in digits): val (~500) and test (498)
    val = np.asarray(ProcessedImages(processed, "val").images)
    test = np.asarray(ProcessedImages(processed, "test").images)  # (498, 1, 28, 28) uint8
    x = torch.from_numpy(test).float()
    blurred = F.avg_pool2d(x, 5, stride=1, padding=2)  # a 5x5 box blur
    degraded = (blurred + torch.randn_like(x) * 20).clamp(0, 255).round().to(torch.uint8).numpy()
    noise = np.random.default_rng(0).integers(0, 256, test.shape, dtype=np.uint8)

    real = cached_features(extractor, val, tmp_path)
    fid = {name: scores(real, extract(extractor, imgs))["fid"] for name, imgs in
           (("real", test), ("degraded", degraded), ("noise", noise))}  # fmt: skip
    assert 3 * fid["real"] < fid["degraded"] and 5 * fid["degraded"] < fid["noise"], fid
    # the cache returns the same features without recomputing
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert torch.equal(cached_features(extractor, val, tmp_path), real)
    # keyed by the pixels actually read: other images are a miss, never the cached features
    assert not torch.equal(cached_features(extractor, np.zeros_like(val), tmp_path), real)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_our_fid_equals_torchmetrics_and_kid_is_near_zero_for_one_distribution():
    rng = torch.Generator().manual_seed(0)
    real = torch.randn(300, 16, generator=rng, dtype=torch.float64)
    same = torch.randn(300, 16, generator=rng, dtype=torch.float64)
    shifted = same + 1.0
    close, far = scores(real, same, kid_subset_size=100), scores(real, shifted, kid_subset_size=100)
    for result in (close, far):
        assert result["fid"] == pytest.approx(result["fid_torchmetrics"], rel=1e-6, abs=1e-9)
    assert abs(close["kid"]) < 3 * close["kid_std"] + 1e-3 and far["kid"] > 10 * close["kid_std"]
    assert far["fid"] == pytest.approx(16.0, rel=0.15)  # |mu shift|^2 = 16, same covariance


def test_generation_spreads_batches_over_ray_and_is_seeded(ray_cluster, tmp_path):
    torch.manual_seed(0)
    ema = make_ema(build_unet(TINY))
    models = export_model(ema.module.state_dict(), step=0, params=TINY, out_dir=tmp_path / "models")
    config = EvalConfig(num_samples=10, batch_size=4, steps=3, num_workers=2)
    model = load_model(models)
    first = generate(model, config)
    assert first.shape == (10, 1, 28, 28) and first.dtype == np.uint8
    shared = ray.put(model)  # one copy in the object store, read by every task of both calls
    np.testing.assert_array_equal(first, generate(shared, config))  # same seed, same images
    assert not np.array_equal(first[:2], first[4:6])  # each batch has its own seed
    other = generate(shared, EvalConfig(num_samples=10, batch_size=4, steps=3, seed=1))
    assert not np.array_equal(first, other)
    assert json.loads((models / "config.json").read_text())["step"] == 0


def test_inception_backend_runs_from_a_weights_file_without_download(tmp_path):
    torch.manual_seed(0)
    state = InceptionV3FID().state_dict()  # random weights, saved like the real file
    assert state["fc.weight"].shape == (1008, 2048)
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state  # torch-fidelity's layer names
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    extractor, report = load_extractor(
        EvalConfig(features="inception", inception_weights=str(path)), None
    )
    assert report == {"weights_sha256": file_digest(path, "sha256")}
    assert extractor.identity.startswith(f"inception:{report['weights_sha256']}:")  # + code digest
    gray = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    features = extract(extractor, gray)
    assert features.shape == (3, 2048) and torch.isfinite(features).all()
    rgb = extract(extractor, np.repeat(gray, 3, axis=1))  # grayscale is repeated to 3 channels
    torch.testing.assert_close(features, rgb)


def test_missing_inception_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as error:
        load_extractor(
            EvalConfig(features="inception", inception_weights=str(tmp_path / "nope.pth")), None
        )
    message = str(error.value)
    assert "never downloaded at run time" in message and str(tmp_path / "nope.pth") in message
    assert WEIGHTS_URL in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_NAME) in message


def test_each_family_says_its_own_scores_after_fid():
    """Issue 44: the evaluate stage's console lines of a family's extra scores come from its
    evaluation hook (the registry's), not from the stage."""
    from pipeline.config import EvalConfig
    from pipeline.registry import FAMILIES, evaluation_class

    guided = {"class_accuracy": 0.912, "guidance_scale": 2.0}
    crops = {f"{p}{k}": 1.0 for p in ("", "gray_") for k in
             ("fid_colour", "psnr", "ssim", "ciede2000", "ciede2000_relative", "hue_accuracy",
              "colourfulness")}  # fmt: skip
    colour = {**crops, "colourfulness_truth": 30.0, "diversity_ab": 4.2}
    photos = {f"photo_{k}": 0.5 for k in ("fid_colour", "ciede2000_relative", "hue_accuracy",
                                          "chroma_ratio")}  # fmt: skip
    config = EvalConfig(features="colour")
    said = {name: evaluation_class(name).summary({**guided, **colour}, config) for name in FAMILIES}
    assert said["ddpm"] == said["vae"] == said["dcgan"] == []
    assert said["ddpm_cfg"] == [
        "  class accuracy 0.912 at guidance w 2 (FeatureNet's classifier on the samples)"
    ]
    lines = said["ddpm_color"]
    assert [line.split()[0] for line in lines] == ["model", "gray", "diversity_ab"]
    with_photos = evaluation_class("ddpm_color").summary(
        {**colour, **photos, "photo_gray_fid_colour": 9.0}, config
    )
    assert "whole test photos (0 at most)" in with_photos[3]  # EvalConfig().colorizer.photos
    assert with_photos[4].split()[:2] == ["command", "fid_colour"] and "gray" in with_photos[-1]

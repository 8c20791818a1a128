"""Old-print degradations of a colorizer's lightness (pipeline.data.degrade, ``train.degrade``):
each against its closed form, the random draws' bounds, and the colorizer's training batches."""

import math
import re

import pytest
import torch

from pipeline.color import split_lab
from pipeline.config import ConfigError, Params, from_dict
from pipeline.data.degrade import degrade, gaussian_blur, tone_curve
from pipeline.registry import method_class

OFF = {"p": 1.0, "blur": 0.0, "fade": 0.0, "gamma": 0.0, "grain": 0.0}


def test_blur_of_an_impulse_is_the_normalised_gaussian():
    x = torch.zeros(2, 1, 21, 21, dtype=torch.float64)
    x[:, :, 10, 10] = 1.0
    sigma = torch.tensor([1.0, 2.5])
    out = gaussian_blur(x, sigma)
    offsets = torch.arange(-10, 11, dtype=torch.float64)
    for k, s in enumerate(sigma.tolist()):
        radius = math.ceil(3 * 2.5)  # one kernel width for the batch: the widest sigma's
        g = torch.exp(-0.5 * (offsets / s) ** 2) * (offsets.abs() <= radius)
        g = g / g.sum()
        torch.testing.assert_close(out[k, 0], g[:, None] * g[None, :])
    constant = torch.full((2, 1, 9, 9), 37.0)  # reflect padding: a constant stays constant
    torch.testing.assert_close(gaussian_blur(constant, sigma), constant)
    torch.testing.assert_close(gaussian_blur(x, torch.zeros(2)), x, rtol=0, atol=0)


def test_tone_curve_closed_form():
    L = torch.tensor([0.0, 25.0, 50.0, 100.0]).reshape(1, 1, 1, 4)
    out = tone_curve(L, torch.tensor([0.1]), torch.tensor([0.8]), torch.tensor([2.0]))
    expected = 100 * (0.1 + 0.7 * (L / 100) ** 2)
    torch.testing.assert_close(out, expected)


def test_degrade_draws_within_its_bounds_and_repeats_with_the_seed():
    L = torch.linspace(0, 100, 32 * 32).reshape(1, 1, 32, 32).repeat(64, 1, 1, 1)
    torch.testing.assert_close(degrade(L, **OFF), L)  # every maximum 0: unchanged
    torch.testing.assert_close(degrade(L, **OFF | {"p": 0.0, "fade": 0.3, "grain": 9}), L)
    torch.manual_seed(0)
    faded = degrade(L, **OFF | {"fade": 0.3})
    lows, highs = faded.amin(dim=(1, 2, 3)), faded.amax(dim=(1, 2, 3))
    assert (lows >= 0).all() and (lows <= 30 + 1e-4).all() and (highs >= 70 - 1e-4).all()
    assert lows.max() > 20 and highs.min() < 80  # strengths spread over [0, fade]
    torch.manual_seed(0)
    grained = degrade(L, **OFF | {"grain": 10.0})
    std = (grained - L)[:, :, 8:24, 8:24].std(dim=(1, 2, 3))  # away from the clamp at 0 and 100
    assert std.max() < 10.5 and std.max() > 8 and std.min() < 2
    half = OFF | {"p": 0.5, "blur": 2.0, "fade": 0.2, "gamma": 0.5, "grain": 5.0}
    torch.manual_seed(3)
    first = degrade(L, **half)
    torch.manual_seed(3)
    torch.testing.assert_close(degrade(L, **half), first, rtol=0, atol=0)
    assert first.min() >= 0 and first.max() <= 100
    untouched = (first == L).flatten(1).all(dim=1).double().mean()  # all four skipped: 1/16
    assert 0.0 < untouched < 0.25


def colorizer_params(degrade_config):
    from tests.test_colorize import TINY

    model = {**TINY["model"], "family": "regression_color"}
    train = {**TINY["train"], "degrade": degrade_config}
    return from_dict(Params, {**TINY, "model": model, "train": train})


def test_a_colorizer_trains_on_degraded_lightness_and_clean_colours():
    from tests.test_colorize import two_images

    batch = two_images().repeat(16, 1, 1, 1)
    clean = method_class("regression_color")(colorizer_params({}), torch.device("cpu"))
    ab, condition = clean.split(batch)
    truth_condition, truth_ab = split_lab(batch)
    torch.testing.assert_close(condition, truth_condition)  # off by default
    worn = method_class("regression_color")(
        colorizer_params({"p": 1.0, "fade": 0.3, "grain": 8.0}), torch.device("cpu")
    )
    torch.manual_seed(0)
    ab_worn, condition_worn = worn.split(batch)
    torch.testing.assert_close(ab_worn, truth_ab, rtol=0, atol=0)  # the target stays clean
    assert (condition_worn - truth_condition).abs().mean() > 0.05  # L* / 50 units: > 2.5 L*
    assert condition_worn.min() >= -1 and condition_worn.max() <= 1


@pytest.mark.parametrize(
    "config, message",
    [
        ({"blur": 5}, "train.degrade: blur must be in [0, 4], got 5.0"),
        ({"grain": -1}, "train.degrade: grain must be in [0, 25], got -1.0"),
        ({"fade": float("nan")}, "train.degrade.fade must be a finite number, got nan"),
        ({"p": 1.5}, "train.degrade: p must be in [0, 1], got 1.5"),
        ({"tint": 1}, "unknown key(s) train.degrade.tint; allowed: p, blur, fade, gamma, grain"),
    ],
)
def test_degrade_config_is_checked(config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        colorizer_params(config)


def test_degrade_needs_a_colorizer():
    raw = {"train": {"degrade": {"grain": 5}}}
    with pytest.raises(ConfigError, match="train.degrade degrades a colorizer's lightness"):
        from_dict(Params, raw)
    from_dict(Params, {"train": {"degrade": {"grain": 5, "p": 0}}})  # never applied: accepted

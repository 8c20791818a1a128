"""EMA of weights: the warmed-up recursion, computed by hand, and its errors."""

import pytest
import torch
from torch import nn

from pipeline.models import ema_decay, make_ema


def test_ema_follows_the_warmed_up_recursion():
    model = nn.Linear(1, 1, bias=False)
    ema = make_ema(model, decay=0.9)
    values = [1.0, 3.0, -2.0, 5.0, 0.5]
    expected = None
    for n, v in enumerate(values):
        model.weight.data.fill_(v)
        ema.update_parameters(model)
        if expected is None:
            expected = v  # the first update copies the weights
        else:
            d = min(0.9, (1 + n) / (10 + n))  # n updates were averaged before this one
            expected = d * expected + (1 - d) * v
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert ema_decay(0.9, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.9, 10_000) == 0.9


def test_ema_without_warmup_uses_the_constant_decay_and_averages_buffers():
    model = nn.BatchNorm1d(1)
    ema = make_ema(model, decay=0.5, warmup=False)
    model.running_mean.fill_(2.0)
    model.weight.data.fill_(2.0)
    ema.update_parameters(model)  # copy
    model.running_mean.fill_(4.0)
    model.weight.data.fill_(4.0)
    ema.update_parameters(model)
    assert ema.module.weight.item() == pytest.approx(3.0)
    assert ema.module.running_mean.item() == pytest.approx(3.0)
    assert ema(torch.ones(2, 1)).shape == (2, 1)


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match=f"EMA decay must be in \\[0, 1\\), got {decay}"):
        make_ema(nn.Linear(1, 1), decay=decay)

"""pipeline.color: sRGB <-> CIE L*a*b* (D65) against reference values and as a round trip, and
Hasler and Suesstrunk's colourfulness."""

import pytest
import torch

from pipeline.color import colourfulness, lab_to_rgb, rgb_to_lab


def pixel(r, g, b):
    return torch.tensor([r, g, b], dtype=torch.float64).reshape(1, 3, 1, 1)


@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),  # D65 white
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),  # sRGB primaries (Lindbloom's calculator)
        ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
        ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
        ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),  # mid gray: L* of Y = 0.2140
    ],
)
def test_rgb_to_lab_matches_reference_values(rgb, lab):
    got = rgb_to_lab(pixel(*rgb)).flatten()
    torch.testing.assert_close(got, torch.tensor(lab, dtype=torch.float64), rtol=0, atol=0.02)


def test_lab_round_trip_over_an_srgb_grid_and_gray_has_no_colour():
    levels = torch.linspace(0, 1, 17, dtype=torch.float64)
    grid = torch.cartesian_prod(levels, levels, levels).T.reshape(1, 3, 17 * 17, 17)
    lab = rgb_to_lab(grid)
    torch.testing.assert_close(lab_to_rgb(lab), grid, rtol=0, atol=1e-9)
    assert (
        lab[:, 0].min() >= 0 and lab[:, 0].max() <= 100 + 1e-4
    )  # white: Y = 1.0000001 by the matrix
    gray = levels.reshape(1, 1, 17, 1).expand(1, 3, 17, 1)
    assert rgb_to_lab(gray)[:, 1:].abs().max() < 1e-4  # a* = b* = 0 for R = G = B
    assert torch.all(rgb_to_lab(gray)[0, 0, 1:, 0] > rgb_to_lab(gray)[0, 0, :-1, 0])  # L* rises


def test_lab_to_rgb_clips_out_of_gamut_colours():
    out = lab_to_rgb(torch.tensor([50.0, 120.0, -120.0], dtype=torch.float64).reshape(1, 3, 1, 1))
    assert out.min() >= 0 and out.max() <= 1


def test_colourfulness_is_zero_for_gray_and_grows_with_saturation():
    gray = torch.rand(2, 1, 8, 8).expand(2, 3, 8, 8)
    assert colourfulness(gray).abs().max() < 1e-4
    halves = torch.zeros(1, 3, 8, 8)
    halves[:, 0, :, :4], halves[:, 1, :, 4:] = 1.0, 1.0  # red | green
    # rg is +255 on one half, -255 on the other; yb is 127.5 everywhere: sigma 255, mu 127.5
    assert colourfulness(halves).item() == pytest.approx(255 + 0.3 * 127.5, rel=1e-6)
    lab = rgb_to_lab(torch.rand(4, 3, 8, 8, dtype=torch.float64))
    values = [colourfulness(lab_to_rgb(lab * torch.tensor([1, s, s]).reshape(3, 1, 1)))
              for s in (0.0, 0.5, 1.0)]  # fmt: skip
    assert torch.all(values[0] < values[1]) and torch.all(values[1] < values[2])


def test_split_then_colorized_is_the_identity_and_gamut_fitting_keeps_lightness():
    from pipeline.color import colorized, join_lab, lightness, split_lab

    rgb = torch.rand(3, 3, 8, 8) * 2 - 1
    condition, ab = split_lab(rgb)
    assert condition.shape == (3, 1, 8, 8) and ab.shape == (3, 2, 8, 8) and ab.abs().max() <= 1
    torch.testing.assert_close(lightness(rgb), condition)
    torch.testing.assert_close(colorized(condition, ab), rgb, rtol=0, atol=1e-4)
    # an impossible chroma at every lightness: the output keeps L* and stays in gamut
    L = torch.linspace(1, 99, 8, dtype=torch.float64).reshape(1, 1, 1, 8).expand(1, 1, 8, 8)
    wild = torch.stack(torch.meshgrid(torch.linspace(-300, 300, 8), torch.linspace(-300, 300, 8),
                                      indexing="ij")).unsqueeze(0).double()  # fmt: skip
    out = join_lab(L, wild)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(rgb_to_lab(out)[:, :1], L, rtol=0, atol=0.05)
    assert colourfulness(out.float()).item() > 20  # chroma is reduced, not dropped

"""Colour spaces and colour measures for colorization (issue 13), in torch, on (..., 3, H, W).

sRGB (IEC 61966-2-1) <-> CIE 1976 L*a*b* under the D65 white point, the conversion of scikit-image
and kornia:

    linear c = c / 12.92                     if c <= 0.04045
             = ((c + 0.055) / 1.055) ^ 2.4   otherwise                      (sRGB transfer)
    (X, Y, Z) = M (R, G, B) (linear), M the sRGB->XYZ matrix for D65
    f(t) = t ^ (1/3) if t > (6/29)^3 else t / (3 (6/29)^2) + 4/29
    L* = 116 f(Y / Yn) - 16,  a* = 500 (f(X / Xn) - f(Y / Yn)),  b* = 200 (f(Y / Yn) - f(Z / Zn))

and colourfulness M = sigma_rgyb + 0.3 mu_rgyb (Hasler and Suesstrunk 2003, eq. 3), with
rg = R - G and yb = (R + G) / 2 - B on the 0-255 scale.

Colorization models work in Lab on the [-1, 1] scale of every network here: the condition is
L* / 50 - 1 (``lightness``), the target ab / AB_SCALE (``split_lab``); ``join_lab`` puts a prediction
back onto its L* and reduces the chroma of out-of-gamut pixels at constant L* and hue, so that an
output keeps its input's lightness exactly instead of shifting it by clipping RGB.
"""

from __future__ import annotations

import torch

EPSILON = (6 / 29) ** 3  # below it f is linear (CIE 1976)
WHITE_D65 = (0.95047, 1.0, 1.08883)  # Xn, Yn, Zn
RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """matrix (3, 3) applied to the channel axis (-3) of x."""
    return torch.einsum("ij,...jhw->...ihw", matrix.to(x), x)


def _white(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(WHITE_D65, dtype=x.dtype, device=x.device).reshape(3, 1, 1)


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function undone: gamma-encoded [0, 1] -> linear light."""
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """Linear light -> gamma-encoded sRGB (the inverse of ``srgb_to_linear``)."""
    c = c.clamp(min=0)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (..., 3, H, W) -> L*a*b* (L* in [0, 100], a*, b* about [-110, 110])."""
    xyz = _mix(torch.tensor(RGB_TO_XYZ, dtype=torch.float64), srgb_to_linear(rgb)) / _white(rgb)
    f = torch.where(
        xyz > EPSILON, xyz.clamp(min=EPSILON) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29
    )
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_linear(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* (..., 3, H, W) -> linear RGB, unclipped: outside [0, 1] for out-of-gamut colours."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-3)
    xyz = torch.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _white(lab)
    return _mix(torch.linalg.inv(torch.tensor(RGB_TO_XYZ, dtype=torch.float64)), xyz)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* (..., 3, H, W) -> sRGB in [0, 1], out-of-gamut colours clipped (``rgb_to_lab``'s
    inverse inside the gamut)."""
    return linear_to_srgb(lab_to_linear(lab)).clamp(0, 1)


AB_SCALE = 110.0  # |a*|, |b*| of sRGB colours stay below it: ab / AB_SCALE is in [-1, 1]
GAMUT_TOLERANCE = 1e-6  # linear RGB this far outside [0, 1] still counts as in gamut
GAMUT_ITERATIONS = 12  # bisection steps of the chroma factor: 2^-12 of the chroma


def lightness(rgb: torch.Tensor) -> torch.Tensor:
    """The colorization condition of images in [-1, 1], (N, 3, H, W) -> (N, 1, H, W): L* / 50 - 1.
    A gray image (R = G = B) has the same condition as any colour image of its L*."""
    return rgb_to_lab((rgb.double() + 1) / 2)[:, :1].float() / 50 - 1


def split_lab(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [-1, 1], (N, 3, H, W) -> (condition L* / 50 - 1 (N, 1, H, W), target ab / AB_SCALE
    (N, 2, H, W)), float32."""
    lab = rgb_to_lab((rgb.double() + 1) / 2).float()
    return lab[:, :1] / 50 - 1, lab[:, 1:] / AB_SCALE


def fit_chroma(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """ab (N, 2, H, W) scaled per pixel by the largest k in [0, 1] (to 2^-GAMUT_ITERATIONS) that
    keeps (L*, k a*, k b*) inside the sRGB gamut; L* (N, 1, H, W). k = 0 (gray) always fits."""
    L, ab = L.double(), ab.double()

    def fits(k: torch.Tensor) -> torch.Tensor:
        linear = lab_to_linear(torch.cat([L, k * ab], dim=1))
        return ((linear >= -GAMUT_TOLERANCE) & (linear <= 1 + GAMUT_TOLERANCE)).all(1, True)

    low, high = torch.zeros_like(L), torch.ones_like(L)
    inside = fits(high)
    for _ in range(GAMUT_ITERATIONS):
        mid = (low + high) / 2
        ok = fits(mid)
        low, high = torch.where(ok, mid, low), torch.where(ok, high, mid)
    return torch.where(inside, ab, low * ab)


def join_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """L* in [0, 100] (N, 1, H, W) and a*b* (N, 2, H, W) -> sRGB in [0, 1] (float64), chroma reduced
    into the gamut (``fit_chroma``) so that the output's L* is the given one."""
    L = L.double().clamp(0, 100)
    return lab_to_rgb(torch.cat([L, fit_chroma(L, ab)], dim=1))


def grayed(rgb: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1], (N, 3, H, W), with a* = b* = 0: their own L* as gray, what a colorizer
    sees (and the "gray" baseline)."""
    return colorized(lightness(rgb), torch.zeros_like(rgb[:, :2]))


def colorized(condition: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """A model's output as images in [-1, 1], (N, 3, H, W): ``join_lab`` of the condition's L*
    (condition + 1) * 50 and the predicted ab * AB_SCALE."""
    rgb = join_lab((condition.double() + 1) * 50, ab.double().clamp(-1, 1) * AB_SCALE)
    return (rgb * 2 - 1).float()


def colourfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk's M of sRGB images in [0, 1], (N, 3, H, W) -> (N,): 0 for gray,
    about 33 "moderately", 59 "quite", 82 "highly", 109 "extremely colourful"."""
    r, g, b = (255 * rgb).unbind(-3)
    rg, yb = (r - g).flatten(-2), (0.5 * (r + g) - b).flatten(-2)
    sigma = (rg.var(-1, unbiased=False) + yb.var(-1, unbiased=False)).sqrt()
    mu = (rg.mean(-1) ** 2 + yb.mean(-1) ** 2).sqrt()
    return sigma + 0.3 * mu

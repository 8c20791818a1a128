"""Which features a stylization takes its Gram matrices of: the ``features`` section of
stylize/params.yaml and the command's ``--features``/``--vgg19`` (``FeatureChoice``), and the one
function that builds them (``build_features``) for the command, the pipeline's stages and the
benchmarks, and the sha256 of the weights they hold (``features_sha256``), which the pipeline
records with every result: DVC does not watch pipeline/colorizer for the stylize stages (it is the
output of colorize/shipped/dvc.yaml, and depending on it would make a stylize repro reproduce the
colorizer's training).

    random     fixed random multi-scale filters (pipeline.style.features; the default: offline,
               and the better of the two offline choices, benchmarks/stylize_features.py)
    colorizer  the first levels of the colorizer that ships with the project, learned on its photo
               set (pipeline.style.learned)
    vgg19      Gatys et al.'s network, from a weights file the user supplies, sha256-checked
               (pipeline.style.vgg)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

from pipeline.config.loader import section

SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class FeatureChoice:
    """The features of a stylization (module docstring); validated on construction (ValueError
    naming the key)."""

    kind: Literal["random", "colorizer", "vgg19"] = "random"
    vgg19: str | None = None  # kind vgg19: the safetensors file
    vgg19_sha256: str | None = None  # its sha256 (64 hex digits), checked before it is read

    def __post_init__(self) -> None:
        with section("features"):
            if (self.kind == "vgg19") != (self.vgg19 is not None):
                raise ValueError(
                    f"vgg19 {self.vgg19!r} with kind {self.kind!r}: a weights file goes with kind "
                    "vgg19, and kind vgg19 needs one"
                )
            if (self.vgg19 is None) != (self.vgg19_sha256 is None):
                raise ValueError("vgg19 and vgg19_sha256 go together: the file and its sha256")
            if self.vgg19_sha256 is not None and not SHA256.fullmatch(self.vgg19_sha256):
                raise ValueError(f"vgg19_sha256 must be 64 hex digits, got {self.vgg19_sha256!r}")


def build_features(choice: FeatureChoice, seed: int, device: str = "cpu") -> nn.Module:
    """The features of ``choice`` on ``device``, frozen; ``seed`` draws the random filters (the
    content layers of ``colorizer`` too)."""
    if choice.kind == "vgg19":
        from pipeline.style.vgg import load_vgg19

        return load_vgg19(choice.vgg19, choice.vgg19_sha256).to(device)
    if choice.kind == "colorizer":
        from pipeline.methods.export import load_model
        from pipeline.shipped import shipped_colorizer
        from pipeline.style.learned import ColorizerFeatures

        return ColorizerFeatures(load_model(shipped_colorizer(), device).net, seed=seed).to(device)
    from pipeline.style.features import RandomFeatures

    return RandomFeatures(seed=seed).to(device)


def features_sha256(choice: FeatureChoice) -> str | None:
    """The sha256 of the weights ``choice``'s features hold: the VGG-19 file's, the shipped
    colorizer's (from its checked config.json); None for random filters (the seed fixes them)."""
    if choice.kind == "vgg19":
        return choice.vgg19_sha256.lower()
    if choice.kind == "colorizer":
        from pipeline.methods.export import read_config
        from pipeline.shipped import shipped_colorizer

        return read_config(shipped_colorizer())["weights_sha256"]
    return None

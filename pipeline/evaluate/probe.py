"""The milestone metric of tuning: ``fid_<eval.features>`` of a small fixed sample set.

Training losses are not comparable across beta schedules or prediction types; a Fréchet distance
between generated and real images is. Every trial (and every milestone of a trial) scores samples
drawn from the same seeded x_T with the same DDIM steps (a colorizer: colorizations of the same
first validation images), against the features of the validation split in the feature space of
``eval.features`` (featurenet for the default pipeline, colour for colorizers); the test split
stays untouched for the final evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import EvalConfig
from pipeline.data.dataset import ProcessedImages
from pipeline.evaluate.backends import load_extractor
from pipeline.evaluate.frechet import feature_statistics, frechet_distance
from pipeline.evaluate.scores import extract
from pipeline.scene import colour


def probe_metric(config: EvalConfig) -> str:
    """The name tuning reports and ranks on (lower is better): ``fid_<eval.features>``."""
    return f"fid_{config.features}"


class FIDProbe:
    """FID (eq. 6 of Heusel et al. 2017, in the ``eval.features`` space) of uint8 images against
    ``split``."""

    def __init__(
        self,
        config: EvalConfig,
        featurenet_dir: str | Path | None,
        processed_dir: str | Path,
        split: str = "val",
    ):
        self.extractor, _ = load_extractor(config, featurenet_dir)
        real = colour(ProcessedImages(processed_dir, split).images)  # (N, C, H, W) uint8
        self.real_statistics = feature_statistics(extract(self.extractor, real, desc=None))

    def __call__(self, images: np.ndarray) -> float:
        """FID of ``images`` (uint8, (N, C, H, W), N >= 2) against the reference split."""
        fake = feature_statistics(extract(self.extractor, images, desc=None))
        return frechet_distance(*self.real_statistics, *fake)

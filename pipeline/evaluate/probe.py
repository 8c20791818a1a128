"""The milestone metric of tuning: ``fid_featurenet`` of a small fixed sample set.

Training losses are not comparable across beta schedules or prediction types; a Fréchet distance
between generated and real images is. Every trial (and every milestone of a trial) scores samples
drawn from the same seeded x_T with the same DDIM steps, against the featurenet features of the
validation split (the test split stays untouched for the final evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.dataset import ProcessedImages
from pipeline.evaluate.backends import featurenet_extractor
from pipeline.evaluate.frechet import feature_statistics, frechet_distance
from pipeline.evaluate.scores import extract

METRIC = "fid_featurenet"  # what tuning reports and ranks on (lower is better)


class FIDProbe:
    """FID (eq. 6 of Heusel et al. 2017, in featurenet space) of uint8 images against ``split``."""

    def __init__(self, featurenet_dir: str | Path, processed_dir: str | Path, split: str = "val"):
        self.extractor, _, _ = featurenet_extractor(featurenet_dir)
        real = ProcessedImages(processed_dir, split).images  # (N, C, H, W) uint8
        self.real_statistics = feature_statistics(extract(self.extractor, real, desc=None))

    def __call__(self, images: np.ndarray) -> float:
        """FID of ``images`` (uint8, (N, C, H, W), N >= 2) against the reference split."""
        fake = feature_statistics(extract(self.extractor, images, desc=None))
        return frechet_distance(*self.real_statistics, *fake)

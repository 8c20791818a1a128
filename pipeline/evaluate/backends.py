"""Feature backends for FID/KID (``eval.features``), never mixed in one number: each score is named
``fid_<backend>`` and recorded with the sha256 of the weights that produced it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import EvalConfig
from pipeline.data.download import file_digest
from pipeline.evaluate.featurenet import load_featurenet
from pipeline.evaluate.inception import load_inception, resolve_weights
from pipeline.evaluate.scores import ImageFeatures


def load_extractor(
    config: EvalConfig, featurenet_dir: str | Path
) -> tuple[ImageFeatures, dict[str, Any]]:
    """The backend's feature extractor and the fields it adds to the report (``weights_sha256``;
    ``featurenet_test_accuracy`` for featurenet). Fails before any sampling when weights are missing."""
    if config.features == "inception":
        path = resolve_weights(config.inception_weights)
        sha256 = file_digest(path, "sha256")
        return ImageFeatures(load_inception(path), f"inception:{sha256}"), {
            "weights_sha256": sha256
        }
    net, sha256, meta = load_featurenet(featurenet_dir)
    report = {"weights_sha256": sha256, "featurenet_test_accuracy": meta["test_accuracy"]}
    return ImageFeatures(net, f"featurenet:{sha256}"), report

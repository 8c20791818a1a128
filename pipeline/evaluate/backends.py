"""Feature backends for FID/KID (``eval.features``), never mixed in one number: each score is named
``fid_<backend>`` and recorded with the sha256 of the weights that produced it.

An extractor's ``identity`` (``<backend>:<weights sha256>:<code digest>``) keys the real-data
feature cache: new weights, or a change to the code that computes the features, misses the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import EvalConfig
from pipeline.evaluate.colour import ColourStatistics
from pipeline.evaluate.featurenet import load_featurenet
from pipeline.evaluate.inception import load_inception, resolve_weights
from pipeline.evaluate.scores import ImageFeatures
from pipeline.io import file_digest
from pipeline.provenance import code_digest


def _identity(backend: str, weights_sha256: str) -> str:
    return f"{backend}:{weights_sha256}:{code_digest(f'pipeline.evaluate.{backend}')[:16]}"


def featurenet_extractor(featurenet_dir: str | Path) -> tuple[ImageFeatures, str, dict]:
    """The FeatureNet extractor, its weights' sha256 and its config.json."""
    net, sha256, meta = load_featurenet(featurenet_dir)
    return ImageFeatures(net, _identity("featurenet", sha256)), sha256, meta


def load_extractor(
    config: EvalConfig, featurenet_dir: str | Path | None
) -> tuple[ImageFeatures, dict[str, Any]]:
    """The backend's feature extractor and the fields it adds to the report (``weights_sha256``;
    ``featurenet_test_accuracy`` for featurenet). Fails before any sampling when weights are missing."""
    if config.features == "colour":
        return ImageFeatures(ColourStatistics(), _identity("colour", "weight-free")), {
            "weights_sha256": None
        }
    if config.features == "inception":
        path = resolve_weights(config.inception_weights)
        sha256 = file_digest(path)
        return ImageFeatures(load_inception(path), _identity("inception", sha256)), {
            "weights_sha256": sha256
        }
    if featurenet_dir is None:
        raise ValueError(
            "eval.features featurenet needs the featurenet stage's output (--featurenet)"
        )
    extractor, sha256, meta = featurenet_extractor(featurenet_dir)
    return extractor, {"weights_sha256": sha256, "featurenet_test_accuracy": meta["test_accuracy"]}

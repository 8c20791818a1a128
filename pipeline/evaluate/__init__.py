"""Sample quality: FID/KID in a named feature space (FeatureNet offline), generation on Ray."""

from pipeline.evaluate.frechet import feature_statistics, frechet_distance

__all__ = ["feature_statistics", "frechet_distance"]

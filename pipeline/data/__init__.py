"""Data: verified downloads, safe extraction, the source registry and preprocessing."""

from pipeline.data.preprocess import preprocess
from pipeline.data.sources import SOURCES, download_source, get_source

__all__ = ["SOURCES", "download_source", "get_source", "preprocess"]

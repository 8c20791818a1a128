"""stylize/params.yaml: the style-transfer pipeline's params (``load_style_params``), typed and
checked like params.yaml (pipeline.config.loader): unknown keys, wrong types and bad values raise a
ConfigError naming the key, and every content and style file is checked to exist before any work.

    stylize:  the knobs of each stylization (pipeline.style.transfer.StyleOptions)
    pairs:    contents x styles: every content photo is painted in every style
    mlflow:   the experiment each stylization is recorded in, one run per pair
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config.loader import ConfigError, from_dict, load_yaml, section
from pipeline.style.transfer import StyleOptions

MAX_FILES = 64  # contents, styles: a demo, not a data set


@dataclass(frozen=True)
class Pairs:
    """The images: each content photo with each style (paths from the repository root)."""

    contents: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        with section("pairs"):
            for name in ("contents", "styles"):
                files = getattr(self, name)
                if not 1 <= len(files) <= MAX_FILES:
                    raise ValueError(f"{name} must list 1 to {MAX_FILES} files, got {len(files)}")
                stems = [Path(f).stem for f in files]
                if len(set(stems)) != len(stems):
                    raise ValueError(
                        f"{name}: two files share a name ({stems}); outputs would clash"
                    )


@dataclass(frozen=True)
class StyleMlflow:
    """Where the stylizations are recorded (MLFLOW_TRACKING_URI or the project's mlflow.db)."""

    experiment: str = "diffusion-pipeline-stylize"

    def __post_init__(self) -> None:
        with section("mlflow"):
            if not self.experiment.strip():
                raise ValueError("experiment must be a non-empty name")


@dataclass(frozen=True)
class StyleParams:
    stylize: StyleOptions = field(default_factory=StyleOptions)
    pairs: Pairs = field(default_factory=Pairs)
    mlflow: StyleMlflow = field(default_factory=StyleMlflow)


def load_style_params(path: str | Path) -> StyleParams:
    """The params file, checked; every listed image must exist (ConfigError naming it)."""
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (stylize, pairs, mlflow)")
    params = from_dict(StyleParams, raw)
    for name in ("contents", "styles"):
        for i, file in enumerate(getattr(params.pairs, name)):
            if not Path(file).is_file():
                raise ConfigError(f"pairs.{name}[{i}]: {file} is not a file")
    return params

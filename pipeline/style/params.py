"""stylize/params.yaml: the style-transfer pipeline's params (``load_style_params``), typed and
checked like params.yaml (pipeline.config.loader): unknown keys, wrong types and bad values raise a
ConfigError naming the key, and every content and style file is checked to exist before any work.

    stylize:  the knobs of each stylization (pipeline.style.transfer.StyleOptions)
    features: what the Gram matrices are taken of (pipeline.style.choice.FeatureChoice)
    pairs:    contents x styles: every content photo is painted in every style
    tune:     the Ray Tune search of the weights before the stylize stage (pipeline.style.sweep)
    mlflow:   the experiment each stylization is recorded in, one run per pair
    ray:      the cluster the tune stage's trials run on (pipeline.config.RayConfig)
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.config import RayConfig, Spec, override
from pipeline.config.loader import (
    ConfigError,
    check_positive,
    check_seed,
    from_dict,
    leaf_hints,
    load_yaml,
    section,
)
from pipeline.config.search import parse_typed_space
from pipeline.style.choice import FeatureChoice
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


# The default search: the ratio lambda_style / lambda_content (content_weight stays 1), log-uniform
# over the range benchmarks/stylize_scores.py swept by hand (10, 100, 1000).
DEFAULT_STYLE_SPACE = {"stylize": {"style_weight": {"loguniform": [10.0, 3000.0]}}}
BUDGET = ("size", "steps")  # StyleOptions keys a trial's budget sets, not searchable
MAX_TRIALS = 1000


@dataclass(frozen=True)
class StyleSearch:
    """The tune stage of stylize/dvc.yaml: trials stylize every pair at a smaller budget with the
    values Tune draws from ``space`` (``stylize:`` keys, nested as params.yaml's tune.space:
    pipeline.config.space) and are ranked by their mean ``score``
    (pipeline.style.runs); the best values are applied by the stylize stage."""

    enabled: bool = True  # false: the stylize stage uses the stylize section alone
    space: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_STYLE_SPACE))
    num_samples: int = 6  # trials (per grid point)
    search: Literal["random", "optuna"] = "random"  # how non-grid values are drawn
    size: int = 256  # a trial's working size (stylize.size of its options)
    steps: int = 100  # a trial's loss evaluations per pass (stylize.steps)
    max_concurrent_trials: int | None = None  # null: one trial per CPU of the cluster
    seed: int = 0  # the search's draws

    def __post_init__(self) -> None:
        with section("tune"):
            check_positive("num_samples", self.num_samples, MAX_TRIALS)
            if self.max_concurrent_trials is not None:
                check_positive("max_concurrent_trials", self.max_concurrent_trials)
            check_seed("seed", self.seed)
            if self.enabled and not self.space:
                raise ValueError(
                    "space is empty but enabled is true: list the keys to search, or set "
                    "tune.enabled: false"
                )
            grids = sorted(k for k, spec in self.specs.items() if spec.kind == "grid")
            if grids and self.search != "random":
                raise ValueError(
                    f"grid ({', '.join(grids)}) needs search 'random'; "
                    f"{self.search} draws every value (use choice)"
                )

    @property
    def specs(self) -> dict[str, Spec]:
        """The parsed space; ValueError for a key outside ``stylize`` (or one of the budget's) or a
        range whose draws the key's type cannot take."""
        hints = {
            key: hint
            for key, hint in leaf_hints(StyleOptions, "stylize").items()
            if key.split(".", 1)[1] not in BUDGET
        }
        return parse_typed_space(self.space, hints)

    @property
    def budget(self) -> dict[str, Any]:
        """The stylize keys every trial runs with, dotted."""
        return {f"stylize.{name}": getattr(self, name) for name in BUDGET}


def with_values(options: StyleOptions, values: dict[str, Any]) -> StyleOptions:
    """``options`` with each dotted ``stylize.*`` key of ``values`` set, validated (ConfigError)."""
    return from_dict(StyleOptions, override({"stylize": asdict(options)}, values)["stylize"],
                     "stylize")  # fmt: skip


@dataclass(frozen=True)
class StyleParams:
    stylize: StyleOptions = field(default_factory=StyleOptions)
    features: FeatureChoice = field(default_factory=FeatureChoice)
    pairs: Pairs = field(default_factory=Pairs)
    tune: StyleSearch = field(default_factory=StyleSearch)
    mlflow: StyleMlflow = field(default_factory=StyleMlflow)
    ray: RayConfig = field(default_factory=RayConfig)

    def trial_options(self, values: dict[str, Any]) -> StyleOptions:
        """The options one trial stylizes with: the stylize section, the trial budget, and the
        trial's ``values`` (dotted keys)."""
        return with_values(self.stylize, {**self.tune.budget, **values})

    def __post_init__(self) -> None:
        """Every listed value and range end of the space, with the budget, makes valid options
        (the error names the key and the value), so no trial fails on its own values."""
        for key, spec in self.tune.specs.items():
            for value in spec.values:
                try:
                    self.trial_options({key: value})
                except ValueError as exc:  # ConfigError included
                    raise ConfigError(
                        f"tune.space: {key} {value!r} with the trial budget: {exc}"
                    ) from None


def load_style_params(path: str | Path) -> StyleParams:
    """The params file, checked; every listed image (and a VGG-19 file) must exist (ConfigError
    naming it)."""
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (stylize, pairs, mlflow)")
    params = from_dict(StyleParams, raw)
    for name in ("contents", "styles"):
        for i, file in enumerate(getattr(params.pairs, name)):
            if not Path(file).is_file():
                raise ConfigError(f"pairs.{name}[{i}]: {file} is not a file")
    if params.features.vgg19 is not None and not Path(params.features.vgg19).is_file():
        raise ConfigError(f"features.vgg19: {params.features.vgg19} is not a file")
    return params

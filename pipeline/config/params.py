"""``Params``: the whole params.yaml, and the checks that span sections (what a later stage will
need, the tune trials' combinations). ``load_params("params.yaml")`` reads and validates it.

The sections every run reads are fields here; each model family's own section (``guidance``,
``vae``, ``gan``) is the family's: its dataclass lives in the family's module and the registry names
it (pipeline.registry.Family.section, .config), so ``Params`` holds them by name and builds them
from the registry: ``params.vae`` reads one, ``params.with_sections(vae=...)`` replaces one.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.keys import nest, override
from pipeline.config.loader import (
    ConfigError,
    convert,
    from_dict,
    load_yaml,
    section,
    shown,
    to_dict,
)
from pipeline.config.search import SearchConfig
from pipeline.config.sections import (
    DataConfig,
    DiffusionConfig,
    DownloadConfig,
    EvalConfig,
    FeatureNetConfig,
    MlflowConfig,
    ModelConfig,
    RayConfig,
    TrainConfig,
)
from pipeline.data.sources import get_source
from pipeline.models.unet import check_attention_resolutions
from pipeline.registry import FAMILIES, family, section_configs

FAMILY_SECTIONS = "family_sections"  # the field holding the families' own sections, by name


def default_family_sections() -> dict[str, Any]:
    """Every registered family's own section at its defaults."""
    return {name: config() for name, config in section_configs().items()}


@dataclass(frozen=True)
class Params:
    """The whole params.yaml: the sections every run reads, and ``family_sections``, each model
    family's own (pipeline.registry), read as attributes (``params.guidance``)."""

    data: DataConfig = field(default_factory=DataConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    featurenet: FeatureNetConfig = field(default_factory=FeatureNetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: SearchConfig = field(default_factory=SearchConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    family_sections: Mapping[str, Any] = field(default_factory=default_family_sections)

    def __getattr__(self, name: str) -> Any:
        """A family's own section by its name (``params.vae``)."""
        sections = self.__dict__.get(FAMILY_SECTIONS) or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"'Params' object has no attribute {name!r}")

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Params:
        """Params from the mapping of a params file (pipeline.config.loader.from_dict calls it):
        unknown sections refused, missing ones at their defaults."""
        hints = typing.get_type_hints(cls)
        core = [f.name for f in dataclasses.fields(cls) if f.name != FAMILY_SECTIONS]
        own = section_configs()
        unknown = sorted(set(raw) - set(core) - set(own))
        if unknown:
            at = core.index("model") + 1  # params.yaml's order: the families' after model
            allowed = ", ".join([*core[:at], *own, *core[at:]])
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
        kwargs = {k: convert(v, hints[k], k) for k, v in raw.items() if k in core}
        sections = {name: convert(raw.get(name, {}), config, name) for name, config in own.items()}
        return cls(**kwargs, family_sections=sections)

    def as_raw(self) -> dict[str, Any]:
        """The mapping of a params file, in params.yaml's order (the families' sections after
        ``model``; pipeline.config.loader.to_dict calls it)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name != FAMILY_SECTIONS:
                out[f.name] = to_dict(getattr(self, f.name))
            if f.name == "model":
                out.update({k: to_dict(v) for k, v in self.family_sections.items()})
        return out

    def with_sections(self, **sections: Any) -> Params:
        """A copy with whole sections replaced, the families' own included (``guidance=...``)."""
        names = section_configs()
        own = {k: v for k, v in sections.items() if k in names}
        core = {k: v for k, v in sections.items() if k not in own}
        return dataclasses.replace(self, **core, family_sections={**self.family_sections, **own})

    def __post_init__(self) -> None:
        if family(self.model.family).diffusion:  # the UNet's architecture
            with section("model"):
                check_attention_resolutions(self.model, self.data.image_size)
        self._check_steps()
        self._check_family_needs()
        self._check_splits()
        if self.tune.space:
            self._check_trials()
        if self.tune.enabled:
            self._check_searched_sections()

    def _check_steps(self) -> None:
        """Every sampling's steps fit in the diffusion's T."""
        T = self.diffusion.timesteps
        for key, steps in (
            ("train.sample_steps", self.train.sample_steps),
            ("eval.steps", self.eval.steps),
            ("tune.eval_steps", self.tune.eval_steps),
        ):
            if steps > T:
                raise ConfigError(f"{key} {steps} exceeds diffusion.timesteps {T}")

    def _check_family_needs(self) -> None:
        """What the family needs of the data (pipeline.registry.Family), checked before any stage
        runs, and its own section's rules on the others (its ``check(params)``)."""
        source, needs = get_source(self.data.source), family(self.model.family)
        if needs.needs_rgb and self.data.channels != 3:
            raise ConfigError(
                f"model.family {self.model.family!r} colorizes RGB images: data.channels must be "
                f"3, got {self.data.channels}"
            )
        if self.data.scene != "none" and not needs.needs_rgb:
            raise ConfigError(
                f"data.scene {self.data.scene} tells a colorizer of the whole photo: model.family "
                f"{self.model.family!r} is not one (use one of {colorizers()})"
            )
        if self.train.min_colourfulness > 0 and self.data.channels != 3:
            raise ConfigError(
                f"train.min_colourfulness {self.train.min_colourfulness:g} measures colour: "
                f"data.channels must be 3, got {self.data.channels}"
            )
        if self.train.degrade.active and not needs.needs_rgb:
            raise ConfigError(
                f"train.degrade degrades a colorizer's lightness condition: model.family "
                f"{self.model.family!r} has none (set its p or every maximum to 0, or use one of "
                f"{colorizers()})"
            )
        if needs.needs_labels and source.classes is None and not source.needs_folder:
            raise ConfigError(
                f"model.family {self.model.family!r} trains on class labels: data.source "
                f"{source.name!r} has none (use a labelled source: mnist-5k, mnist, "
                "fashion-mnist, cifar10, or a folder with one subfolder per class)"
            )
        if self.data.image_size % needs.size_multiple:
            raise ConfigError(
                f"model.family {self.model.family!r} scales the image by {needs.size_multiple}: "
                f"data.image_size must be a multiple of {needs.size_multiple}, got "
                f"{self.data.image_size}"
            )
        own = self.family_sections.get(needs.section) if needs.section else None
        if own is not None and hasattr(own, "check"):
            own.check(self)

    def _check_splits(self) -> None:
        """The splits the tune, featurenet and evaluate stages score on are not empty."""
        source = get_source(self.data.source)
        if self.tune.enabled and self.data.val_fraction == 0 and not source.fixed_splits:
            raise ConfigError(
                "data.val_fraction 0 leaves no validation images, on which the tune stage ranks "
                "its trials: set it > 0, or tune.enabled: false"
            )
        if self.data.test_fraction == 0 and not source.has_test_split:
            raise ConfigError(
                f"data.test_fraction 0 leaves no test images (source {source.name!r} has no "
                "official test split); the featurenet and evaluate stages score on them: set it > 0"
            )

    def _check_searched_sections(self) -> None:
        """Every searched key changes what some family of the search trains: a VAE does not read
        ``diffusion``, a DDPM not ``vae`` (a search over them would train the same model)."""
        used = {s for name in self.families for s in family(name).sections}
        if any(family(name).diffusion for name in self.families):
            used.add("model")  # the UNet's architecture
        for key in self.tune.specs:
            if key == "model.family" or key.split(".", 1)[0] in used | {"train"}:
                continue
            families = ", ".join(repr(name) for name in self.families)
            sections = sorted(used | {"train"})
            raise ConfigError(
                f"tune: space.{key} has no effect on model.family {families} (its sections: "
                f"{', '.join(sections)}); search those keys, or set tune.enabled: false"
            )

    @property
    def families(self) -> tuple[str, ...]:
        """``model.family`` and, when an enabled search varies it, every family it may pick."""
        spec = self.tune.specs.get("model.family") if self.tune.enabled else None
        return tuple(dict.fromkeys((self.model.family, *(spec.values if spec else ()))))

    def with_values(self, values: Mapping[str, Any]) -> Params:
        """These params with each dotted key of ``values`` set, validated: what one trial runs.
        The copy's search is off (``tune.enabled`` false, empty space)."""
        raw = override(to_dict(self), {**values, "tune.enabled": False, "tune.space": {}})
        return from_dict(Params, raw)

    def _check_trials(self) -> None:
        """Every listed value and range end of the space makes valid params with the trial budget
        and the first value of every other key; errors name the key and the value. A value that
        also fails with only the budget and the space's fixed values around it is at fault
        itself, and is reported first, so the message blames the right key (a bad range end of
        one key does not read as an error of another). Other combinations of searched values can
        still fail their own trial, with that error."""
        specs = self.tune.specs
        fixed = {k: spec.values[0] for k, spec in specs.items() if spec.kind == "fixed"}
        alone = {**self.tune.budget, **fixed}
        first = {**alone, **{k: spec.values[0] for k, spec in specs.items()}}

        def error(key: str, value: Any, others: Mapping[str, Any]) -> ConfigError | None:
            try:
                self.with_values({**others, key: value})
            except ConfigError as exc:
                return exc
            return None

        cases = [(key, value) for key, spec in specs.items() for value in spec.values]
        for key, value in cases:
            exc = error(key, value, alone)
            if exc is not None and error(key, value, first) is not None:
                raise ConfigError(f"tune: space.{key} value {shown(value)}: {exc}")
        for key, value in cases:
            exc = error(key, value, first)
            if exc is not None:
                raise ConfigError(
                    f"tune: space.{key} value {shown(value)} with the other keys' first values: {exc}"
                )


MOVED = {  # old dotted key -> new (2026-12-05): a section renamed, family-specific eval settings
    "cfg": "guidance",
    "eval.guidance_scale": "eval.guided.guidance_scale",
    "eval.guidance_sweep": "eval.guided.guidance_sweep",
    "eval.interpolation_pairs": "eval.latent.interpolation_pairs",
    "eval.diversity_count": "eval.colorizer.diversity_count",
    "eval.diversity_samples": "eval.colorizer.diversity_samples",
}


def _moved(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (old, new) keys of ``MOVED`` that ``raw`` still holds under the old name."""
    found = []
    for old, new in MOVED.items():
        *sections, name = old.split(".")
        node: Any = raw
        for key in sections:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and name in node:
            found.append((old, new))
    return found


def colorizers() -> str:
    """The registered colorizer families, for messages."""
    return ", ".join(name for name, entry in FAMILIES.items() if entry.needs_rgb)


def load_params(path: str | Path) -> Params:
    """Read and validate a params.yaml file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    raw = load_yaml(path) or {}
    if not isinstance(raw, Mapping):
        allowed = ", ".join(to_dict(Params()))
        raise ConfigError(f"{path} must hold a mapping of sections ({allowed})")
    for old, new in _moved(raw):
        raise ConfigError(f"{path}: {old} is now {new}: move it")
    return from_dict(Params, raw)


def upgraded(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Params stored before a key moved (an exported model's config.json), with each key of
    ``MOVED`` at its new place and a ``tune.space`` of dotted keys nested (as stored before it
    was nested, pipeline.config.space)."""
    out = copy.deepcopy(dict(raw))
    for old, new in _moved(out):
        *sections, name = old.split(".")
        node = out
        for key in sections:
            node = node[key]
        out = override(out, {new: node.pop(name)})
    search = out.get("tune")
    if isinstance(search, dict) and isinstance(search.get("space"), Mapping):
        search["space"] = nest(search["space"])
    return out

"""params.yaml loading: defaults, type conversion and one test per documented error."""

import pytest
import yaml

from pipeline.config import (
    ConfigError,
    GuidedEvalConfig,
    ModelConfig,
    Params,
    Spec,
    from_dict,
    load_params,
    to_dict,
)
from pipeline.config.keys import nest, override
from tests.conftest import ROOT


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_repository_params_yaml_is_valid_and_equals_the_defaults():
    # params.yaml documents every default: loading it gives exactly the dataclass defaults.
    assert load_params(ROOT / "params.yaml") == Params()


def test_values_are_converted(tmp_path):
    params = load_params(
        write(
            tmp_path,
            {
                "model": {"channel_mult": [1, 2, 2, 2]},
                "diffusion": {"loss": {"w_simple": 2, "min_snr_gamma": 5}},
            },
        )
    )
    assert params.model.channel_mult == (1, 2, 2, 2)
    assert params.diffusion.loss.w_simple == 2.0 and isinstance(
        params.diffusion.loss.w_simple, float
    )
    assert params.diffusion.loss.min_snr_gamma == 5.0
    assert from_dict(Params, to_dict(params)) == params  # round trip through plain data


@pytest.mark.parametrize(
    "data, message",
    [
        ({"trian": {}}, "unknown key(s) trian; allowed: data, download, diffusion, model"),
        (
            {"diffusion": {"shedule": "cosine"}},
            "unknown key(s) diffusion.shedule; allowed: schedule, timesteps",
        ),
        (
            {"diffusion": {"schedule": "quadratic"}},
            "diffusion: unknown beta schedule 'quadratic'; allowed: cosine, linear, scaled_linear, sigmoid",
        ),
        (
            {"diffusion": {"prediction_type": "noise"}},
            "diffusion.prediction_type: unknown value 'noise'; allowed: epsilon, sample, v_prediction",
        ),
        (
            {"diffusion": {"timesteps": "1000"}},
            "diffusion.timesteps must be an integer, got '1000'",
        ),
        ({"diffusion": {"timesteps": 0}}, "diffusion: timesteps must be an integer >= 1, got 0"),
        (
            {"diffusion": {"beta_end": 1.5}},
            "diffusion: beta_end must be a finite number < 1, got 1.5",
        ),
        (
            {"diffusion": {"beta_start": 0.1, "beta_end": 0.01}},
            "diffusion: beta_start must be <= beta_end",
        ),
        (
            {"diffusion": {"zero_terminal_snr": True}},
            "diffusion: zero_terminal_snr: true needs prediction_type 'v_prediction' or 'sample'",
        ),
        (
            {"diffusion": {"zero_terminal_snr": "yes"}},
            "diffusion.zero_terminal_snr must be true or false, got 'yes'",
        ),
        (
            {"diffusion": {"loss": {"w_vlb": 0.001}}},
            "diffusion: w_vlb=0.001 > 0 needs variance_type 'learned_range'",
        ),
        (
            {"diffusion": {"variance_type": "learned_range"}},
            "diffusion: variance_type 'learned_range' needs w_vlb > 0",
        ),
        (
            {"diffusion": {"loss": 3}},
            "diffusion.loss must be a mapping of w_simple, w_vlb, min_snr_gamma, got 3",
        ),
        (
            {"model": {"channel_mult": []}},
            "model: channel_mult must be a non-empty list of integers >= 1, got ()",
        ),
        ({"model": {"channel_mult": 2}}, "model.channel_mult must be a list, got 2"),
        ({"model": {"dropout": 1.0}}, "model: dropout must be in [0, 1), got 1.0"),
        (
            {"model": {"attention_resolutions": [16]}},
            "model: attention_resolutions contains 16, but at image_size 28",
        ),
        ({"data": {"channels": 2}}, "data: channels must be 1 or 3, got 2"),
        (
            {"train": {"min_colourfulness": 101}},
            "train: min_colourfulness must be in [0, 100], got 101",
        ),
        (
            {"train": {"min_colourfulness": 15}},
            "train.min_colourfulness 15 measures colour: data.channels must be 3, got 1",
        ),
        (
            {"mlflow": {"system_metrics_every": 0.1}},
            "mlflow: system_metrics_every must be 0 (off) or seconds in [1, 3600], got 0.1",
        ),
    ],
)
def test_bad_params_raise_config_error_naming_key_and_value(tmp_path, data, message):
    with pytest.raises(ConfigError) as info:
        load_params(write(tmp_path, data))
    assert message in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("diffusion: [unclosed")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_params(tmp_path / "list.yaml")


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="model: num_res_blocks must be an integer >= 1, got 0"):
        ModelConfig(num_res_blocks=0)


def space(**entries) -> dict:
    """A params mapping whose tune.space holds ``entries`` (keys with '__' for dots)."""
    return {"tune": {"space": nest({k.replace("__", "."): v for k, v in entries.items()})}}


@pytest.mark.parametrize(
    "data, message",
    [
        (
            space(diffusion__shedule={"choice": ["linear"]}),
            "tune: space: unknown or untunable key(s) diffusion.shedule; allowed: diffusion.beta_end",
        ),
        (  # the trial budget owns train.steps
            space(train__steps={"choice": [10, 20]}),
            "tune: space: unknown or untunable key(s) train.steps; allowed:",
        ),
        (
            space(train__lr={"choice": []}),
            "tune: space: train.lr: choice needs at least one value, got []",
        ),
        (
            space(train__lr={"loguniform": [1e-3, 1e-4]}),
            "tune: space: train.lr: loguniform needs low < high, got [0.001, 0.0001]",
        ),
        (
            space(train__lr={"loguniform": [0, 1e-3]}),
            "tune: space: train.lr: loguniform needs low > 0, got [0, 0.001]",
        ),
        (  # YAML 1.1 reads 1e-4 (no dot) as a string
            space(train__lr={"uniform": ["1e-4", 1e-3]}),
            "tune: space: train.lr: uniform needs [low, high] (two finite numbers), got ['1e-4', 0.001]",
        ),
        (
            space(diffusion__timesteps={"randint": [100.5, 200]}),
            "tune: space: diffusion.timesteps: randint needs integer bounds, got [100.5, 200]",
        ),
        (
            space(train__lr={"between": [1, 2]}),
            "tune: space: train.lr: a search spec is a mapping with one of choice, grid, uniform, loguniform, randint",
        ),
        (
            space(diffusion__schedule={"choice": ["cosine", "quadratic"]}),
            "tune: space.diffusion.schedule value 'quadratic': diffusion: unknown beta schedule 'quadratic'",
        ),
        (
            space(diffusion__timesteps={"randint": [5, 100]}),
            "tune: space.diffusion.timesteps value 5: train.sample_steps 50 exceeds diffusion.timesteps 5",
        ),
        (
            {"tune": {"search": "optuna"}},
            "tune: grid (diffusion.schedule) needs search 'random'; optuna draws every value (use choice)",
        ),
        (
            {"tune": {"steps": 100, "eval_every": 40}},
            "tune: steps 100 must be a multiple of eval_every 40",
        ),
        (
            {"tune": {"batch_size": 30, "workers_per_trial": 4}},
            "batch_size 30 is not divisible by num_workers 4",
        ),
        ({"tune": {"eval_steps": 2000}}, "tune.eval_steps 2000 exceeds diffusion.timesteps 1000"),
        ({"tune": {"space": ["train.lr"]}}, "tune.space must be a mapping, got ['train.lr']"),
        # the dotted form of earlier versions: DVC's -S cannot address it
        (
            {"tune": {"space": {"diffusion.loss.min_snr_gamma": {"choice": [None, 5.0]}}}},
            "space: diffusion.loss.min_snr_gamma: a dotted key cannot be set with dvc exp run -S; "
            "nest it as the params are (diffusion: {loss: {min_snr_gamma: {...}}})",
        ),
        (
            {"tune": {"space": {"train": {"lr": {"choice": [1e-3]}}, "diffusion": {}}}},
            "space: diffusion: an empty section; give it keys or leave it out",
        ),
    ],
)
def test_bad_search_spaces_are_rejected_before_any_trial(tmp_path, data, message):
    with pytest.raises(ConfigError) as info:
        load_params(write(tmp_path, data))
    assert message in str(info.value)


def test_search_space_kinds_and_trial_params():
    params = load_params(ROOT / "params.yaml")
    specs = params.tune.specs
    assert specs["diffusion.schedule"].kind == "grid"
    assert specs["train.lr"].values == (1e-4, 1e-3)
    assert specs["diffusion.loss.min_snr_gamma"].values == (None, 5.0)
    trial = params.with_values({**params.tune.budget, "train.lr": 5e-4})
    assert trial.train.lr == 5e-4 and trial.train.steps == params.tune.steps
    assert trial.train.batch_size == 32 and trial.train.num_workers == 1
    assert trial.tune.enabled is False and trial.tune.space == {}  # a trial does not search
    fixed = Params(tune=from_dict(Params, space(train__lr=3e-4)).tune)
    assert fixed.tune.specs["train.lr"] == Spec("fixed", (3e-4,))


def test_a_search_space_key_is_set_from_the_command_line_as_dvc_does(tmp_path):
    """``dvc exp run -S 'tune.space.train.lr.loguniform=[1e-4,3e-3]'`` sets the nested key (DVC
    splits -S keys on dots), and a new key joins the space."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw = override(raw, {"tune.space.train.lr.loguniform": [1e-4, 3e-3],
                         "tune.space.model.dropout.choice": [0.0, 0.1]})  # fmt: skip
    specs = load_params(write(tmp_path, raw)).tune.specs
    assert specs["train.lr"] == Spec("loguniform", (1e-4, 3e-3))
    assert specs["model.dropout"] == Spec("choice", (0.0, 0.1))
    assert specs["diffusion.schedule"].kind == "grid"  # the rest as it was


def test_searched_values_are_checked_with_the_fixed_ones():
    # w_vlb > 0 needs learned_range: valid when the space fixes the variance type
    ok = space(
        diffusion__variance_type="learned_range",
        diffusion__loss__w_vlb={"loguniform": [1e-4, 1e-2]},
    )
    specs = Params(tune=from_dict(Params, ok).tune).tune.specs
    assert specs["diffusion.loss.w_vlb"] == Spec("loguniform", (1e-4, 1e-2))
    bad = space(diffusion__loss__w_vlb={"loguniform": [1e-4, 1e-2]})
    with pytest.raises(
        ConfigError,
        match="space.diffusion.loss.w_vlb value 0.0001: .*needs variance_type 'learned_range'",
    ):
        Params(tune=from_dict(Params, bad).tune)


def test_a_moved_key_is_named_in_a_params_file_and_upgraded_in_a_stored_model(tmp_path):
    """``cfg`` is now ``guidance``, the family-specific eval keys are in eval's family sections: a
    params file with an old key is refused in one line that says where it went; a model exported
    before the move still loads (its config.json is upgraded)."""
    from pipeline.config.params import upgraded

    old = tmp_path / "params.yaml"
    old.write_text("cfg:\n  p_uncond: 0.2\n")
    with pytest.raises(ConfigError, match=r"params.yaml: cfg is now guidance: move it"):
        load_params(old)
    old.write_text("eval:\n  steps: 9\n  diversity_samples: 4\n")
    moved = "params.yaml: eval.diversity_samples is now eval.colorizer.diversity_samples: move it"
    with pytest.raises(ConfigError, match=moved):
        load_params(old)
    stored = from_dict(
        Params,
        upgraded({
            "cfg": {"p_uncond": 0.2},
            "eval": {"steps": 9, "guidance_scale": 2.0, "guidance_sweep": [], "diversity_count": 5},
        }),
    )  # fmt: skip
    assert stored.guidance.p_uncond == 0.2 and stored.eval.steps == 9
    assert stored.eval.guided == GuidedEvalConfig(guidance_scale=2.0, guidance_sweep=())
    assert stored.eval.colorizer.diversity_count == 5
    # a model exported while tune.space had dotted keys (the shipped colorizer's guide, say)
    space = {"diffusion.schedule": {"grid": ["linear"]}, "diffusion.loss.min_snr_gamma": 5.0}
    stored = from_dict(Params, upgraded({"tune": {"space": space}}))
    assert stored.tune.space == {"diffusion": {"schedule": {"grid": ["linear"]},
                                               "loss": {"min_snr_gamma": 5.0}}}  # fmt: skip

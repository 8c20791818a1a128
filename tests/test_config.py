"""params.yaml loading: defaults, type conversion and one test per documented error."""

import pytest
import yaml

from pipeline.config import ConfigError, ModelConfig, Params, from_dict, load_params, to_dict
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

"""The console entry point and the stage scripts' error handling, run as real subprocesses."""

from tests.conftest import ROOT


def test_help_lists_the_commands(run_python):
    result = run_python("-m", "pipeline", "--help")
    assert result.returncode == 0
    assert "validate" in result.stdout and "usage: python -m pipeline" in result.stdout


def test_validate_prints_the_resolved_params(run_python):
    result = run_python("-m", "pipeline", "validate", str(ROOT / "params.yaml"))
    assert result.returncode == 0, result.stderr
    assert "prediction_type: epsilon" in result.stdout and "channel_mult:\n  - 1" in result.stdout


def test_bad_params_exit_2_with_the_key_and_no_traceback(run_python, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("diffusion:\n  schedule: quadratic\n")
    result = run_python("-m", "pipeline", "validate", str(bad))
    assert result.returncode == 2
    assert "diffusion: unknown beta schedule 'quadratic'; allowed: cosine, linear" in result.stderr
    assert "Traceback" not in result.stderr


def test_schedules_stage_writes_nothing_on_bad_params(run_python, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("diffusion:\n  beta_end: 2.0\n")
    out = tmp_path / "reports"
    result = run_python(
        "-m",
        "stages.schedules",
        "--params",
        str(bad),
        "--csv",
        str(out / "s.csv"),
        "--png",
        str(out / "s.png"),
    )
    assert (
        result.returncode == 2 and "beta_end must be a finite number < 1, got 2.0" in result.stderr
    )
    assert not out.exists() or list(out.iterdir()) == []


def test_train_stage_rejects_bad_params_before_starting_anything(run_python, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  batch_size: 10\n  num_workers: 4\n")
    result = run_python(
        "-m", "stages.train", "--params", str(bad), "--data", str(tmp_path / "data"),
        "--checkpoints", str(tmp_path / "ckpt"), "--models", str(tmp_path / "models"),
        "--report", str(tmp_path / "r/train.json"), "--history", str(tmp_path / "r/loss.csv"),
        "--samples", str(tmp_path / "r/samples.png"),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "train: batch_size 10 is not divisible by num_workers 4 x grad_accum_steps 1"
        in result.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]

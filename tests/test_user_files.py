"""The user's files are theirs (issue 29): the output rule every command follows, as a property over
generated file trees, and the cases that destroyed files or ran out of memory, through the real
commands (`python -m pipeline sample|colorize|compare`)."""

import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.apps.outputs import check_outputs
from pipeline.io import OutputExistsError, atomic_path
from tests.test_colorize import export

# ----------------------------------------------------------------- the output rule, as a property
FILES = ("a.png", "A.png", "b.png", "d/a.png", "d/e/c.png", "m/config.json", "n")
LINKS = {"link.png": "d/a.png", "hard.png": "a.png"}  # a symbolic and a hard link
INPUTS = ("a.png", "d", "d/e", "m", "d/a.png", "link.png")
TARGETS = (
    "a.png", "./a.png", "d/../a.png", "A.png", "b.png", "new.png", "d/a.png", "d/./new.png",
    "d/e/c.png", "d/e/new.png", "m/new.png", "x/y/new.png", "link.png", "hard.png", "n/new.png",
    "d", "d/", ".", "..", "d/..", "D/A.png",
)  # fmt: skip


def snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root``: a file's bytes, a link's target, a folder's marker."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_dir():
            found[key] = "dir"
        else:
            found[key] = path.read_bytes()
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    existing=st.sets(st.sampled_from(FILES), min_size=1),
    inputs=st.lists(st.sampled_from(INPUTS), max_size=3),
    targets=st.lists(st.sampled_from(TARGETS), min_size=1, max_size=4),
    overwrite=st.booleans(),
)
def test_outputs_never_replace_inputs_each_other_or_unasked_files(
    existing, inputs, targets, overwrite
):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in existing:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(f"user's {name}".encode())
        if (root / "d/a.png").is_file():
            (root / "link.png").symlink_to(root / "d/a.png")
        if (root / "a.png").is_file():
            os.link(root / "a.png", root / "hard.png")
        given_inputs = [root / i for i in inputs if (root / i).exists()]
        before = snapshot(root)
        input_files = {
            str(f.resolve())
            for i in given_inputs
            for f in ([i] if i.is_file() else i.rglob("*"))
            if f.is_file()
        }
        paths = [root / t if t not in (".", "..") else Path(tmp, t) for t in targets]
        try:
            planned = check_outputs(paths, given_inputs, overwrite=overwrite)
        except (ValueError, OutputExistsError):  # refused: nothing may have changed
            assert snapshot(root) == before
            return
        for i, path in enumerate(planned):
            with atomic_path(path, overwrite=overwrite) as t:
                t.write_bytes(f"output {i}".encode())
        after = snapshot(root)
        for i, path in enumerate(planned):  # each output holds its own bytes: none collided
            assert path.read_bytes() == f"output {i}".encode(), targets
        written = {str(p.resolve()) for p in planned}
        assert not written & input_files, (targets, inputs)  # no input was replaced
        for key, value in before.items():
            path = root / key
            if value == "dir":  # no folder was removed or replaced
                assert after.get(key) == "dir", key
            elif str(path.resolve()) not in written:
                assert after[key] == value, key  # an untouched file kept its bytes
            if not overwrite:
                assert after[key] == value, key  # nothing existing was replaced unasked
        for path in planned:  # nothing landed inside an input folder
            assert not any(path.resolve().is_relative_to(i.resolve()) for i in given_inputs)


@pytest.mark.slow  # waits on locks or runs the commands: out of make test-fast
def test_a_linked_subfolder_inside_the_output_folder_is_refused(tmp_path, run_pipeline, colorizer):
    """Issue 47: an existing subfolder of --out that links elsewhere would carry an output out of
    --out: refused before any work, nothing written there; --out itself may be a link."""
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=r"out/sub is a link, which would carry the output out"):
        check_outputs([out / "sub/a.png"], root=out)
    assert check_outputs([out / "a.png"], root=out) == [(out / "a.png").resolve()]
    (tmp_path / "out_link").symlink_to(out, target_is_directory=True)
    check_outputs([tmp_path / "out_link/b.png"], root=tmp_path / "out_link")  # the user's link
    photos(tmp_path / "in/sub", "a.png")
    result = colorize(run_pipeline, colorizer, tmp_path / "in", "--out", out)
    assert result.returncode == 2 and "is a link, which would carry the output out" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_no_clobber_publish_keeps_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "grid.png"
    with pytest.raises(OutputExistsError, match="appeared while this command ran"):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
            target.write_bytes(b"someone else's")  # between the check and the publish
    assert target.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left


# --------------------------------------------------------------------- sample: data loss (29)
@pytest.fixture(scope="module")
def ddpm_model(tmp_path_factory):
    return export(tmp_path_factory.mktemp("sample"), "ddpm")


def sample(run_pipeline, model, *args):
    return run_pipeline(
        "sample", "--model", str(model), "--count", "2", "--steps", "2", *map(str, args)
    )


def test_sample_each_never_deletes_the_model_or_a_folder(run_pipeline, ddpm_model, tmp_path):
    model_before = snapshot(ddpm_model)
    # --out models.png --each: the per-image folder would be the model's folder
    result = sample(run_pipeline, ddpm_model, "--out", ddpm_model.with_suffix(".png"), "--each")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "inside the input folder" in result.stderr
    assert snapshot(ddpm_model) == model_before
    # --out DIR/..png --each: "DIR/." is DIR itself
    folder = tmp_path / "DIR"
    folder.mkdir()
    (folder / "mine.txt").write_text("the user's")
    result = sample(run_pipeline, ddpm_model, "--out", f"{folder}/..png", "--each")
    assert result.returncode == 2 and "--out must name a .png file" in result.stderr
    assert (folder / "mine.txt").read_text() == "the user's"
    # an existing folder: the images join the user's file, which stays; a second run is refused
    out = tmp_path / "DIR.png"
    assert sample(run_pipeline, ddpm_model, "--out", out, "--each").returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "mine.txt"]
    grid = out.read_bytes()
    again = sample(run_pipeline, ddpm_model, "--out", out, "--each", "--seed", "1")
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr
    assert out.read_bytes() == grid and not list(tmp_path.glob(".DIR*"))  # nothing hidden aside
    replaced = sample(
        run_pipeline, ddpm_model, "--out", out, "--each", "--seed", "1", "--overwrite"
    )
    assert replaced.returncode == 0 and out.read_bytes() != grid
    assert (folder / "mine.txt").read_text() == "the user's"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--guidance", "nan", "argument --guidance: must be a finite number in [0, 100], got nan"),
        ("--guidance", "inf", "argument --guidance: must be a finite number"),
        ("--guidance", "1e308", "argument --guidance: must be a finite number"),
        ("--eta", "nan", "argument --eta: must be a finite number in [0, 1]"),
        (
            "--seed",
            str(2**64),
            "argument --seed: must be an integer in [0, 9,223,372,036,854,775,807]",
        ),
        ("--seed", "-1", "argument --seed: must be an integer in"),
        ("--count", "0", "argument --count: must be an integer in [1, 200,000], got 0"),
    ],
)
def test_sample_refuses_non_finite_and_out_of_range_options(
    run_pipeline, ddpm_model, tmp_path, option, value, message
):
    argv = ["sample", "--model", str(ddpm_model), "--count", "2", "--out", str(tmp_path / "g.png")]
    result = run_pipeline(*argv, option, value)
    assert result.returncode == 2
    assert message in result.stderr and not (tmp_path / "g.png").exists()


# ------------------------------------------------------------------- colorize: data loss (29)
@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    return export(tmp_path_factory.mktemp("colorize"), "regression_color")


def colorize(run_pipeline, model, *args):
    return run_pipeline("colorize", "--model", str(model), *map(str, args))


def photos(folder: Path, *names: str, size=(40, 30)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / name
        )
    return folder


def test_colorize_never_writes_over_its_inputs_or_mixes_outputs(run_pipeline, colorizer, tmp_path):
    folder = photos(tmp_path / "in", "a.png", "a_2.png")
    before = snapshot(folder)
    # --out is the input folder: every output would replace an input
    result = colorize(run_pipeline, colorizer, folder, "--out", folder)
    assert result.returncode == 2 and "inside the input folder" in result.stderr
    assert snapshot(folder) == before
    # --out inside the input folder: a later run would read the outputs back
    result = colorize(run_pipeline, colorizer, folder, "--out", folder / "colour")
    assert result.returncode == 2 and not (folder / "colour").exists()
    # a.png's second sample and a_2.png's first output share a name: refused before any work
    out = tmp_path / "out"
    result = colorize(run_pipeline, colorizer, folder, "--out", out, "--samples", "2")
    assert result.returncode == 2 and "a_2.png would be written twice" in result.stderr
    assert not out.exists()
    # a single file given as input, with --out its own folder: a.png would replace it
    result = colorize(run_pipeline, colorizer, folder / "a.png", "--out", folder, "--overwrite")
    assert result.returncode == 2 and "is an input of this command" in result.stderr
    assert snapshot(folder) == before


def test_stylize_never_writes_over_its_photos_or_its_painting(run_pipeline, tmp_path):
    """--out as the painting, as the photo, or inside the photos' folder: refused before any work,
    with --overwrite too, and every file left as it was."""
    folder = photos(tmp_path / "in", "a.png", "b.png")
    painting = photos(tmp_path / "style", "painting.png") / "painting.png"
    before = snapshot(tmp_path)
    fast = ("--size", "64", "--steps", "2", "--overwrite")

    def stylize(*args):
        return run_pipeline("stylize", *map(str, args), *fast)

    result = stylize(folder / "a.png", "--style", painting, "--out", painting)
    assert result.returncode == 2 and "is an input of this command" in result.stderr
    result = stylize(folder / "a.png", "--style", painting, "--out", folder / "a.png")
    assert result.returncode == 2 and "is an input of this command" in result.stderr
    result = stylize(folder, "--style", painting, "--out", folder / "painted")
    assert result.returncode == 2 and "inside the input folder" in result.stderr
    assert snapshot(tmp_path) == before


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (its data is one tiny row): the command
    must refuse it from the header, before decoding."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_colorize_skips_huge_and_strip_inputs_with_one_line_each_and_finishes_the_rest(
    run_pipeline, colorizer, tmp_path
):
    folder = photos(tmp_path / "in", "good.png")
    header_only_png(folder / "huge.png", 12000, 12000)  # 144 MP: 40 GB as the command was
    Image.new("L", (20000, 1)).save(folder / "strip.png")
    out = tmp_path / "out"
    result = colorize(run_pipeline, colorizer, folder, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "2 of 3 input(s) could not be colorized and were skipped" in result.stderr
    assert "huge.png: 12000x12000 is 144.0 megapixels, above --max-megapixels 50" in result.stderr
    assert "strip.png: 20000x1 is longer than 20 times its width" in result.stderr
    assert [p.name for p in out.iterdir()] == ["good.png"]
    # the limit is the user's, within a range
    result = colorize(run_pipeline, colorizer, folder / "good.png", "--out", tmp_path / "o2",
                      "--max-megapixels", "0.001")  # fmt: skip
    assert result.returncode == 2 and "argument --max-megapixels" in result.stderr


@pytest.mark.parametrize(
    "option, value",
    [
        ("--scale", "1e6"),
        ("--scale", "inf"),
        ("--scale", "nan"),
        ("--samples", "1000000"),
        ("--steps", "0"),
        ("--seed", str(2**63)),
    ],  # fmt: skip
)
def test_colorize_refuses_unbounded_options_naming_them(
    run_pipeline, colorizer, tmp_path, option, value
):
    folder = photos(tmp_path / "in", "a.png")
    argv = ["colorize", str(folder), "--model", str(colorizer), "--out", str(tmp_path / "out")]
    result = run_pipeline(*argv, option, value)
    assert result.returncode == 2
    assert f"argument {option}: must be" in result.stderr
    assert not (tmp_path / "out").exists()


def test_colorize_turns_photos_upright_by_their_exif_orientation(run_pipeline, colorizer, tmp_path):
    photo = tmp_path / "in" / "portrait.jpg"
    photo.parent.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    Image.new("RGB", (60, 40), (200, 120, 40)).save(photo, exif=exif.tobytes())
    out = tmp_path / "out"
    assert colorize(run_pipeline, colorizer, photo, "--out", out).returncode == 0
    with Image.open(out / "portrait.png") as result:
        assert result.size == (40, 60)  # upright: portrait, as every viewer shows it


def test_working_size_and_strip_upsampling_are_bounded_and_exact():
    import torch.nn.functional as F

    from pipeline.photo import WORK_PIXELS, bilinear_rows, working_size

    for h, w, scale in ((389, 517, 4.0), (7000, 7000, 8.0), (20, 400, 8.0), (50000, 2500, 8.0)):
        wh, ww = working_size(h, w, 32, scale)
        assert 1 <= wh * ww <= WORK_PIXELS and abs(wh / ww - h / w) < 0.05 * h / w + 1 / ww
    assert working_size(389, 517, 32, 4.0) == (128, 170)  # the training scale, unchanged
    small = torch.randn(2, 2, 7, 9, dtype=torch.float64)
    full = F.interpolate(small, size=(50, 31), mode="bilinear", align_corners=False)
    for rows in (range(0, 50), range(0, 7), range(13, 29), range(49, 50)):
        torch.testing.assert_close(
            bilinear_rows(small, (50, 31), rows), full[..., rows.start : rows.stop, :],
            rtol=0, atol=1e-12,
        )  # fmt: skip


# ---------------------------------------------------------------------------- MLflow (29)
def test_a_finished_run_is_never_reopened(tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import recorded, start_run

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = start_run(client, "e", "train-abc", {"a": 1}, {"t": "first"}, tmp_path)
    with recorded(client, first):
        pass
    finished = client.get_run(first).info
    again = start_run(client, "e", "train-abc", {"a": 1}, {"t": "second"}, tmp_path)
    with pytest.raises(OSError):  # a re-run that fails (a read-only shared dir, say)
        with recorded(client, again):
            raise OSError("read-only file system")
    assert again != first and client.get_run(again).info.status == "FAILED"
    run = client.get_run(first)
    assert run.info.status == "FINISHED" and run.info.end_time == finished.end_time
    assert run.data.tags["t"] == "first"  # its tags as they were
    resumed = start_run(client, "e", "train-abc", {"a": 1}, {}, tmp_path)
    assert resumed == again  # the unfinished (failed) one is the one resumed


def compare(tmp_path, uri, *args):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "compare", "--experiment", "e",
         "--out", str(tmp_path / "c.csv"), "--plot", str(tmp_path / "c.png"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_compare_names_a_corrupt_store_or_a_silent_server_in_one_line(tmp_path):
    import socket
    import time

    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(4096))
    result = compare(tmp_path, f"sqlite:///{db}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{db}: not a readable MLflow database" in result.stderr
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = compare(tmp_path, f"http://user:s3cret@127.0.0.1:{port}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        f"MLflow tracking server http://user:***@127.0.0.1:{port} does not answer" in result.stderr
    )
    assert "s3cret" not in result.stderr and time.monotonic() - started < 60  # not minutes
    assert not list(tmp_path.glob("c.*"))


def test_redacted_uris_keep_everything_but_the_password():
    from pipeline.console import redact as redacted

    assert redacted("http://u:p%40ss@host:5000/x") == "http://u:***@host:5000/x"
    assert redacted("postgresql://u:pw@db/mlflow") == "postgresql://u:***@db/mlflow"
    assert redacted("http://host:5000") == "http://host:5000"
    assert redacted("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    line = "View run x at: https://me:s3cr%2Ft@mlflow.example:443/#/experiments/1 (and ftp://a:b@c)"
    assert (
        redacted(line)
        == "View run x at: https://me:***@mlflow.example:443/#/experiments/1 (and ftp://a:***@c)"
    )
    assert (
        redacted("user@host and a:b@c and http://host/a:b@c")
        == "user@host and a:b@c and http://host/a:b@c"
    )


def test_weights_saved_twice_have_the_same_bytes(tmp_path):
    from pipeline.io import save_verified

    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    one = save_verified(state, tmp_path / "a" / "ema.pt")
    two = save_verified(state, tmp_path / "b" / "ema.pt")
    assert one == two  # so DVC sees an unchanged output after a forced re-run
    assert (tmp_path / "a/ema.pt").read_bytes() == (tmp_path / "b/ema.pt").read_bytes()

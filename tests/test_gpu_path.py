"""The per-GPU code (issue 26): it imports with torch alone; its step never waits on the device
(the EMA counts its updates on the host, AdamW is fused on CUDA, no family reads a value back: a
dispatch-level watch checks every family on CPU, so CI sees a read a GPU would stall on); on CPU it
computes what it did before (tests/test_regression.py holds the values bit for bit). The CUDA tests
run where a GPU is, and are skipped elsewhere (CI has none). They need torch alone, so a bare GPU
machine runs them without the conftest (which starts Ray clusters):

    python -m pytest --noconftest tests/test_gpu_path.py -k "cuda and not compile"
"""

import contextlib
import re
import subprocess
import sys
import textwrap
import traceback

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.config import Params, from_dict, to_dict
from pipeline.methods.base import Sampling
from pipeline.methods.step import adamw, resolve_compile
from pipeline.models import make_ema
from pipeline.registry import FAMILIES, method_class, method_module
from pipeline.registry import family as registry_family
from tests.factories import family_tiny

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class HostReads(TorchDispatchMode):
    """Records every operator that hands a tensor's values to the host (``.item()``, ``int(t)``,
    ``bool(t)`` in an ``if``, ``nonzero``, boolean masks, ``torch.equal``): on CUDA each of them
    waits for the device to drain. On CPU nothing waits, but the same calls run, so CI sees them."""

    READS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim", "equal"}

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.READS:  # named with the innermost caller of ours
            *ours, _ = [
                f for f in traceback.extract_stack() if "torch" not in f.filename.split("/")
            ]
            caller = ours[-1]
            self.reads.append(
                f"{func.overloadpacket.__name__} at {caller.filename}:{caller.lineno}"
            )
        return func(*args, **(kwargs or {}))


class FusedAdamW(torch.optim.AdamW):
    """AdamW as ``adamw`` builds it on CUDA (fused), here on CPU (PyTorch has a fused CPU kernel).
    The CPU default reads each parameter's step count with ``.item()``: the CPU's affair only."""

    def __init__(self, params, fused=None, **options):
        super().__init__(params, fused=True, **options)


def tiny_family(family: str) -> Params:
    """The smallest params that build ``family``: 8 x 8 images, 8 channels."""
    colour = registry_family(family).needs_rgb  # a colorizer, whichever the registry holds
    sections = family_tiny()
    sections["guidance"]["num_classes"] = 10  # the default data's (mnist-5k)
    return from_dict(Params, {
        **sections,
        "data": {"image_size": 8, "channels": 3 if colour else 1},
        "model": {"family": family, "base_channels": 8, "channel_mult": [1, 2],
                  "num_res_blocks": 1, "attention_resolutions": [4], "num_heads": 1},
        "diffusion": {"timesteps": 50},
        "tune": {"enabled": False},
    })  # fmt: skip


def third_step(family: str, device: str, watch: contextlib.AbstractContextManager) -> None:
    """A family's third training step and EMA update under ``watch``, on ``device`` (the first two
    warm up: allocations, and the EMA's first update copies and reads its count once)."""
    params = tiny_family(family)
    torch.manual_seed(0)
    method = method_class(family)(params, torch.device(device))
    method.prepare(lambda net: net)
    ema = make_ema(method.net)
    images = torch.rand(4, *params.data.image_shape, device=device) * 2 - 1
    labels = torch.tensor([0, 1, 1, 0], device=device)
    batch = [images, labels] if family == "ddpm_cfg" else images
    for step in range(2):
        method.train_step([batch], lr=1e-3, step=step)
        ema.update_parameters(method.net)
    with watch:
        method.train_step([batch], lr=1e-3, step=2)
        ema.update_parameters(method.net)


def steps_reads(family: str) -> list[str]:
    """The host reads of ``third_step`` on CPU."""
    watch = HostReads()
    third_step(family, "cpu", watch)
    return watch.reads


@contextlib.contextmanager
def device_syncs_fail():
    """Any CUDA call that waits for the device raises (torch.cuda.set_sync_debug_mode)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_per_gpu_code_imports_with_torch_alone():
    """Models, diffusion, every family's method and model, the EMA and the optimiser step import on
    a machine without Ray, MLflow or DVC (a GPU box for benchmarks/gpu_step.py)."""
    modules = [
        "pipeline.models",
        "pipeline.diffusion",
        "pipeline.methods.step",
        "pipeline.methods.export",
        *sorted({method_module(name) for name in FAMILIES}),
    ]
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("ray", "mlflow", "dvc"):
                    raise ImportError(f"{{name}} is not installed here")

        sys.meta_path.insert(0, Absent())
        for module in {modules!r}:
            importlib.import_module(module)
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"ray", "mlflow", "dvc"}})
        print("loaded:", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_the_ema_reads_its_update_count_from_the_device_once_per_build_or_load():
    model = nn.Linear(2, 1)
    ema = make_ema(model, decay=0.9)
    ema.update_parameters(model)  # the first update copies (and reads n_averaged, 0)
    # from here on the count lives on the host: a tensor that cannot be read back must not matter
    ema.n_averaged = torch.zeros((), dtype=torch.long, device="meta")
    expected = model.weight.detach().clone()
    for n, value in enumerate([3.0, -1.0, 0.5], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update_parameters(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
        assert torch.allclose(ema.module.weight, expected)

    restored = make_ema(nn.Linear(2, 1), decay=0.9)
    state = make_ema(model, decay=0.9).state_dict()
    state["n_averaged"] = torch.tensor(5)
    restored.load_state_dict(state)
    before = restored.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(10.0)
    restored.update_parameters(model)  # a resumed EMA continues at n = 5, not at a fresh copy
    d = min(0.9, 6 / 15)
    assert torch.allclose(restored.module.weight, d * before + (1 - d) * 10.0)
    assert int(restored.n_averaged) == 6


def test_compile_auto_compiles_on_cuda_only():
    from tests.factories import TINY, with_train

    assert resolve_compile("auto", torch.device("cuda"))
    assert not resolve_compile("auto", torch.device("cpu"))
    assert resolve_compile(True, torch.device("cpu")) and not resolve_compile(False, "cuda")
    assert TINY.train.compile == "auto"  # the default
    for family in ("ddpm", "dcgan"):
        method = method_class(family)(with_train(TINY, compile="auto"), torch.device("cpu"))
        method.prepare(lambda net: net)
        wrapped = method.wrapped.values() if isinstance(method.wrapped, dict) else [method.wrapped]
        assert not any(isinstance(n, torch._dynamo.eval_frame.OptimizedModule) for n in wrapped)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_bf16_sampling_runs_the_network_under_autocast_and_returns_float32_near_fp32(device):
    method = method_class("ddpm")(tiny_family("ddpm"), torch.device(device))
    torch.manual_seed(0)
    nn.init.normal_(method.net.conv_out.weight, std=0.05)  # zero at init: eps would be exactly 0
    model = method.model(method.net.eval())

    def sample(precision):
        generator = torch.Generator(device).manual_seed(0)
        return model.sample(4, precision=precision, generator=generator, how=Sampling(steps=5))

    fp32, bf16 = sample("fp32"), sample("bf16")
    assert fp32.dtype == bf16.dtype == torch.float32 and fp32.shape == bf16.shape
    assert not torch.equal(fp32, bf16)  # the network did run in bf16
    assert (fp32 - bf16).abs().mean() < 0.05  # bf16's 8-bit mantissa, not another sample
    assert torch.equal(sample("fp32"), fp32)  # fp32 is what it always was: seeded, exact


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_adamw_is_fused_on_cuda_only(device):
    net = nn.Linear(2, 2).to(device)
    optimizer = adamw(net.parameters(), torch.device(device), lr=1e-3)
    # CPU: PyTorch's default (the regression values hold); CUDA: one launch, no host sync
    assert bool(optimizer.defaults["fused"]) == (device == "cuda")


def test_the_gpu_step_benchmark_runs_both_codes_side_by_side_in_its_smoke_mode():
    """benchmarks/gpu_step.py --smoke: tiny sizes on CPU, the project's step and diffusers' at the
    same configuration, their ratio, and the sampler in fp32 and bf16 (CI keeps it working)."""
    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/gpu_step.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("smoke")]
    steps = {row[3]: row for row in rows if row[2] == "eager"}
    assert set(steps) == {"project", "diffusers"}
    for row in steps.values():
        ms, images = float(row[6]), float(row[7])
        assert ms > 0 and images == pytest.approx(4 / (ms / 1000), rel=0.02, abs=0.5)  # "%.0f"
    assert "project / diffusers:" in result.stdout
    sampling = [line for line in result.stdout.splitlines() if "sampling" in line]
    assert len(sampling) == 4 and all(float(line.split()[-2]) > 0 for line in sampling)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_no_family_reads_a_tensor_back_to_the_host_in_its_training_step(monkeypatch, family):
    """Issue 26: a step that reads a value back (a loss's ``.item()``, the EMA's ``int(n)``)
    stalls the GPU every step. On CPU, with AdamW fused as on CUDA, no step reads anything."""
    monkeypatch.setattr(torch.optim, "AdamW", FusedAdamW)
    assert steps_reads(family) == []


def test_the_host_read_watch_sees_a_read_when_there_is_one():
    with HostReads() as watch:
        lineno = sys._getframe().f_lineno + 1
        torch.tensor(2.0).item()
    assert len(watch.reads) == 1 and watch.reads[0] == f"_local_scalar_dense at {__file__}:{lineno}"
    # PyTorch's unfused CPU AdamW reads each parameter's step count: the watch sees every one
    parameters = method_class("ddpm")(tiny_family("ddpm"), torch.device("cpu")).net.parameters()
    assert len(steps_reads("ddpm")) == len(list(parameters))


def test_the_bf16_fid_benchmark_scores_both_precisions_on_the_same_seeds(processed_data, tmp_path):
    """benchmarks/bf16_fid.py end to end on a tiny untrained colorizer (its own eval section:
    colour features, 3 steps) and the photos' test crops: per seed an FID for fp32 and bf16, bf16's
    its own (the network ran in bf16), each seed other images, and the summary."""
    from pipeline.config import DataConfig
    from pipeline.methods.export import export_model
    from tests.conftest import ROOT

    data = DataConfig(source="photos", image_size=8, channels=3, fit="tiles")
    params = from_dict(Params, {
        "data": to_dict(data),
        "model": {"family": "ddpm_color", "base_channels": 8, "channel_mult": [1, 2],
                  "num_res_blocks": 1, "attention_resolutions": [], "num_heads": 1},
        "diffusion": {"timesteps": 50},
        "eval": {"steps": 3, "batch_size": 16, "features": "colour"},
        "tune": {"enabled": False},
    })  # fmt: skip
    torch.manual_seed(0)
    net = method_class("ddpm_color").build_net(params)
    nn.init.normal_(net.conv_out.weight, std=0.05)  # zero at init: every draw would be the same
    models = export_model(net.state_dict(), step=0, params=params, out_dir=tmp_path / "models")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bf16_fid.py"), "--models", str(models),
         "--data", str(processed_data(data)), "--seeds", "0,1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    fids = {
        int(seed): (float(fp32), float(bf16))
        for seed, fp32, bf16 in re.findall(
            r"seed (\d+): fp32 ([\d.]+), bf16 ([\d.]+)", result.stdout
        )
    }
    assert set(fids) == {0, 1}, result.stdout
    assert all(fp32 != bf16 for fp32, bf16 in fids.values())
    assert fids[0] != fids[1]
    assert re.search(r"fp32's spread over seeds \(std\) [\d.]+; \|shift\| / spread", result.stdout)


@CUDA
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_no_family_syncs_with_the_host_in_its_training_step_on_cuda(family):
    third_step(family, "cuda", device_syncs_fail())


@pytest.mark.parametrize("kind", ["random", "colorizer"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_the_style_features_live_wholly_on_the_device_asked_for(kind, device):
    """Every weight and buffer of the stylize command's features (the colorizer's: the shipped
    network's levels and the random content filters) on ``device``."""
    from pipeline.style.choice import FeatureChoice, build_features

    features = build_features(FeatureChoice(kind=kind), seed=0, device=device)
    tensors = [*features.parameters(), *features.buffers()]
    assert tensors and {t.device.type for t in tensors} == {device}

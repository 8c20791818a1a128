"""The README's Python example runs as written (the documented API cannot drift from the code)."""

import re

import torch

from tests.conftest import ROOT


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    api = readme.split("## Python API", 1)[1]  # the section's first example is the runnable one
    blocks = re.findall(r"```python\n(.*?)```", api, flags=re.S)
    assert blocks, "the README's Python API section has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    images = namespace["images"]
    assert (
        images.shape == (4, 1, 28, 28) and torch.isfinite(images).all() and images.abs().max() <= 1
    )
    assert namespace["ema"].n_averaged.item() == 1


def test_readme_test_command_is_what_ci_runs():
    ci = [
        line
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()

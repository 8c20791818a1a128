"""The README's Python example runs as written (the documented API cannot drift from the code)."""

import re

import torch

from tests.conftest import ROOT


def test_readme_python_example_runs():
    readme = (ROOT / "docs/api.md").read_text()  # linked from the README's Documentation list
    api = readme.split("## Python API", 1)[1]  # the section's first example is the runnable one
    blocks = re.findall(r"```python\n(.*?)```", api, flags=re.S)
    assert blocks, "the README's Python API section has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/api.md", "exec"), namespace)
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


def test_the_readme_and_the_docs_pages_link_only_to_files_that_exist():
    """The README stays short and links to docs/*.md; every relative link and picture of those
    pages names a file of the repository (anchors aside)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 5
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if path and not re.match(r"^[a-z]+:", path) and not (page.parent / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, missing
    linked = set(re.findall(r"\]\(docs/([a-z]+\.md)", (ROOT / "README.md").read_text()))
    assert linked == {p.name for p in pages[1:]}  # every page is reachable from the README

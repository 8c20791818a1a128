"""notebooks/: each runs top to bottom in a fresh kernel (nbclient), as a new user runs it, and
is committed without outputs."""

from pathlib import Path

import nbclient
import nbformat
import numpy as np
import pytest
from PIL import Image

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_committed_without_outputs():
    assert [n.name for n in NOTEBOOKS] == ["colorize_your_photos.ipynb"]
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in cells if c.cell_type == "code"), f"{path.name} has outputs"  # fmt: skip


@pytest.mark.slow
def test_colorize_your_photos_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOKS[0], as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # CellExecutionError names the cell that failed
    made = {p.name: np.asarray(Image.open(p)) for p in (tmp_path / "colorized").iterdir()}
    stem = "gcompris-categorization-brandenburgGate"
    assert sorted(made) == sorted([
        "aitzgorri.png", "aitzgorri_hokusai.png", f"{stem} vividness 0.png",
        f"{stem} vividness 0.25.png", f"{stem} saturation 1.5.png",
    ])  # fmt: skip
    assert made["aitzgorri.png"].shape == made["aitzgorri_hokusai.png"].shape  # full size
    images = [c for c in notebook.cells if c.cell_type == "code"
              for o in c.outputs if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) == 3  # the three figures, shown inline
    assert not np.array_equal(made[f"{stem} vividness 0.png"], made[f"{stem} vividness 0.25.png"])

"""The style-transfer pipeline's work (stylize/dvc.yaml, ``stages/stylize.py``): every content photo
painted in every style at the params' settings, each pair an MLflow run with its pictures, loss
curves and scores, next to the colour-transfer baseline.

Per pair (content c, style s), at the working size: the stylization x (pipeline.style.transfer)
and the baseline b (pipeline.style.baseline); scores (pipeline.style.scores) of both: the style
distance before (c) and after, the share of it and of the colour distance covered ("moved"), and the
edge agreement with the photo; and ``score``, the number a search would minimise:

    score = style_distance(x, s) / style_distance(c, s) + EDGE_PENALTY * max(0, EDGE_FLOOR - edges)

the share of the style distance left, at a bounded loss of the photo's structure: below an edge
agreement of EDGE_FLOOR each 0.1 lost costs as much as the whole style distance, so that the best
settings are the most painterly ones that still show the photo's shapes.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from pipeline.console import progress_bar
from pipeline.imagefile import DEFAULT_MEGAPIXELS, read_rgb
from pipeline.io import atomic_dir, file_digest, write_json
from pipeline.reports.grid import save_image
from pipeline.style.baseline import colour_transfer
from pipeline.style.choice import build_features, features_sha256
from pipeline.style.params import StyleParams
from pipeline.style.scores import (
    colour_distance,
    edge_agreement,
    moved,
    style_distance,
    texture_distance,
)
from pipeline.style.transfer import (
    History,
    StyleOptions,
    resize_longer,
    stylize,
    to_tensor,
    to_uint8,
)
from pipeline.tracking import connect, provenance_tags, recorded, start_run, tracking_uri

log = logging.getLogger(__name__)

EDGE_FLOOR = 0.5  # edge agreement below which a stylization loses the photo (scores docstring)
EDGE_PENALTY = 10.0
PANEL_HEIGHT = 192  # px of each image in reports/panels.png
GAP = 4  # white px between panels


def read_image(path: str) -> torch.Tensor:
    """An image file as (1, 3, H, W) float32 in [0, 1] (pipeline.imagefile.read_rgb)."""
    return to_tensor(read_rgb(Path(path), round(DEFAULT_MEGAPIXELS * 1e6)))


def images_digest(params: StyleParams) -> str:
    """sha256 over the sha256 of every content and style file, in the params' order."""
    files = (*params.pairs.contents, *params.pairs.styles)
    return hashlib.sha256("".join(file_digest(f) for f in files).encode()).hexdigest()


def pair_scores(out: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> dict[str, float]:
    """The scores of an image ``out`` at the working size (module docstring)."""
    before, after = style_distance(content, style), style_distance(out, style)
    edges = edge_agreement(out, content)
    return {
        "style_distance_before": before,
        "style_distance": after,
        "style_moved": moved(before, after),
        "texture_moved": moved(texture_distance(content, style), texture_distance(out, style)),
        "colour_moved": moved(colour_distance(content, style), colour_distance(out, style)),
        "edge_agreement": edges,
        "score": after / before + EDGE_PENALTY * max(0.0, EDGE_FLOOR - edges),
    }


def paint(
    content: torch.Tensor,
    style: torch.Tensor,
    features: torch.nn.Module,
    options: StyleOptions,
    on_step: Callable[[int], object] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, History, dict[str, float]]:
    """One stylization and its scores: the image at the working size, the content at that size,
    the loss history, and ``pair_scores`` with the ``seconds`` it took."""
    start = time.perf_counter()
    out, history = stylize(content, style, features, options, on_step=on_step)
    seconds = time.perf_counter() - start
    small = resize_longer(content, max(out.shape[-2:]))
    return out, small, history, {**pair_scores(out, small, style), "seconds": seconds}


def panel(images: list[torch.Tensor]) -> np.ndarray:
    """Images (1, 3, h, w) side by side at PANEL_HEIGHT, white gaps: uint8 (H, W, 3)."""
    rows = []
    for image in images:
        h, w = image.shape[-2:]
        size = (PANEL_HEIGHT, max(1, round(w * PANEL_HEIGHT / h)))
        rows += [to_uint8(F.interpolate(image, size=size, mode="bilinear", antialias=True))]
        rows += [np.full((PANEL_HEIGHT, GAP, 3), 255, np.uint8)]
    return np.concatenate(rows[:-1], axis=1)


def stack(panels: list[np.ndarray]) -> np.ndarray:
    """Panels one under the other, left-aligned on white."""
    width = max(p.shape[1] for p in panels)
    out = []
    for p in panels:
        out += [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255)]
        out += [np.full((GAP, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def log_pair(
    client: MlflowClient,
    run_id: str,
    history: History,
    scores: dict,
    baseline: dict,
    seconds: float,
    folder: Path,
) -> None:
    """The run's metrics (loss curves by evaluation) and pictures."""
    now = int(time.time() * 1000)
    curves = [
        Metric(key, value, now, step)
        for key, values in (
            ("loss", history.total),
            ("loss_content", history.content),
            ("loss_style", history.style),
        )  # fmt: skip
        for step, value in enumerate(values)
    ]
    final = {**scores, **{f"baseline_{k}": v for k, v in baseline.items()}, "seconds": seconds}
    for start in range(0, len(curves), 1000):  # MLflow takes at most 1000 metrics a batch
        client.log_batch(run_id, metrics=curves[start : start + 1000])
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in final.items()])
    for file in sorted(folder.iterdir()):
        client.log_artifact(run_id, str(file))


def stylize_pairs(
    params: StyleParams, *, params_file: str, out_dir: str, metrics_path: str, panels_png: str
) -> dict:
    """Paint every content in every style (module docstring); write the outputs (a folder of
    ``<content>__<style>.png`` at the content's size), the panels (content | style | stylized |
    colour transfer, one row per pair) and the metrics (per pair and their means); one MLflow run
    per pair. Returns the metrics."""
    options = params.stylize
    contents = {Path(f).stem: read_image(f) for f in params.pairs.contents}  # all read first
    styles = {Path(f).stem: read_image(f) for f in params.pairs.styles}
    tags = provenance_tags(".", "stages/stylize.py", images_digest(params))
    digest = features_sha256(params.features)
    tags["features_sha256"] = str(digest)  # "None": random filters, fixed by the seed
    features = build_features(params.features, options.seed)
    client = connect(tracking_uri())
    pairs, panels = {}, []
    total = options.steps * options.passes * len(contents) * len(styles)
    with atomic_dir(out_dir) as tmp, progress_bar(total=total, desc="stylize", unit="eval") as bar:
        for c_name, content in contents.items():
            for s_name, style in styles.items():
                name = f"{c_name}__{s_name}"
                run_id = start_run(client, params.mlflow.experiment, f"stylize-{name}",
                                   {"stylize": asdict(options), "features": asdict(params.features),
                                    "content": c_name, "style": s_name,
                                    "params_file": params_file}, tags)  # fmt: skip
                with recorded(client, run_id):
                    out, small, history, scores = paint(
                        content, style, features, options, bar.update
                    )
                    base = colour_transfer(small, style)
                    baseline = pair_scores(base, small, style)
                    seconds = scores.pop("seconds")
                    save_image(to_uint8(out, content.shape[-2:]), tmp / f"{name}.png")
                    row = panel([small, style, out, base])
                    panels.append(row)
                    with tempfile.TemporaryDirectory() as pictures:
                        save_image(row, Path(pictures) / "panel.png")
                        save_image(to_uint8(out), Path(pictures) / "stylized.png")
                        log_pair(client, run_id, history, scores, baseline, seconds, Path(pictures))
                pairs[name] = {**scores, **{f"baseline_{k}": v for k, v in baseline.items()},
                               "seconds": seconds, "mlflow_run_id": run_id}  # fmt: skip
    means = {k: float(np.mean([p[k] for p in pairs.values()]))
             for k in next(iter(pairs.values())) if k != "mlflow_run_id"}  # fmt: skip
    chosen = {**asdict(params.features), "sha256": digest}
    metrics = {**means, "pairs": pairs, "stylize": asdict(options), "features": chosen}
    save_image(stack(panels), panels_png)
    write_json(metrics_path, metrics)
    return metrics

"""FeatureNet: a small classifier trained on the dataset itself, whose penultimate layer is the
offline feature space for FID/KID (``eval.features: featurenet``).

Scores in this space are comparable only with other ``fid_featurenet`` scores computed with the same
weights (their sha256 is recorded with every score), never with Inception FID.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pipeline.config import FeatureNetConfig, from_dict, to_dict
from pipeline.console import progress_bar
from pipeline.data.dataset import ProcessedImages
from pipeline.data.manifest import verify_processed
from pipeline.io import (
    atomic_dir,
    load_verified,
    read_json,
    recorded_digest,
    save_verified,
    write_json,
)
from pipeline.pixels import to_unit

WEIGHTS_FILE, CONFIG_FILE = "weights.pt", "config.json"


class FeatureNet(nn.Module):
    """conv3x3-GroupNorm-SiLU x2 then 2x2 max-pool, at widths w, 2w, 4w; global average pool; a
    ``feature_dim`` embedding (the FID features, after SiLU); a linear classifier head."""

    def __init__(self, in_channels: int, num_classes: int, config: FeatureNetConfig) -> None:
        super().__init__()
        layers, channels = [], in_channels
        for mult in (1, 2, 4):
            width = config.width * mult
            for _ in range(2):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1),
                    nn.GroupNorm(8, width),
                    nn.SiLU(),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(channels, config.feature_dim), nn.SiLU())
        self.head = nn.Linear(config.feature_dim, num_classes)
        self.num_features = config.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim)."""
        return self.embed(self.body(x))

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> (B, feature_dim), in [-1, 1] like training."""
        return self.features(to_unit(images))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> class logits (B, num_classes)."""
        return self.head(self.features(x))


@dataclass(frozen=True)
class FeatureNetResult:
    test_accuracy: float
    train_loss: float
    epochs: int


def _labelled(processed_dir: Path, split: str) -> ProcessedImages:
    data = ProcessedImages(processed_dir, split, labels=True)
    if data.labels is None:
        raise ValueError(
            f"eval.features 'featurenet' trains a classifier and needs labels; the {split} split of "
            f"{processed_dir} has none (use a labelled source or eval.features: inception)"
        )
    return data


def accuracy(net: FeatureNet, data: ProcessedImages, batch_size: int = 256) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(data, batch_size=batch_size):
            correct += (net(x).argmax(1) == y).sum().item()
    return correct / len(data)


def classify(net: FeatureNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The classifier head's class (N,) of uint8 images (N, C, H, W)."""
    net.eval()
    with torch.no_grad():
        return np.concatenate(
            [
                net(to_unit(images[i : i + batch_size])).argmax(1).numpy()
                for i in range(0, len(images), batch_size)
            ]
        )


def train_featurenet(
    processed_dir: str | Path, config: FeatureNetConfig, progress: bool = True
) -> tuple[FeatureNet, FeatureNetResult]:
    """Train on the train split (AdamW, cross-entropy, ``config.epochs``); report test accuracy."""
    processed_dir = Path(processed_dir)
    verify_processed(processed_dir, min_counts={"test": (1, "featurenet (its test accuracy)")})
    train, test = _labelled(processed_dir, "train"), _labelled(processed_dir, "test")
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    torch.manual_seed(config.seed)
    net = FeatureNet(train.images.shape[1], num_classes, config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr)
    loader = DataLoader(train, batch_size=config.batch_size, shuffle=True, drop_last=False)
    bar = progress_bar(total=config.epochs * len(loader), desc="featurenet", disable=not progress)
    for _ in range(config.epochs):
        net.train()
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    result = FeatureNetResult(accuracy(net, test), loss.item(), config.epochs)
    return net.eval(), result


def save_featurenet(
    net: FeatureNet, config: FeatureNetConfig, result: FeatureNetResult, out_dir: str | Path
) -> Path:
    """``weights.pt`` and ``config.json`` (architecture, test accuracy), each with its sha256
    sidecar, atomically."""
    with atomic_dir(out_dir) as tmp:
        save_verified(net.state_dict(), tmp / WEIGHTS_FILE)
        meta = {
            "config": to_dict(config),
            "in_channels": net.body[0].in_channels,
            "num_classes": net.head.out_features,
            **dataclasses.asdict(result),
        }
        write_json(tmp / CONFIG_FILE, meta, verified=True)
    return Path(out_dir)


def load_featurenet(directory: str | Path) -> tuple[FeatureNet, str, dict]:
    """The saved FeatureNet (eval mode), the sha256 of its weights file (checked against the one
    recorded when it was written), and its config.json. Errors name the bad file."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no FeatureNet in {directory}: run the featurenet stage first")
    made_by = "the featurenet stage (dvc repro featurenet)"
    meta = read_json(
        directory / CONFIG_FILE,
        ("in_channels", "num_classes", "config"),
        made_by=made_by,
        verified=True,
    )
    try:
        config = from_dict(FeatureNetConfig, meta["config"], "featurenet")
        net = FeatureNet(meta["in_channels"], meta["num_classes"], config)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{directory / CONFIG_FILE}: {exc}; re-run {made_by}") from None
    weights = directory / WEIGHTS_FILE
    try:
        net.load_state_dict(load_verified(weights))
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit {directory / CONFIG_FILE}: {exc}") from None
    return net.eval(), recorded_digest(weights), meta  # verified by load_verified

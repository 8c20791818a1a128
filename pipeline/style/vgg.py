"""VGG-19's convolutional layers for style transfer, with weights from a file the user supplies
(Gatys, Ecker and Bethge 2016, sec. 2: the 16 convolutional layers of VGG-19, max pooling replaced
by average pooling, which they found gives slightly better results; style from conv1_1, conv2_1,
conv3_1, conv4_1 and conv5_1, content from conv4_2).

Weights are never downloaded: ``load_vgg19(path, sha256)`` reads a safetensors file (the format
of Hugging Face's model files: an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw bytes) with this module's own reader, so no
pickle and no code is ever loaded from it, after checking the file's sha256 against the one the
user gives. The tensors are the ``features.<i>.weight`` / ``features.<i>.bias`` of torchvision's
and timm's VGG-19 (ImageNet; inputs normalised by ImageNet's mean and deviation).
"""

from __future__ import annotations

import json
import math
import stat
import struct
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.io import file_digest
from pipeline.style.features import Layers

# (name, index in torchvision's vgg19().features, in channels, out channels), in order; pools between
CONVS = [
    ("conv1_1", 0, 3, 64), ("conv1_2", 2, 64, 64),
    ("conv2_1", 5, 64, 128), ("conv2_2", 7, 128, 128),
    ("conv3_1", 10, 128, 256), ("conv3_2", 12, 256, 256), ("conv3_3", 14, 256, 256),
    ("conv3_4", 16, 256, 256),
    ("conv4_1", 19, 256, 512), ("conv4_2", 21, 512, 512), ("conv4_3", 23, 512, 512),
    ("conv4_4", 25, 512, 512),
    ("conv5_1", 28, 512, 512),
]  # fmt: skip
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
CONTENT_LAYERS = ("conv4_2",)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}
MAX_HEADER = 1 << 24  # bytes of JSON header: VGG-19's is about 4 kB
MAX_WEIGHTS_BYTES = 1 << 30  # a weights file: torchvision's whole VGG-19 in float32 is 548 MB


class WeightsError(ValueError):
    """A weights file that is not what it must be (one line naming the file and the problem)."""


def weights_file(path: str | Path) -> Path:
    """``path`` if it is a regular file of at most MAX_WEIGHTS_BYTES; WeightsError otherwise (a
    device such as /dev/zero or a FIFO would be read forever, a huge file into memory)."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise WeightsError(f"{path}: not a regular file; weights must be a safetensors file")
    if info.st_size > MAX_WEIGHTS_BYTES:
        raise WeightsError(
            f"{path}: {info.st_size:,} bytes, more than the {MAX_WEIGHTS_BYTES:,} a VGG-19 file "
            "can hold"
        )
    return path


def tensor_spec(spec: object) -> tuple[torch.dtype, int, tuple[int, ...], int, int] | None:
    """A header entry {"dtype", "shape", "data_offsets"} as (dtype, item size, shape, begin,
    end), or None where an entry is not of those types (a crafted header: a list, a string,
    negative sizes)."""
    if not isinstance(spec, dict):
        return None
    kind, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    dtype, itemsize = DTYPES.get(kind, (None, 0)) if isinstance(kind, str) else (None, 0)
    if (
        dtype is None
        or not isinstance(shape, list)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(v) is int and v >= 0 for v in (*shape, *offsets))
    ):
        return None
    return dtype, itemsize, tuple(shape), offsets[0], offsets[1]


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked: a regular file of bounded size, a header (a
    JSON object) within the file, known dtypes, each tensor's byte range inside the data and of
    its shape's size, finite values (WeightsError naming the file otherwise)."""
    data = weights_file(path).read_bytes()
    if len(data) < 8:
        raise WeightsError(f"{path}: {len(data)} bytes, not a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if not 2 <= size <= min(MAX_HEADER, len(data) - 8):
        raise WeightsError(f"{path}: header length {size} does not fit the file; not safetensors")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the safetensors header is not a JSON object")
    buffer = memoryview(data)[8 + size :]
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        checked = tensor_spec(spec)
        if checked is not None:
            dtype, itemsize, shape, begin, end = checked
        if (
            checked is None
            or not begin <= end <= len(buffer)
            or end - begin != math.prod(shape) * itemsize
        ):
            raise WeightsError(f"{path}: tensor {name!r} has a bad dtype, shape or byte range")
        raw = bytearray(buffer[begin:end])  # a copy: the tensors outlive the file's bytes
        tensor = torch.frombuffer(raw, dtype=dtype).reshape(shape).float()
        if not torch.isfinite(tensor).all():
            raise WeightsError(f"{path}: tensor {name!r} holds NaN or infinite values")
        tensors[name] = tensor
    return tensors


def load_vgg19(path: str | Path, sha256: str) -> VGG19Features:
    """VGG19Features with the weights of ``path``, whose sha256 must be ``sha256``."""
    digest = file_digest(weights_file(path))
    if digest != sha256.lower():
        raise WeightsError(f"{path}: sha256 {digest}, expected {sha256}")
    tensors = read_safetensors(path)
    model = VGG19Features()
    state = {}
    for position, (name, index, c_in, c_out) in enumerate(CONVS):
        for part, shape in (("weight", (c_out, c_in, 3, 3)), ("bias", (c_out,))):
            key = f"features.{index}.{part}"
            if key not in tensors or tuple(tensors[key].shape) != shape:
                found = tuple(tensors[key].shape) if key in tensors else "missing"
                raise WeightsError(f"{path}: {key} ({name}) must be {shape}, found {found}")
            state[f"{position}.{part}"] = tensors[key]
    model.convs.load_state_dict(state)
    return model.requires_grad_(False)


class VGG19Features(nn.Module):
    """VGG-19 up to conv5_1 (module docstring): rgb in [0, 1], (B, 3, H, W) -> Layers."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, padding=1) for _, _, c_in, c_out in CONVS
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor) -> Layers:
        x = (rgb - self.mean) / self.std
        found: dict[str, torch.Tensor] = {}
        for (name, *_), conv in zip(CONVS, self.convs, strict=True):
            if name.endswith("_1") and name != "conv1_1":
                x = F.avg_pool2d(x, 2, ceil_mode=True)  # the pool before each block
            x = F.relu(conv(x))
            found[name] = x
        return Layers([found[n] for n in STYLE_LAYERS], [found[n] for n in CONTENT_LAYERS])

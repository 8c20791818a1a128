"""Test doubles of the real data sources: a local HTTP server and files in the real formats.

``LocalServer`` serves a directory on 127.0.0.1 with HTTP Range support, and misbehaves on request:
``/truncate/<f>`` announces the full length but sends half and closes; ``/flaky/<f>`` answers 503 to
the first request of each file; ``/norange/<f>`` ignores Range headers. Every request is recorded.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np


class LocalServer:
    def __init__(self, root: Path) -> None:
        self.root, self.requests, self.failed_once = root, [], set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                mode, _, name = self.path.lstrip("/").partition("/")
                if mode not in ("plain", "truncate", "flaky", "norange"):
                    mode, name = "plain", self.path.lstrip("/")
                path = server.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                if mode == "flaky" and name not in server.failed_once:
                    server.failed_once.add(name)
                    self.send_error(503)
                    return
                body = path.read_bytes()
                start = 0
                ranged = self.headers.get("Range")
                if ranged and mode != "norange":
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if mode == "truncate":
                    payload = payload[: len(payload) // 2]
                self.wfile.write(payload)
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """A gzipped IDX file of uint8 data (magic 0x08 type byte, then dimensions, big-endian)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path


def make_idx_dataset(root: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    """MNIST-format train/test files; returns the arrays written, by split."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
        data[split] = (images, labels)
    return data


def make_cifar_tarball(path: Path, per_batch: int = 8, seed: int = 0) -> dict:
    """A CIFAR-10 python tarball: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta},
    each batch a protocol-2 pickle with byte-string keys like the Python 2 originals."""
    rng = np.random.default_rng(seed)
    data: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, obj) -> None:
            blob = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))

        for name, split in [(f"data_batch_{i}", "train") for i in range(1, 6)] + [
            ("test_batch", "test")
        ]:
            rows = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, size=per_batch).tolist()
            add(
                name,
                {b"batch_label": name.encode(), b"labels": labels, b"data": rows, b"filenames": []},
            )
            data[split].append((rows, labels))
        add("batches.meta", {b"label_names": [b"airplane"] * 10, b"num_vis": 3072})
    return data


def make_tar_with_member(path: Path, name: str, *, symlink_to: str | None = None) -> Path:
    """A tarball with one regular file and one member named ``name`` (a symlink if requested)."""
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("data/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo(name)
        if symlink_to is not None:
            bad.type, bad.linkname = tarfile.SYMTYPE, symlink_to
            tar.addfile(bad)
        else:
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
    return path

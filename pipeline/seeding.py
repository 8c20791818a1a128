"""Counter-based seeds: a seed is a hash of what it is for, never drawn from shared RNG state."""

from __future__ import annotations

import hashlib


def derived_seed(*parts: object) -> int:
    """A non-negative int64 seed from ``parts`` (sha256 of ``"p0:p1:..."``).

    Used for every seed that must be reproducible without saving RNG state: a training step's
    randomness is ``derived_seed(seed, rank, step)`` (a run resumed at step s draws what the
    uninterrupted run drew), sampling batch b is ``derived_seed("sample", seed, b)``.
    """
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1

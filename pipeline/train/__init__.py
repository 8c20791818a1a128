"""Data-parallel DDPM training on Ray Train: the per-worker loop and the driver that launches it."""

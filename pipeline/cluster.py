"""The Ray cluster a stage runs on: join or start it, refuse setups that would lose results, and
whether its workers get GPUs. Shared by training, tuning and evaluation."""

from __future__ import annotations

import os
import socket

import ray

from pipeline.config import Params


def resolve_use_gpu(setting: str | bool) -> bool:
    """``auto``: use GPUs when the Ray cluster has any."""
    if setting == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(setting)


def is_remote(address: str | None) -> bool:
    """Whether a Ray address names another machine: its host resolves, and to no address of this
    one (an IP of this machine can be bound here). ``auto``, ``local``, none, or an unresolvable
    name (ray.init reports it) are not remote."""
    host = (address or "").removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host in ("", "auto", "local"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    for family, _, _, _, sockaddr in infos:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((sockaddr[0], 0))
                return False
            except OSError:
                continue
    return True


def init_ray(params: Params, tracking: str | None = None) -> None:
    """Join ``$RAY_ADDRESS`` or ``ray.address``, else start a local cluster (once per process).
    With ``tracking`` (an MLflow URI), refuse a cluster whose workers may run on other machines
    (a non-local address, or more than one node) when the store is a local SQLite file: each
    machine would log into a file on its own disk. Connection errors name the address."""
    address = os.environ.get("RAY_ADDRESS") or params.ray.address
    where = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "ray.address"
    local_store = bool(tracking) and tracking.startswith("sqlite:")

    def refuse(why: str) -> None:
        raise ValueError(
            f"{why}, but MLflow tracks into {tracking}, a file on one machine's disk: workers on "
            "other nodes would log into their own copy and the metrics would be lost. Set "
            "MLFLOW_TRACKING_URI to a tracking server (mlflow server)"
        )

    if local_store and is_remote(address):
        refuse(f"{where} {address!r} is a remote Ray cluster")
    if not ray.is_initialized():
        try:  # with the dashboard: Ray Train's cleanup uses its state API
            ray.init(address=address)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(
                f"cannot connect to the Ray cluster at {where} {address!r}: {first}"
            ) from None
    if local_store:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        if len(nodes) > 1:
            refuse(f"the Ray cluster has {len(nodes)} nodes")

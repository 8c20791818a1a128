"""The Ray cluster a stage runs on: join or start it, refuse setups that would lose results, put
what workers read where every node reaches it, and whether its workers get GPUs. Shared by training,
tuning and evaluation."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import ray

from pipeline.config import Params
from pipeline.config.sections import check_shared_dir
from pipeline.io import first_line
from pipeline.workspace import lasting

SHARED_DIR_ENV = "PIPELINE_SHARED_DIR"  # overrides ray.shared_dir, as RAY_ADDRESS does ray.address

# Ray settings for a cluster this machine starts for itself (its processes inherit them): its one
# node is never drained or preempted, so Ray Train's preemption watcher (one more actor process per
# training run, contending for the cores the run is starting on; it only watches for drains) is off.
# Its per-node Prometheus exporter, which answers without Ray's token on every interface of the
# machine, is off (docs/reliability.md, "What listens on the network"). A value the user set wins;
# a cluster the pipeline joins keeps its own.
LOCAL_CLUSTER_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_enable_metrics_collection": "0",
}


def private_ray_dir() -> Path:
    """Where the clusters this user's stages start for themselves keep their files: mode 0700
    (Ray's default, /tmp/ray, is world-readable, and its session logs hold every worker's
    output)."""
    path = Path(tempfile.gettempdir()) / f"ray-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


def cluster_temp_dir() -> Path:
    """A new directory in ``private_ray_dir`` for one local cluster: Ray looks for a cluster to
    join in its temp directory, so with one of its own a stage never joins a cluster that another
    pipeline or someone's ``ray start`` left there; RAY_ADDRESS=auto joins one on purpose."""
    return Path(tempfile.mkdtemp(dir=private_ray_dir(), prefix=""))


def local_cluster_env() -> None:
    """Put ``LOCAL_CLUSTER_ENV`` into this process's environment where the user has not set it;
    call before a local ``ray.init`` (its processes inherit it, and Ray Train hands it on)."""
    for key, value in LOCAL_CLUSTER_ENV.items():
        os.environ.setdefault(key, value)


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
    if address and address.startswith("ray://"):
        raise ValueError(
            f"{where} {address!r}: Ray Client (ray://) does not support Ray Train and Tune; give "
            "the cluster's GCS address (head:6379) on the head node, or submit the pipeline as a "
            "Ray job (infra/README.md)"
        )
    storage = shared_dir(params)  # checked before connecting
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
        options = {"address": address}
        if address in (None, "", "local"):  # its processes inherit this one's environment
            local_cluster_env()
            options = {"address": "local", "_temp_dir": str(cluster_temp_dir())}
        try:  # with the dashboard: Ray Train's cleanup uses its state API
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot connect to the Ray cluster at {where} {address!r}: {first_line(exc)}"
            ) from None
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if nodes > 1 and local_store:
        refuse(f"the Ray cluster has {nodes} nodes")
    if nodes > 1 and storage is None:
        raise ValueError(
            f"the Ray cluster has {nodes} nodes, but ray.shared_dir is null: workers on other "
            "nodes cannot read this machine's data and models or write checkpoints to its disk. "
            f"Set ray.shared_dir (or ${SHARED_DIR_ENV}) to a directory every node mounts (NFS, a "
            "Kubernetes PVC)"
        )


def shared_dir(params: Params) -> Path | None:
    """``$PIPELINE_SHARED_DIR``, else ``ray.shared_dir``: a directory every node mounts; None when
    neither is set (a one-node cluster)."""
    value = os.environ.get(SHARED_DIR_ENV)
    if value:
        check_shared_dir(SHARED_DIR_ENV, value)
        return Path(value)
    return Path(params.ray.shared_dir) if params.ray.shared_dir else None


def tree_digest(directory: Path) -> str:
    """sha256 over a directory's files: each one's relative path and the sha256 of its bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        with path.open("rb") as f:
            content = hashlib.file_digest(f, "sha256").hexdigest()
        digest.update(f"{path.relative_to(directory).as_posix()}\0{content}\n".encode())
    return digest.hexdigest()


def for_workers(params: Params, directory: str | Path) -> Path:
    """A path of ``directory`` (the processed data, FeatureNet) that every node's workers can read:
    itself without a shared dir, else its copy ``<shared_dir>/inputs/<name>-<sha256[:16]>`` of the
    same content, made once (into a temporary name, then renamed) and checked on every reuse: a
    copy whose content no longer matches its name is an error, never read."""
    directory = Path(directory).resolve()
    storage = shared_dir(params)
    if storage is None:
        return directory
    digest = tree_digest(directory)
    target = storage / "inputs" / f"{directory.name}-{digest[:16]}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        shutil.copytree(directory, partial)
        try:
            partial.rename(target)
            return target  # copied from the bytes just hashed: no second read
        except OSError:  # another stage put the same content there first
            shutil.rmtree(partial)
    if tree_digest(target) != digest:
        raise ValueError(
            f"the shared copy {target} of {directory} differs from it (a corrupt or edited copy); "
            "delete it and re-run"
        )
    return target


def checkpoints_for_workers(params: Params, checkpoints_dir: str | Path) -> Path:
    """Where Ray keeps a run's checkpoints: ``<shared_dir>/checkpoints`` when there is a shared dir
    (run names are content hashes, so runs of different pipelines do not collide), else
    ``checkpoints_dir`` (in the workspace when DVC runs the stage in a temporary copy:
    pipeline.workspace.lasting, so a queued experiment run again resumes)."""
    storage = shared_dir(params)
    return (storage / "checkpoints") if storage else lasting(checkpoints_dir)

"""Real servers on 127.0.0.1 for the scale-out tests: a multi-node Ray cluster (one `ray start`
process per node, token auth on), PostgreSQL 15 and `mlflow server`.

Every server is a child process of the test that starts it, in its own process group, with its own
ports and directories: a test never joins a cluster it did not start, and it stops what it started
by that process group (never by name: `ray stop` would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's `ray`, `mlflow`


_HANDED_OUT: set[int] = set()  # ports given to this test run's servers so far


def free_port() -> int:
    """A port nothing listens on now and that no earlier call returned: the kernel may hand a port
    just released to the next bind, and one node given the same port twice fails to start (seen:
    the head's dashboard agent and Ray Client server both on one port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for(ready: Callable[[], bool], what: str, timeout: float, process: subprocess.Popen):
    """Poll ``ready`` until it holds; fail with the process's log when it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: see {process.args}")
        if ready():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f} s")


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A server as a child in a new process group, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop ``process`` and everything in its process group: ``sig``, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the raylet's workers, whatever outlived it
    process.wait(timeout=10)


@dataclass
class RayCluster:
    """A running loopback cluster: its GCS ``address``, its dashboard (the Jobs API) and the
    environment a client needs (token auth)."""

    address: str
    dashboard: str
    env: dict[str, str]
    root: Path
    nodes: list[str] = field(default_factory=list)  # the node ids, head first


def node_args(head_address: str | None, temp_dir: Path, cpus: int) -> list[str]:
    """`ray start --block` for one node on 127.0.0.1 with ports nobody else holds."""
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    args = [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1"]
    args += ["--num-cpus", str(cpus), "--num-gpus", "0", "--temp-dir", str(temp_dir)]
    args += ["--object-store-memory", str(200 << 20), "--disable-usage-stats"]
    for flag, port in ports.items():
        args += [flag, str(port)]
    if head_address is None:
        return args
    return [*args, "--address", head_address]


@contextlib.contextmanager
def ray_cluster(
    root: Path, nodes: int = 2, cpus: int = 1, node_env: dict[str, str] | None = None
) -> Iterator[RayCluster]:
    """``nodes`` Ray nodes of ``cpus`` CPUs each on 127.0.0.1, token auth on (a token of its own,
    in a file under ``root``), each node with its own temp dir and ``node_env`` (what a real
    cluster's nodes hold themselves, such as the tracking server's credentials). Stopped on
    exit."""
    root.mkdir(parents=True, exist_ok=True)
    token = root / "auth_token"
    token.write_text(os.urandom(24).hex())
    token.chmod(0o600)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    node_env = {**env, **(node_env or {})}
    gcs, dashboard = free_port(), free_port()
    address = f"127.0.0.1:{gcs}"
    head = [*node_args(None, root / "n0", cpus), "--head", "--port", str(gcs)]
    head += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard)]
    head += ["--ray-client-server-port", str(free_port())]
    processes = [start(head, root / "node0.log", node_env)]
    cluster = RayCluster(address, f"http://127.0.0.1:{dashboard}", env, root)
    try:
        wait_for(lambda: len(node_ids(cluster)) >= 1, "the Ray head", 90, processes[0])
        for i in range(1, nodes):
            args = node_args(address, root / f"n{i}", cpus)
            processes.append(start(args, root / f"node{i}.log", node_env))
            wait_for(lambda i=i: len(node_ids(cluster)) > i, f"Ray node {i}", 90, processes[-1])
        cluster.nodes = node_ids(cluster)
        yield cluster
    finally:
        for process in reversed(processes):
            stop(process, timeout=3)  # the head's `ray start --block` can take 30 s to exit


def node_ids(cluster: RayCluster) -> list[str]:
    """The ids of the nodes the cluster's GCS counts alive (`ray list nodes`, with the token)."""
    result = subprocess.run(
        [str(BIN / "ray"), "list", "nodes", "--address", cluster.dashboard, "--format", "json",
         "--filter", "state=ALIVE"],
        env=cluster.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not result.stdout.lstrip().startswith("["):
        return []  # "No resource in the cluster" while the head starts
    return [node["node_id"] for node in json.loads(result.stdout)]


@dataclass
class Postgres:
    """A PostgreSQL server of this test: ``uri`` for SQLAlchemy (MLflow's store)."""

    uri: str
    port: int


def pg_bindir() -> Path | None:
    """PostgreSQL's binaries (`pg_config --bindir`), None where it is not installed or cannot run:
    as root without a `postgres` account to run it as."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None
    result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    bindir = Path(result.stdout.strip())
    return bindir if (bindir / "initdb").is_file() and (bindir / "postgres").is_file() else None


def unprivileged() -> list[str]:
    """The command prefix that runs PostgreSQL's programs as an unprivileged user: none for one,
    `setpriv` to the `postgres` account for root (initdb refuses root)."""
    if os.geteuid() != 0:
        return []
    import pwd

    account = pwd.getpwnam("postgres")
    return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]


@contextlib.contextmanager
def postgres(bindir: Path, database: str = "mlflow") -> Iterator[Postgres]:
    """A fresh cluster (initdb as an unprivileged user, password auth on TCP) in a private temporary
    directory, its server on a free port of 127.0.0.1 and a socket dir of its own; stopped (fast
    shutdown) and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="pg-"))  # not under pytest's root-only tmp_path
    prefix = unprivileged()
    if prefix:
        owner = int(prefix[1].split("=")[1]), int(prefix[2].split("=")[1])
        os.chown(root, *owner)
    data, sockets = root / "data", root / "sock"
    password = os.urandom(12).hex()
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    server = None
    try:
        if prefix:
            os.chown(pwfile, *owner)
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=120)
        run([*prefix, "mkdir", str(sockets)], check=True)
        run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--pwfile",
             str(pwfile), "--auth-host", "scram-sha-256", "--auth-local", "trust", "-E", "UTF8",
             "--no-sync"],
            check=True,
        )  # fmt: skip
        port = free_port()
        server = start(
            [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k",
             str(sockets), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            root / "postgres.log", dict(os.environ),
        )  # fmt: skip

        def ready() -> bool:
            check = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"]
            return subprocess.run(check, check=False).returncode == 0

        wait_for(ready, "postgres", 60, server)
        create = [str(bindir / "createdb"), "-h", str(sockets), "-p", str(port), "-U", "mlflow"]
        run([*prefix, *create, database], check=True)
        yield Postgres(f"postgresql://mlflow:{password}@127.0.0.1:{port}/{database}", port)
    finally:
        if server is not None:
            stop(server, signal.SIGINT)  # postgres: SIGINT is the fast shutdown
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class MlflowServer:
    """`mlflow server` on 127.0.0.1: ``url``, and the admin's credentials when basic auth is on."""

    url: str
    port: int
    username: str
    password: str


@contextlib.contextmanager
def mlflow_server(root: Path, backend_uri: str, serve: Path) -> Iterator[MlflowServer]:
    """``infra/mlflow/serve.sh`` (basic auth, PostgreSQL, proxied artifacts under ``root``) on a
    free port of 127.0.0.1, allowing only the Host headers of that address; stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = os.urandom(12).hex()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_BACKEND_STORE_URI": backend_uri,
        "MLFLOW_ARTIFACTS_DESTINATION": (root / "artifacts").as_uri(),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_ALLOWED_HOSTS": f"127.0.0.1:{port},localhost:{port}",
        "MLFLOW_WORKERS": "2",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
    }
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    server = start(["bash", str(serve)], root / "mlflow.log", env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_for(ready, "mlflow server", 120, server)
        yield MlflowServer(url, port, "admin", password)
    finally:
        stop(server)

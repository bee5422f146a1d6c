"""Offline validation of deploy/k8s: render base, operators and both overlays, then check them.

No cluster and no network: the kustomizations are rendered by tests/deploy/kustomize.py (and
compared with the ``kustomize``/``kubectl kustomize`` binary when one is installed), built-in
kinds are validated against the Kubernetes OpenAPI schemas shipped in ``kubernetes-validate``,
and the custom resources (Strimzi, CloudNativePG, KEDA, Prometheus Operator), whose CRD
schemas are not available offline, are checked field by field against what those operators
document. On top: the rules Firstline's deployment must keep (probes, hardening, one
Deployment/Service/PDB per service, autoscaling on the right consumer groups, network
reachability, one database per service, topics for the whole event catalogue).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import shared.events
from shared.bus import MAX_MESSAGE_BYTES
from shared.events import ALL_TOPICS
from tests.deploy.common import (
    DEPLOY,
    K8S,
    PORTS,
    ROOT,
    SERVICES,
    SMTP_INTAKE_PORT,
    known_series,
    promql_metric_names,
    selector_matches,
    yaml_documents,
)
from tests.deploy.kustomize import build, label_selector_matches, split_image

Resource = dict[str, Any]

BUILDS = {
    "base": K8S / "base",
    "operators": K8S / "operators",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
}
APP_BUILDS = ["base", "dev", "prod"]  # those holding the services
OVERLAYS = ["dev", "prod"]  # complete environments: services + operators' resources
NAMESPACE = "firstline"
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]

# Secrets the manifests read but do not contain, and who makes them.
EXTERNAL_SECRETS = {
    "firstline-db-app": "CloudNativePG, for the Cluster firstline-db (bootstrap.initdb owner)",
}
PROD_EXTERNAL_SECRETS = {
    "firstline-gateway": "the operator, before applying the prod overlay (docs/deploy.md)",
}
PROBE_PATHS = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
BUILTIN_KINDS = {
    "Namespace", "ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget",
    "HorizontalPodAutoscaler", "NetworkPolicy",
}  # fmt: skip
CUSTOM_KINDS = {
    "ScaledObject": "keda.sh/v1alpha1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "Kafka": "kafka.strimzi.io/v1beta2",
    "KafkaNodePool": "kafka.strimzi.io/v1beta2",
    "KafkaTopic": "kafka.strimzi.io/v1beta2",
    "Cluster": "postgresql.cnpg.io/v1",
    "Database": "postgresql.cnpg.io/v1",
}
# The spec fields each custom resource may use (a subset of its CRD: what a typo would miss).
CUSTOM_SPEC_FIELDS = {
    "ScaledObject": {
        "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
        "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
    },
    "ServiceMonitor": {
        "jobLabel", "targetLabels", "podTargetLabels", "endpoints", "selector", "namespaceSelector",
        "sampleLimit", "targetLimit", "labelLimit", "attachMetadata",
    },
    "PrometheusRule": {"groups"},
    "Kafka": {"kafka", "entityOperator", "clusterCa", "clientsCa", "cruiseControl", "kafkaExporter",
              "maintenanceTimeWindows"},
    "KafkaNodePool": {"replicas", "roles", "storage", "resources", "jvmOptions", "template"},
    "KafkaTopic": {"topicName", "partitions", "replicas", "config"},
    "Cluster": {
        "instances", "imageName", "imageCatalogRef", "primaryUpdateStrategy", "primaryUpdateMethod",
        "enableSuperuserAccess", "bootstrap", "postgresql", "storage", "walStorage", "resources", "affinity",
        "monitoring", "backup", "managed", "superuserSecret", "description", "inheritedMetadata",
    },
    "Database": {"name", "owner", "cluster", "ensure", "databaseReclaimPolicy", "extensions", "schemas"},
}  # fmt: skip
KAFKA_FIELDS = {
    "version", "metadataVersion", "listeners", "config", "authorization", "rack", "resources", "jvmOptions",
    "logging", "metricsConfig", "template", "livenessProbe", "readinessProbe",
}  # fmt: skip


@cache
def rendered(name: str) -> tuple[Resource, ...]:
    return tuple(build(BUILDS[name]))


def of_kind(resources: tuple[Resource, ...], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def find(resources: tuple[Resource, ...], kind: str, name: str) -> Resource | None:
    return next((r for r in of_kind(resources, kind) if r["metadata"]["name"] == name), None)


def names(resources: tuple[Resource, ...], kind: str) -> set[str]:
    return {r["metadata"]["name"] for r in of_kind(resources, kind)}


def pod_templates(resources: tuple[Resource, ...]) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(deployment name, pod labels, pod spec) of every Deployment."""
    return [
        (d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"])
        for d in of_kind(resources, "Deployment")
    ]


def container(deployment: Resource) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(deployment: Resource) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment).get("env", [])}


def config_map(resources: tuple[Resource, ...]) -> dict[str, str]:
    found = find(resources, "ConfigMap", "firstline-config")
    assert found, "ConfigMap firstline-config missing"
    return found["data"]


def firstline_deployments(resources: tuple[Resource, ...]) -> list[Resource]:
    return [d for d in of_kind(resources, "Deployment") if d["metadata"]["name"] in SERVICES]


# --------------------------------------------------------------------------- files and rendering


def test_every_yaml_file_under_deploy_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert files
    for path in files:
        documents = yaml_documents(path)
        assert documents, f"{path} is empty"
        if K8S in path.parents and path.name != "kustomization.yaml":
            for doc in documents:
                assert isinstance(doc, (dict, list)), f"{path}: not a mapping"
                if isinstance(doc, dict):
                    assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path}: not a Kubernetes object"
                    assert doc["metadata"].get("name"), f"{path}: an object without a name"


def test_every_manifest_file_is_used_by_a_kustomization() -> None:
    used: set[Path] = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        config = yaml.safe_load(kustomization.read_text())
        used |= {(kustomization.parent / entry).resolve() for entry in config.get("resources", [])}
        used |= {(kustomization.parent / p["path"]).resolve() for p in config.get("patches", []) if "path" in p}
    for path in K8S.rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.resolve() in used, f"{path.relative_to(ROOT)} is not listed in any kustomization.yaml"


@pytest.mark.parametrize("name", BUILDS)
def test_kustomization_renders_known_kinds_only(name: str) -> None:
    resources = rendered(name)
    assert resources
    for resource in resources:
        kind = resource["kind"]
        assert kind in BUILTIN_KINDS or kind in CUSTOM_KINDS, f"{name}: no check knows the kind {kind}"
        if kind in CUSTOM_KINDS:
            assert resource["apiVersion"] == CUSTOM_KINDS[kind], f"{kind} {resource['metadata']['name']}"
    if name in OVERLAYS:
        for resource in resources:
            if resource["kind"] != "Namespace":
                assert resource["metadata"].get("namespace") == NAMESPACE


def _kustomize_binary() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("name", BUILDS)
def test_python_renderer_agrees_with_kustomize(name: str) -> None:
    command = _kustomize_binary()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: rendered by tests/deploy/kustomize.py only")
    result = subprocess.run([*command, str(BUILDS[name])], capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "unknown command" in result.stderr:
        pytest.skip(f"{command[0]} cannot render kustomizations here")
    assert result.returncode == 0, result.stderr

    def keyed(resources: Any) -> dict[tuple[str, str, str], Resource]:
        return {(r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]): r for r in resources if r}

    theirs = keyed(yaml.safe_load_all(result.stdout))
    mine = keyed(rendered(name))
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key] == theirs[key], f"{name}: {key} renders differently"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", BUILDS)
def test_builtin_kinds_validate_against_the_kubernetes_schemas(name: str, version: str) -> None:
    for resource in rendered(name):
        if resource["kind"] not in BUILTIN_KINDS:
            continue
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            pytest.fail(f"{name}: {resource['kind']} {resource['metadata']['name']} at {path}: {error.message}")


@pytest.mark.parametrize("name", BUILDS)
def test_custom_resources_use_only_documented_fields(name: str) -> None:
    for resource in rendered(name):
        kind = resource["kind"]
        if kind not in CUSTOM_KINDS:
            continue
        label = f"{name}: {kind} {resource['metadata']['name']}"
        extra = set(resource["spec"]) - CUSTOM_SPEC_FIELDS[kind]
        assert not extra, f"{label}: unknown spec fields {extra}"
        assert set(resource) <= {"apiVersion", "kind", "metadata", "spec"}, label
        if kind == "Kafka":
            assert set(resource["spec"]["kafka"]) <= KAFKA_FIELDS, label
        if kind == "ScaledObject":
            for trigger in resource["spec"]["triggers"]:
                assert set(trigger) <= {"type", "metadata", "name", "authenticationRef", "metricType"}, label
                assert all(isinstance(v, str) for v in trigger["metadata"].values()), f"{label}: metadata not strings"
        if kind == "KafkaTopic":
            assert all(isinstance(v, (str, int)) for v in resource["spec"].get("config", {}).values()), label


# --------------------------------------------------------------------------- Deployments


@pytest.mark.parametrize("name", APP_BUILDS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_deployment_a_service_and_a_pdb(name: str, service: str) -> None:
    resources = rendered(name)
    deployment = find(resources, "Deployment", service)
    assert deployment, f"{name}: no Deployment for services/{service}"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(deployment["spec"]["selector"], pod_labels)

    svc = find(resources, "Service", service)
    assert svc, f"{name}: no Service {service}"
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert selector_matches({"matchLabels": svc["spec"]["selector"]}, pod_labels)
    assert [p["port"] for p in svc["spec"]["ports"]] == [PORTS[service]], "the port docs/services.md gives"

    pdbs = [p for p in of_kind(resources, "PodDisruptionBudget") if selector_matches(p["spec"]["selector"], pod_labels)]
    assert len(pdbs) == 1, f"{name}: {service} needs exactly one PodDisruptionBudget"
    assert "maxUnavailable" in pdbs[0]["spec"] or pdbs[0]["spec"].get("minAvailable") != "100%"


@pytest.mark.parametrize("name", APP_BUILDS)
def test_every_deployment_is_probed_limited_and_hardened(name: str) -> None:
    for deployment in of_kind(rendered(name), "Deployment"):
        dname = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, dname
        pod_security = pod.get("securityContext", {})
        tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod["containers"] + pod.get("initContainers", []):
            label = f"{name}: {dname}/{c['name']}"
            assert c.get("image"), f"{label}: no image"
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe_name, path in PROBE_PATHS.items():
                probe = c.get(probe_name)
                assert probe and "httpGet" in probe, f"{label}: no HTTP {probe_name}"
                port = probe["httpGet"]["port"]
                assert port in ports or port in ports.values(), f"{label}: {probe_name} on an undeclared port"
                if dname in SERVICES:
                    assert probe["httpGet"]["path"] == path, f"{label}: {probe_name} must GET {path}"
            startup = c["startupProbe"]
            assert startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 60, (
                f"{label}: give start-up (migrations, first connection) at least a minute"
            )
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{label}: {bound} cpu and memory"
            assert _quantity(resources["requests"]["cpu"]) <= _quantity(resources["limits"]["cpu"]), label
            assert _quantity(resources["requests"]["memory"]) <= _quantity(resources["limits"]["memory"]), label

            security = c.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, f"{label}: runAsNonRoot"
            assert security.get("runAsUser", pod_security.get("runAsUser", 1)) != 0, f"{label}: runs as root"
            assert security.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem"
            assert security.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation"
            assert security.get("privileged", False) is False, label
            assert security.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: drop ALL capabilities"
            assert not security.get("capabilities", {}).get("add"), f"{label}: adds capabilities"
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", f"{label}: seccomp RuntimeDefault"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{label}: /tmp must be an emptyDir (root FS is read-only)"


def _quantity(value: str | int) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("name", APP_BUILDS)
def test_each_deployment_runs_the_service_it_names(name: str) -> None:
    service_py = (ROOT / "shared" / "service.py").read_text()
    graceful = re.search(r"timeout_graceful_shutdown=(\d+)", service_py)
    for deployment in firstline_deployments(rendered(name)):
        service = deployment["metadata"]["name"]
        c = container(deployment)
        env = env_of(deployment)
        assert c["command"] == ["python", "-m", f"services.{service}"]
        assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False, (
            "Service links would inject INGEST_PORT=tcp://..., TICKETS_PORT=... into the settings' environment"
        )
        assert env["SERVICE_NAME"] == service, "consumer groups are named after SERVICE_NAME"
        assert env["HTTP_PORT"] == str(PORTS[service])
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["http"] == PORTS[service]
        assert env["DATABASE_URL"].rsplit("/", 1)[1] == f"firstline_{service}", "one database per service"
        if service == "ingest":
            assert env["SMTP_PORT"] == str(SMTP_INTAKE_PORT)
            assert {p["name"]: p["containerPort"] for p in c["ports"]}["smtp"] == SMTP_INTAKE_PORT
        kinds = [next(iter(e)) for e in c["envFrom"]]
        assert "configMapRef" in kinds and "secretRef" in kinds, "envFrom a ConfigMap and a Secret"
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop_seconds = int(pre_stop[-1]) if pre_stop[:1] == ["sleep"] else 0
        if graceful:
            assert grace >= int(graceful.group(1)) + pre_stop_seconds, (
                "the grace period must cover the preStop pause and uvicorn's graceful shutdown"
            )


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlays_set_a_pinned_image(name: str) -> None:
    for deployment in firstline_deployments(rendered(name)):
        image_name, tag, digest = split_image(container(deployment)["image"])
        assert tag or digest, f"{name}: {deployment['metadata']['name']} image has no tag"
        assert tag != "latest"
    images = {container(d)["image"] for d in firstline_deployments(rendered(name))}
    assert len(images) == 1, "one image for every service (the command chooses the service)"


@pytest.mark.parametrize("name", OVERLAYS)
def test_references_resolve(name: str) -> None:
    resources = rendered(name)
    secrets = names(resources, "Secret") | set(EXTERNAL_SECRETS)
    if name == "prod":
        secrets |= set(PROD_EXTERNAL_SECRETS)
    for deployment in of_kind(resources, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        label = f"{name}: {deployment['metadata']['name']}"
        assert pod.get("serviceAccountName") in names(resources, "ServiceAccount"), label
        for c in pod["containers"]:
            for source in c.get("envFrom", []):
                if ref := source.get("configMapRef"):
                    assert ref["name"] in names(resources, "ConfigMap") or ref.get("optional"), label
                if ref := source.get("secretRef"):
                    assert ref["name"] in secrets or ref.get("optional"), f"{label}: Secret {ref['name']}"
            for variable in c.get("env", []):
                if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["name"] in secrets, f"{label}: Secret {ref['name']}"
    for account in of_kind(resources, "ServiceAccount"):
        assert account.get("automountServiceAccountToken") is False


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_database_secret_comes_from_the_postgres_cluster(name: str) -> None:
    resources = rendered(name)
    clusters = of_kind(resources, "Cluster")
    assert len(clusters) == 1
    cluster = clusters[0]["metadata"]["name"]
    for deployment in firstline_deployments(resources):
        env = env_of(deployment)
        assert env["PGUSER"]["secretKeyRef"] == {"name": f"{cluster}-app", "key": "username"}
        assert env["PGPASSWORD"]["secretKeyRef"] == {"name": f"{cluster}-app", "key": "password"}
        assert env["DATABASE_URL"].startswith(f"postgresql://{cluster}-rw:5432/"), "the primary's Service"


@pytest.mark.parametrize("name", APP_BUILDS)
def test_smtp_intake_is_published_by_a_load_balancer(name: str) -> None:
    resources = rendered(name)
    ingest_pods = find(resources, "Deployment", "ingest")["spec"]["template"]["metadata"]["labels"]
    public = [
        s
        for s in of_kind(resources, "Service")
        if s["spec"].get("type") in ("LoadBalancer", "NodePort")
        and selector_matches({"matchLabels": s["spec"]["selector"]}, ingest_pods)
    ]
    assert len(public) == 1
    assert [(p["port"], p["targetPort"]) for p in public[0]["spec"]["ports"]] == [(25, "smtp")]
    others = [s["metadata"]["name"] for s in of_kind(resources, "Service") if s not in public]
    assert all(find(resources, "Service", o)["spec"].get("type", "ClusterIP") == "ClusterIP" for o in others)


@pytest.mark.parametrize("name", APP_BUILDS)
def test_services_and_pdbs_select_pods_and_named_ports(name: str) -> None:
    resources = rendered(name)
    pods = pod_templates(resources)
    for svc in of_kind(resources, "Service"):
        matched = [
            spec for _, labels, spec in pods if selector_matches({"matchLabels": svc["spec"]["selector"]}, labels)
        ]
        assert matched, f"{name}: Service {svc['metadata']['name']} selects no pods"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            declared = {(p.get("name"), p["containerPort"]) for spec in matched for c in spec["containers"]
                        for p in c.get("ports", [])}  # fmt: skip
            assert any(target in pair for pair in declared), f"{name}: {svc['metadata']['name']} -> {target}"
    for pdb in of_kind(resources, "PodDisruptionBudget"):
        assert any(selector_matches(pdb["spec"]["selector"], labels) for _, labels, _ in pods), pdb["metadata"]


# --------------------------------------------------------------------------- autoscaling

CONSUME_CALL = re.compile(r"\.consume\(\s*[\"']([\w.-]+)[\"']\s*,\s*\[([^\]]*)\]")


def registered_consumers(service: str) -> dict[str, set[str]] | None:
    """Consumer name -> topics, from the service.consume(...) calls of services/<service>/app.py."""
    app = ROOT / "services" / service / "app.py"
    if not app.exists():
        return None
    consumers = {}
    for name, topic_list in CONSUME_CALL.findall(app.read_text()):
        constants = [c.strip() for c in topic_list.split(",") if c.strip()]
        consumers[name] = {getattr(shared.events, c, c.strip("\"'")) for c in constants}
    return consumers


def _triggers(name: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (so["spec"]["scaleTargetRef"]["name"], trigger["metadata"])
        for so in of_kind(rendered(name), "ScaledObject")
        for trigger in so["spec"]["triggers"]
    ]


@pytest.mark.parametrize("name", APP_BUILDS)
def test_scaled_objects_target_deployments_and_watch_their_groups(name: str) -> None:
    resources = rendered(name)
    bootstrap = config_map(resources)["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = config_map(resources).get("KAFKA_TOPIC_PREFIX", "")
    scaled = of_kind(resources, "ScaledObject")
    assert {so["spec"]["scaleTargetRef"]["name"] for so in scaled} == {"router", "tickets", "notify"}, (
        "every service that consumes Kafka topics scales on its lag"
    )
    for so in scaled:
        target = find(resources, "Deployment", so["spec"]["scaleTargetRef"]["name"])
        assert target, f"{name}: ScaledObject {so['metadata']['name']} targets no Deployment"
        service = env_of(target)["SERVICE_NAME"]
        spec = so["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], "never to zero: the services also serve HTTP"
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            assert meta["bootstrapServers"] == bootstrap, "KEDA must reach the same brokers as the services"
            assert meta["consumerGroup"].startswith(f"{prefix}{service}."), (
                "groups are <KAFKA_TOPIC_PREFIX><SERVICE_NAME>.<consumer name> (shared/bus.py)"
            )
            assert meta["topic"] in ALL_TOPICS, f"{meta['topic']} is not in shared/events.py"
            assert int(meta["lagThreshold"]) > 0
    for hpa in of_kind(resources, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and find(resources, "Deployment", ref["name"])
        assert ref["name"] not in {so["spec"]["scaleTargetRef"]["name"] for so in scaled}, (
            "KEDA makes its own HPA: a second one on the same Deployment fights it"
        )
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(resources, "HorizontalPodAutoscaler")} == {
        "gateway",
        "ingest",
    }


@pytest.mark.parametrize("name", OVERLAYS)
def test_kafka_address_names_the_overlay_namespace(name: str) -> None:
    resources = rendered(name)
    kafka = of_kind(resources, "Kafka")[0]
    expected = f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc:9092"
    assert config_map(resources)["KAFKA_BOOTSTRAP_SERVERS"] == expected
    assert all(meta["bootstrapServers"] == expected for _, meta in _triggers(name))


@pytest.mark.parametrize("name", OVERLAYS)
def test_scaling_stays_within_the_partitions(name: str) -> None:
    resources = rendered(name)
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(resources, "KafkaTopic")}
    assert config_map(resources)["KAFKA_TOPIC_PARTITIONS"] == str(max(partitions.values()))
    for so in of_kind(resources, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            topic = trigger["metadata"]["topic"]
            assert so["spec"]["maxReplicaCount"] <= partitions[topic], (
                f"{so['metadata']['name']}: more replicas than {topic} has partitions would sit idle"
            )


def _consumer_groups() -> list[str]:
    return sorted({meta["consumerGroup"] for _, meta in _triggers("base")})


@pytest.mark.parametrize("group", _consumer_groups())
def test_consumer_groups_match_the_services_consumers(group: str) -> None:
    service, consumer = group.split(".", 1)
    registered = registered_consumers(service)
    if not registered:
        pytest.skip(f"services/{service}/app.py not written yet (or no literal consumer names)")
    assert consumer in registered, (
        f"KEDA watches group {group}, but services/{service}/app.py registers consumers {sorted(registered)}: "
        "rename one side (deploy/k8s/base/autoscaling.yaml, docs/deploy.md)"
    )
    topics = {meta["topic"] for _, meta in _triggers("base") if meta["consumerGroup"] == group}
    assert topics <= registered[consumer], f"{group} reads {registered[consumer]}, KEDA measures {topics}"


@pytest.mark.parametrize("service", ["router", "tickets", "notify"])
def test_every_consumer_of_a_lag_scaled_service_has_a_trigger(service: str) -> None:
    registered = registered_consumers(service)
    if not registered:
        pytest.skip(f"services/{service}/app.py not written yet")
    watched = {meta["consumerGroup"] for target, meta in _triggers("base") if target == service}
    for consumer, topics in registered.items():
        assert f"{service}.{consumer}" in watched, (
            f"{service}.{consumer} ({sorted(topics)}) has no KEDA trigger: its lag would not scale {service}"
        )


# --------------------------------------------------------------------------- network policies

KAFKA_POD = {"strimzi.io/cluster": "firstline", "strimzi.io/kind": "Kafka", "strimzi.io/name": "firstline-kafka"}
POSTGRES_POD = {"cnpg.io/cluster": "firstline-db", "cnpg.io/instanceRole": "primary"}
KUBE_SYSTEM = {"kubernetes.io/metadata.name": "kube-system"}
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
OPERATOR_PODS = [KAFKA_POD, POSTGRES_POD]


class Endpoint:
    """A pod (labels, namespace labels, its ports) or an address outside the cluster."""

    def __init__(self, labels: dict[str, str] | None, namespace: dict[str, str] | None = None, ports=None) -> None:
        self.labels = labels  # None: outside the cluster
        self.namespace = namespace  # None: the application's namespace
        self.ports: dict[str, int] = ports or {}


def _endpoints(resources: tuple[Resource, ...]) -> dict[str, Endpoint]:
    endpoints = {
        name: Endpoint(labels, ports={p["name"]: p["containerPort"] for c in spec["containers"] for p in c["ports"]})
        for name, labels, spec in pod_templates(resources)
    }
    endpoints["kafka"] = Endpoint(KAFKA_POD, ports={"tcp-clients": 9092})
    endpoints["postgres"] = Endpoint(POSTGRES_POD, ports={"postgresql": 5432})
    endpoints["dns"] = Endpoint({"k8s-app": "kube-dns"}, KUBE_SYSTEM)
    endpoints["prometheus"] = Endpoint({"app.kubernetes.io/name": "prometheus"}, MONITORING)
    endpoints["internet"] = Endpoint(None)
    return endpoints


def _peer_matches(peer: dict[str, Any], other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return other.labels is None
    if other.labels is None:
        return False
    if "namespaceSelector" in peer:
        namespace = other.namespace or {"kubernetes.io/metadata.name": NAMESPACE}
        return selector_matches(peer["namespaceSelector"], namespace) and selector_matches(
            peer.get("podSelector"), other.labels
        )
    return other.namespace is None and selector_matches(peer.get("podSelector"), other.labels)


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str, target: Endpoint) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None or wanted == port or target.ports.get(wanted) == port:
            return True
    return False


def _side_allows(policies, pod: Endpoint, other: Endpoint, port, protocol, direction, target: Endpoint) -> bool:
    if pod.labels is None or pod.namespace is not None:
        return True  # outside what these policies govern
    kind, peers_key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    selecting = [
        p
        for p in policies
        if selector_matches(p["spec"]["podSelector"], pod.labels) and kind in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(peer, other) for peer in peers)) and _port_matches(
                rule.get("ports"), port, protocol, target
            ):
                return True
    return False


def reachable(resources, source: str, destination: str, port: int, protocol: str = "TCP") -> bool:
    policies = of_kind(resources, "NetworkPolicy")
    endpoints = _endpoints(resources)
    src, dst = endpoints[source], endpoints[destination]
    return _side_allows(policies, src, dst, port, protocol, "egress", dst) and _side_allows(
        policies, dst, src, port, protocol, "ingress", dst
    )


@pytest.mark.parametrize("name", APP_BUILDS)
def test_network_policies_select_existing_pods(name: str) -> None:
    resources = rendered(name)
    pods = [labels for _, labels, _ in pod_templates(resources)]
    for policy in of_kind(resources, "NetworkPolicy"):
        pname = policy["metadata"]["name"]
        assert any(selector_matches(policy["spec"]["podSelector"], labels) for labels in pods), (
            f"{name}: NetworkPolicy {pname} selects no pod"
        )
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction, []):
                for peer in rule.get(key, []):
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        assert any(selector_matches(peer["podSelector"], labels) for labels in pods + OPERATOR_PODS), (
                            f"{name}: NetworkPolicy {pname} names pods that do not exist: {peer['podSelector']}"
                        )


@pytest.mark.parametrize("name", APP_BUILDS)
def test_default_deny_covers_every_firstline_pod(name: str) -> None:
    resources = rendered(name)
    deny = [
        p
        for p in of_kind(resources, "NetworkPolicy")
        if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "a default-deny policy"
    for _, labels, _ in pod_templates(resources):
        assert any(selector_matches(p["spec"]["podSelector"], labels) for p in deny), labels


@pytest.mark.parametrize("name", APP_BUILDS)
def test_each_service_reaches_only_what_it_needs(name: str) -> None:
    r = rendered(name)
    for service in SERVICES:
        port = PORTS[service]
        assert reachable(r, service, "kafka", 9092), f"{service} -> Kafka"
        assert reachable(r, service, "postgres", 5432), f"{service} -> PostgreSQL"
        assert reachable(r, service, "dns", 53, "UDP"), f"{service} -> DNS"
        assert reachable(r, "prometheus", service, port), f"Prometheus -> {service} /metrics"
        assert not reachable(r, service, "internet", 443), f"{service} -> the internet"
        assert not reachable(r, service, "postgres", 8000), f"{service} -> PostgreSQL's status port"
    # from outside: the gateway's UI and the SMTP intake, nothing else
    assert reachable(r, "internet", "gateway", PORTS["gateway"])
    assert reachable(r, "internet", "ingest", SMTP_INTAKE_PORT)
    for service in ("ingest", "router", "tickets", "notify"):
        assert not reachable(r, "internet", service, PORTS[service]), f"internet -> {service} internal API"
    # the gateway calls ingest, router and tickets; nobody else calls anybody
    for service in ("ingest", "router", "tickets"):
        assert reachable(r, "gateway", service, PORTS[service]), f"gateway -> {service}"
    assert not reachable(r, "gateway", "notify", PORTS["notify"])
    assert reachable(r, "router", "tickets", PORTS["tickets"]), "router confirms unknown queues with tickets"
    for source in ("ingest", "router", "tickets", "notify"):
        for destination in SERVICES:
            if destination != source and (source, destination) != ("router", "tickets"):
                assert not reachable(r, source, destination, PORTS[destination]), f"{source} -> {destination}"
    # mail out: notify to the relay; ingest to the mailboxes it polls
    assert reachable(r, "notify", "internet", 587)
    assert reachable(r, "notify", "internet", 25)
    assert reachable(r, "ingest", "internet", 993)
    for service in ("router", "tickets", "gateway"):
        assert not reachable(r, service, "internet", 25), f"{service} -> SMTP"
    if name == "dev":
        assert reachable(r, "notify", "mailpit", 1025)
        assert not reachable(r, "router", "mailpit", 1025)


# --------------------------------------------------------------------------- monitoring


@pytest.mark.parametrize("name", APP_BUILDS)
def test_service_monitor_scrapes_every_service(name: str) -> None:
    resources = rendered(name)
    monitors = of_kind(resources, "ServiceMonitor")
    assert len(monitors) == 1
    monitor = monitors[0]["spec"]
    scraped = [
        s for s in of_kind(resources, "Service") if selector_matches(monitor["selector"], s["metadata"]["labels"])
    ]
    assert {s["metadata"]["name"] for s in scraped} == set(SERVICES), "each service's /metrics, once"
    endpoint_ports = {e["port"] for e in monitor["endpoints"]}
    for svc in scraped:
        assert endpoint_ports & {p["name"] for p in svc["spec"]["ports"]}, svc["metadata"]["name"]
        assert svc["metadata"]["labels"][monitor["jobLabel"]] == svc["metadata"]["name"], (
            "job label = service name, as the dashboard and docker-compose's Prometheus have it"
        )
    assert all(e.get("path", "/metrics") == "/metrics" for e in monitor["endpoints"])


@pytest.mark.parametrize("name", APP_BUILDS)
def test_alert_rules_use_metrics_the_services_export(name: str) -> None:
    rules = [
        rule for pr in of_kind(rendered(name), "PrometheusRule") for g in pr["spec"]["groups"] for rule in g["rules"]
    ]
    assert rules
    for rule in rules:
        unknown = promql_metric_names(rule["expr"]) - known_series()
        assert not unknown, f"alert {rule['alert']}: {unknown} are not exported (shared/metrics.py)"


# --------------------------------------------------------------------------- Kafka (Strimzi)


def _brokers(resources: tuple[Resource, ...], cluster: str) -> int:
    pools = [p for p in of_kind(resources, "KafkaNodePool") if p["metadata"]["labels"]["strimzi.io/cluster"] == cluster]
    return sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])


@pytest.mark.parametrize("name", ["operators", *OVERLAYS])
def test_kafka_runs_in_kraft_mode_with_node_pools(name: str) -> None:
    resources = rendered(name)
    (kafka,) = of_kind(resources, "Kafka")
    cluster = kafka["metadata"]["name"]
    annotations = kafka["metadata"].get("annotations", {})
    assert annotations.get("strimzi.io/kraft") == "enabled"
    assert annotations.get("strimzi.io/node-pools") == "enabled"
    assert "zookeeper" not in kafka["spec"]
    assert "replicas" not in kafka["spec"]["kafka"] and "storage" not in kafka["spec"]["kafka"], "node pools hold them"
    pools = of_kind(resources, "KafkaNodePool")
    assert pools and all(p["metadata"]["labels"]["strimzi.io/cluster"] == cluster for p in pools)
    roles = {role for p in pools for role in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for pool in pools:
        assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
        assert pool["spec"]["replicas"] >= 1
        volumes = pool["spec"]["storage"].get("volumes", [pool["spec"]["storage"]])
        assert any(v.get("kraftMetadata") == "shared" for v in volumes) or pool["spec"]["storage"]["type"] != "jbod"
    plain = [listener for listener in kafka["spec"]["kafka"]["listeners"] if listener["port"] == 9092]
    assert plain and plain[0]["type"] == "internal" and plain[0]["tls"] is False
    config = kafka["spec"]["kafka"]["config"]
    brokers = _brokers(resources, cluster)
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert int(config[key]) <= brokers, f"{name}: {key} above the {brokers} broker(s)"
    assert int(config["min.insync.replicas"]) <= int(config["default.replication.factor"])
    assert int(config["message.max.bytes"]) >= MAX_MESSAGE_BYTES, "the clients send up to MAX_MESSAGE_BYTES"
    assert int(config["replica.fetch.max.bytes"]) >= MAX_MESSAGE_BYTES
    assert str(config["auto.create.topics.enable"]).lower() == "false"
    assert "topicOperator" in kafka["spec"]["entityOperator"], "KafkaTopic resources need the Topic Operator"


@pytest.mark.parametrize("name", ["operators", *OVERLAYS])
def test_topics_cover_the_event_catalogue_and_its_dead_letters(name: str) -> None:
    resources = rendered(name)
    (kafka,) = of_kind(resources, "Kafka")
    brokers = _brokers(resources, kafka["metadata"]["name"])
    topics = of_kind(resources, "KafkaTopic")
    expected = set(ALL_TOPICS) | {f"{t}.dlq" for t in ALL_TOPICS}
    assert {t["spec"]["topicName"] for t in topics} == expected
    for topic in topics:
        spec = topic["spec"]
        label = f"{name}: {spec['topicName']}"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"], label
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", topic["metadata"]["name"]), label
        assert spec["partitions"] >= 1 and 1 <= spec["replicas"] <= brokers, label
        assert int(spec["config"]["min.insync.replicas"]) <= spec["replicas"], label
        assert int(spec["config"]["max.message.bytes"]) >= MAX_MESSAGE_BYTES, label
        assert int(spec["config"]["retention.ms"]) == -1 or int(spec["config"]["retention.ms"]) >= 86_400_000, label
    retention = {t["spec"]["topicName"]: int(t["spec"]["config"]["retention.ms"]) for t in topics}
    assert retention["ticket.events"] == -1, "ticket.events is replayed from offset 0 to rebuild read models"


# --------------------------------------------------------------------------- PostgreSQL (CloudNativePG)


@pytest.mark.parametrize("name", ["operators", *OVERLAYS])
def test_one_database_per_service_in_one_cluster(name: str) -> None:
    resources = rendered(name)
    (cluster,) = of_kind(resources, "Cluster")
    spec = cluster["spec"]
    owner = spec["bootstrap"]["initdb"]["owner"]
    assert spec["instances"] >= 1 and spec["storage"]["size"]
    assert spec["imageName"].split(":")[-1].split(".")[0] == "16", "PostgreSQL 16, as in docker-compose"
    databases = of_kind(resources, "Database")
    assert {d["spec"]["name"] for d in databases} == {f"firstline_{s}" for s in SERVICES}
    for database in databases:
        assert database["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
        assert database["spec"]["owner"] == owner, "the role whose credentials the services get"
    assert spec["bootstrap"]["initdb"]["database"] in {d["spec"]["name"] for d in databases}


@pytest.mark.parametrize("name", OVERLAYS)
def test_postgres_has_connections_for_every_replica(name: str) -> None:
    resources = rendered(name)
    (cluster,) = of_kind(resources, "Cluster")
    pool = int(config_map(resources)["DB_POOL_MAX"])
    max_replicas = {
        so["spec"]["scaleTargetRef"]["name"]: so["spec"]["maxReplicaCount"] for so in of_kind(resources, "ScaledObject")
    }
    max_replicas |= {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
        for h in of_kind(resources, "HorizontalPodAutoscaler")
    }
    needed = sum(max_replicas.get(s, find(resources, "Deployment", s)["spec"]["replicas"]) * pool for s in SERVICES)
    available = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    assert needed + 20 <= available, f"{name}: {needed} pool connections at full scale, max_connections {available}"


OPERATOR_KINDS = {"Namespace", "Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "Database"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_two_step_apply_puts_infrastructure_first(name: str) -> None:
    """docs/deploy.md applies `-l app.kubernetes.io/part-of!=firstline` first (namespace, Kafka,
    topics, PostgreSQL), waits, then everything: the services must find their topics declared,
    or they create them themselves with replication factor 1."""
    for resource in rendered(name):
        labelled = resource["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "firstline"
        if resource["kind"] in OPERATOR_KINDS:
            assert not labelled, f"{resource['kind']} {resource['metadata']['name']} belongs to the first step"
        else:
            assert labelled, f"{resource['kind']} {resource['metadata']['name']} needs app.kubernetes.io/part-of"


def test_dev_overlay_selects_its_own_deployments_by_label() -> None:
    config = yaml.safe_load((BUILDS["dev"] / "kustomization.yaml").read_text())
    selectors = [p["target"]["labelSelector"] for p in config["patches"] if "labelSelector" in p.get("target", {})]
    for selector in selectors:
        matched = [
            d["metadata"]["name"]
            for d in of_kind(rendered("dev"), "Deployment")
            if label_selector_matches(selector, d["metadata"]["labels"])
        ]
        assert sorted(matched) == SERVICES

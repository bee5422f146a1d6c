"""A small kustomize, enough for deploy/k8s: renders a kustomization offline, in Python.

Supports what the Firstline overlays use: ``resources`` (files and folders, recursively),
``patches`` (strategic merge patches matched by kind and name, or by a ``target``; JSON 6902
patches with a ``target``), ``replicas``, ``images`` and ``namespace``. Anything else in a
kustomization.yaml is refused, so a new feature cannot slip past the tests unrendered.

Strategic merge follows kustomize: built-in kinds merge the lists Kubernetes declares a merge
key for (containers by name, env by name, ...); custom resources replace lists whole. When the
``kustomize`` or ``kubectl`` binary is installed, test_manifests.py checks that both render the
same objects.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "patches", "replicas", "images", "namespace"}

# API groups whose kinds kustomize knows the schema of (strategic merge keys apply).
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
}
# list field -> merge key, for built-in kinds (the patchMergeKey of the Kubernetes API)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "tolerations": None,  # atomic in practice: replaced
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(Exception):
    pass


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def group_of(resource: Resource) -> str:
    api_version = resource.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""


def build(folder: Path) -> list[Resource]:
    """Render the kustomization in ``folder`` (what ``kustomize build folder`` prints)."""
    folder = folder.resolve()
    config_path = folder / "kustomization.yaml"
    if not config_path.exists():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    config = yaml.safe_load(config_path.read_text()) or {}
    unknown = set(config) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{config_path}: fields this renderer does not support: {sorted(unknown)}")

    resources: list[Resource] = []
    for entry in config.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            resources += build(path)
        elif path.is_file():
            resources += load_documents(path)
        else:
            raise KustomizeError(f"{config_path}: resource {entry} not found")
    _check_unique(resources, config_path)

    for patch in config.get("patches", []):
        _apply_patch(resources, patch, folder)
    for replica in config.get("replicas", []):
        _set_replicas(resources, replica["name"], replica["count"], config_path)
    for image in config.get("images", []):
        _set_image(resources, image)
    if namespace := config.get("namespace"):
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = namespace
    return resources


def _check_unique(resources: list[Resource], where: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for resource in resources:
        key = (resource["kind"], resource["metadata"].get("namespace", ""), resource["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{where}: {key} declared twice")
        seen.add(key)


# --------------------------------------------------------------------------- patches


def _apply_patch(resources: list[Resource], patch: dict[str, Any], folder: Path) -> None:
    if "path" in patch:
        text = (folder / patch["path"]).read_text()
    elif "patch" in patch:
        text = patch["patch"]
    else:
        raise KustomizeError(f"{folder}: a patch needs path or patch")
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    target = patch.get("target")
    if len(documents) == 1 and isinstance(documents[0], list):
        if not target:
            raise KustomizeError(f"{folder}: a JSON 6902 patch needs a target")
        matched = [r for r in resources if _matches(r, target)]
        if not matched:
            raise KustomizeError(f"{folder}: patch target {target} matches nothing")
        for resource in matched:
            _json6902(resource, documents[0])
        return
    for document in documents:
        if target:
            matched = [r for r in resources if _matches(r, target)]
        else:
            selector = {"kind": document["kind"], "name": re.escape(document["metadata"]["name"])}
            matched = [r for r in resources if _matches(r, selector)]
        if not matched:
            raise KustomizeError(f"{folder}: patch {target or document['metadata']['name']} matches nothing")
        for resource in matched:
            body = {k: v for k, v in document.items() if k not in ("apiVersion", "kind")}
            if target:  # the patch's own name is a placeholder when a target selects
                body = copy.deepcopy(body)
                body.get("metadata", {}).pop("name", None)
            _strategic_merge(resource, body, builtin=group_of(resource) in BUILTIN_GROUPS)


def _matches(resource: Resource, target: dict[str, Any]) -> bool:
    metadata = resource.get("metadata", {})
    if "kind" in target and target["kind"] != resource.get("kind"):
        return False
    if "group" in target and target["group"] != group_of(resource):
        return False
    if "version" in target and target["version"] != resource.get("apiVersion", "").split("/")[-1]:
        return False
    if "name" in target and not re.fullmatch(target["name"], metadata.get("name", "")):
        return False
    if "namespace" in target and not re.fullmatch(target["namespace"], metadata.get("namespace", "")):
        return False
    if "labelSelector" in target and not label_selector_matches(target["labelSelector"], metadata.get("labels", {})):
        return False
    return True


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """The string form: ``a=b,c!=d,e`` (equality, inequality, existence)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.strip().rstrip("=")) != value.strip().lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _strategic_merge(base: dict[str, Any], patch: dict[str, Any], *, builtin: bool) -> None:
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _strategic_merge(base[key], value, builtin=builtin)
        elif (
            isinstance(value, list)
            and builtin
            and MERGE_KEYS.get(key)
            and isinstance(base.get(key), list)
            and all(isinstance(item, dict) for item in value + base[key])
        ):
            merge_key = MERGE_KEYS[key]
            for item in value:
                existing = next((b for b in base[key] if b.get(merge_key) == item.get(merge_key)), None)
                if existing is None:
                    base[key].append(copy.deepcopy(item))
                else:
                    _strategic_merge(existing, item, builtin=builtin)
        else:
            base[key] = copy.deepcopy(value)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _json6902(resource: Resource, operations: list[dict[str, Any]]) -> None:
    for operation in operations:
        parts = _pointer(operation["path"])
        parent: Any = resource
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        op = operation["op"]
        if op in ("add", "replace"):
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif op == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if op == "replace" and last not in parent:
                    raise KustomizeError(f"replace of missing {operation['path']} in {resource['metadata']['name']}")
                parent[last] = value
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise KustomizeError(f"JSON 6902 op {op!r} not supported here")


# --------------------------------------------------------------------------- replicas, images


def _set_replicas(resources: list[Resource], name: str, count: int, where: Path) -> None:
    matched = [r for r in resources if r["kind"] in POD_TEMPLATE_KINDS and r["metadata"]["name"] == name]
    if not matched:
        raise KustomizeError(f"{where}: replicas for {name}, which is not a workload here")
    for resource in matched:
        resource["spec"]["replicas"] = count


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    name, tag = image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
    return name, tag, digest


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    if resource["kind"] in POD_TEMPLATE_KINDS:
        return resource["spec"]["template"]["spec"]
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if resource["kind"] == "Pod":
        return resource["spec"]
    return None


def _set_image(resources: list[Resource], image: dict[str, Any]) -> None:
    for resource in resources:
        spec = pod_spec(resource)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            else:
                container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")

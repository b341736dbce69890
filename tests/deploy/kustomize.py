"""A small, strict Kustomize renderer for the subset k8s/ uses, so tests need no binary.

Supported, with Kustomize's semantics: `resources` (files and directories, recursively),
`namespace`, `labels` (metadata labels only, `includeTemplates` optional), `patches` (strategic
merge patches from a file, selected by `target` kind and name) and `images`. Anything else in
a kustomization raises, so the manifests cannot drift past what this renders faithfully.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "patches", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "IngressClass", "PriorityClass", "CustomResourceDefinition"}
# Strategic-merge keys of the built-in kinds' lists we patch; other lists are replaced whole,
# as Kubernetes does for lists without a patchMergeKey (tolerations, args, ...).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath"}
# Custom resources get a JSON merge patch: every list is replaced whole.
BUILTIN_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2",
                  "networking.k8s.io/v1"}


class KustomizeError(ValueError):
    """A kustomization uses something this renderer does not support, or is inconsistent."""


def build(directory: Path) -> list[dict[str, Any]]:
    """Render the kustomization in `directory` like `kustomize build`, as a list of objects."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}: unsupported fields {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(build(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    # Kustomize's order of built-in transformers: namespace, patches, labels, images.
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, objects)
    for label in kustomization.get("labels", []):
        _apply_labels(label, objects)
    for image in kustomization.get("images", []):
        _apply_image(image, objects)
    _check_unique(objects)
    return objects


def _apply_patch(directory: Path, patch: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    if set(patch) != {"path", "target"} or set(patch["target"]) - {"kind", "name"}:
        raise KustomizeError(f"only `path` patches with a kind/name target are supported: {patch}")
    body = yaml.safe_load((directory / patch["path"]).read_text())
    target = patch["target"]
    matches = [o for o in objects if all(_field(o, key) == value for key, value in target.items())]
    if not matches:
        raise KustomizeError(f"patch {patch['path']} matches no resource ({target})")
    for obj in matches:
        strategic = obj["apiVersion"] in BUILTIN_GROUPS
        merged = _merge(obj, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")},
                        strategic)
        obj.clear()
        obj.update(merged)


def _field(obj: dict[str, Any], key: str) -> Any:
    return obj["kind"] if key == "kind" else obj["metadata"]["name"]


def _merge(base: Any, patch: Any, strategic: bool, key: str | None = None) -> Any:
    if isinstance(patch, dict) and isinstance(base, dict):
        out = copy.deepcopy(base)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            elif name in out:
                out[name] = _merge(out[name], value, strategic, name)
            else:
                out[name] = copy.deepcopy(value)
        return out
    if strategic and isinstance(patch, list) and isinstance(base, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        out = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, old in enumerate(out) if old[merge_key] == item[merge_key]),
                         None)
            if index is None:
                out.append(copy.deepcopy(item))
            else:
                out[index] = _merge(out[index], item, strategic)
        return out
    return copy.deepcopy(patch)


def _apply_labels(label: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    if label.get("includeSelectors") or set(label) - {"pairs", "includeTemplates"}:
        raise KustomizeError(f"only metadata (and template) labels are supported: {label}")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(label["pairs"])
        template = obj.get("spec", {}).get("template")
        if label.get("includeTemplates") and template is not None:
            template.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])


def _apply_image(image: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"unsupported image fields: {image}")
    for container in _containers(objects):
        name, tag = split_image(container["image"])
        if name != image["name"]:
            continue
        new = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{new}@{image['digest']}"
        else:
            tag = image.get("newTag", tag)
            container["image"] = f"{new}:{tag}" if tag else new


def split_image(ref: str) -> tuple[str, str | None]:
    """`registry:5000/name:tag@sha256:...` -> (`registry:5000/name`, `tag`)."""
    ref = ref.partition("@")[0]
    name, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:
        return ref, None
    return name, tag


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        found.extend(pod.get("initContainers", []) + pod.get("containers", []))
    return found


def _check_unique(objects: list[dict[str, Any]]) -> None:
    seen = set()
    for obj in objects:
        ident = (obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"),
                 obj["metadata"]["name"])
        if ident in seen:
            raise KustomizeError(f"duplicate resource {ident}")
        seen.add(ident)

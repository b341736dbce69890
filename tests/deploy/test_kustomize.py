"""The test renderer follows Kustomize where k8s/ relies on it, and each overlay renders."""

from __future__ import annotations

import pytest
import yaml

from .conftest import OVERLAYS
from .helpers import container, find
from .kustomize import KustomizeError, build, split_image


def write(directory, name, text):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: w}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      tolerations: [{key: x, operator: Exists}]
      containers:
        - name: one
          image: img:1
          env: [{name: A, value: "1"}, {name: B, value: "2"}]
          resources: {requests: {cpu: "1", memory: 1Gi}}
        - {name: two, image: other:2}
"""

PATCH = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: w}
spec:
  template:
    spec:
      tolerations: [{key: y, operator: Exists}]
      containers:
        - name: one
          env: [{name: B, value: "3"}, {name: C, value: "4"}]
          resources: {limits: {nvidia.com/gpu: 1}}
"""


def test_strategic_merge_patch_merges_containers_and_env_by_name(tmp_path):
    write(tmp_path / "base", "kustomization.yaml",
          "namespace: ns\nlabels: [{pairs: {p: q}}]\nresources: [d.yaml]\n")
    write(tmp_path / "base", "d.yaml", DEPLOYMENT)
    write(tmp_path / "over", "kustomization.yaml", yaml.safe_dump({
        "resources": ["../base"],
        "patches": [{"path": "p.yaml", "target": {"kind": "Deployment", "name": "w"}}],
        "images": [{"name": "img", "newName": "reg/img", "newTag": "9"}],
    }))
    write(tmp_path / "over", "p.yaml", PATCH)
    (obj,) = build(tmp_path / "over")
    one, two = obj["spec"]["template"]["spec"]["containers"]
    assert one["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                          {"name": "C", "value": "4"}]
    assert one["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"nvidia.com/gpu": 1}}
    assert one["image"] == "reg/img:9" and two == {"name": "two", "image": "other:2"}
    # Lists without a merge key are replaced, as the API server's strategic merge does.
    assert obj["spec"]["template"]["spec"]["tolerations"] == [{"key": "y", "operator": "Exists"}]
    assert obj["metadata"]["namespace"] == "ns" and obj["metadata"]["labels"] == {"p": "q"}
    # Labels without includeSelectors leave selectors and templates alone.
    assert obj["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert obj["spec"]["template"]["metadata"]["labels"] == {"a": "b"}


def test_unsupported_kustomize_features_are_refused(tmp_path):
    write(tmp_path, "kustomization.yaml", "resources: []\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        build(tmp_path)


def test_a_patch_that_matches_nothing_is_an_error(tmp_path):
    write(tmp_path, "d.yaml", DEPLOYMENT)
    write(tmp_path, "p.yaml", PATCH)
    write(tmp_path, "kustomization.yaml", yaml.safe_dump({
        "resources": ["d.yaml"],
        "patches": [{"path": "p.yaml", "target": {"kind": "Deployment", "name": "nope"}}]}))
    with pytest.raises(KustomizeError, match="matches no resource"):
        build(tmp_path)


@pytest.mark.parametrize(("ref", "expected"), [
    ("saliency-api:0.1.0", ("saliency-api", "0.1.0")),
    ("reg:5000/a/b", ("reg:5000/a/b", None)),
    ("reg:5000/a/b:1@sha256:00", ("reg:5000/a/b", "1")),
])
def test_split_image(ref, expected):
    assert split_image(ref) == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_component_into_the_namespace(rendered, overlay):
    objects = rendered[overlay]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "saliency-api"), ("Service", "saliency-api"),
            ("Ingress", "saliency-api"), ("HorizontalPodAutoscaler", "saliency-api"),
            ("Deployment", "saliency-worker"), ("ScaledObject", "saliency-worker"),
            ("PodDisruptionBudget", "saliency-worker"), ("StatefulSet", "redis"),
            ("Service", "redis"), ("ConfigMap", "saliency-config")} <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "saliency", obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "saliency"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_images_point_at_a_registry_with_a_tag(rendered, overlay):
    for name in ("saliency-api", "saliency-worker"):
        image = container(find(rendered[overlay], "Deployment", name),
                          name.removeprefix("saliency-"))["image"]
        repository, tag = split_image(image)
        assert "/" in repository and tag and tag != "latest", image

"""Each overlay renders with `kubectl kustomize`: every component, in the namespace, with the
overlay's images and the patches it means to apply."""

from __future__ import annotations

import pytest
import yaml

from .conftest import OVERLAYS
from .helpers import container, find, split_image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_component_into_the_namespace(rendered, overlay):
    objects = rendered[overlay]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "saliency-api"), ("Service", "saliency-api"),
            ("Ingress", "saliency-api"), ("HorizontalPodAutoscaler", "saliency-api"),
            ("Deployment", "saliency-worker"), ("ScaledObject", "saliency-worker"),
            ("PodDisruptionBudget", "saliency-worker"), ("Deployment", "saliency-beat"),
            ("StatefulSet", "redis"), ("Service", "redis"), ("NetworkPolicy", "redis"),
            ("ConfigMap", "saliency-config")} <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "saliency", obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "saliency"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_images_point_at_a_registry_with_a_tag(rendered, overlay):
    objects = rendered[overlay]
    for deployment, name in (("saliency-api", "api"), ("saliency-worker", "worker"),
                             ("saliency-reconciler", "reconciler"), ("saliency-beat", "beat")):
        image = container(find(objects, "Deployment", deployment), name)["image"]
        repository, tag = split_image(image)
        assert "/" in repository and tag and tag != "latest", image
    # The scheduler and the reconciler run on the worker image, whatever the overlay names it.
    worker = container(find(objects, "Deployment", "saliency-worker"), "worker")["image"]
    for deployment, name in (("saliency-reconciler", "reconciler"), ("saliency-beat", "beat")):
        assert container(find(objects, "Deployment", deployment), name)["image"] == worker


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_patches_reach_the_worker_and_its_scaler(rendered, overlay, root):
    """Kustomize ignores a patch whose target matches nothing: check that each one landed."""
    objects = rendered[overlay]
    worker = container(find(objects, "Deployment", "saliency-worker"), "worker")
    device = {"cpu": "cpu", "gpu": "cuda"}[overlay]
    assert {"name": "SALIENCY_DEVICE", "value": device} in worker["env"]
    patch = yaml.safe_load((root / "k8s" / "overlays" / overlay / "scaledobject.yaml").read_text())
    spec = find(objects, "ScaledObject", "saliency-worker")["spec"]
    assert spec["maxReplicaCount"] == patch["spec"]["maxReplicaCount"]
    assert spec["triggers"], "the patch must not drop the base's trigger"


@pytest.mark.parametrize(("ref", "expected"), [
    ("saliency-api:0.1.0", ("saliency-api", "0.1.0")),
    ("reg:5000/a/b", ("reg:5000/a/b", None)),
    ("reg:5000/a/b:1@sha256:00", ("reg:5000/a/b", "1")),
])
def test_split_image(ref, expected):
    assert split_image(ref) == expected

"""Every rendered manifest is valid against the Kubernetes OpenAPI schemas (strict: unknown
fields fail), and the KEDA ScaledObject against the CRD schema vendored in schemas/."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from .conftest import OVERLAYS

# The newest Kubernetes the validator knows, and an older one still in common use.
VERSIONS = ("1.29", "1.37")
KEDA_SCHEMA = json.loads(
    (Path(__file__).parent / "schemas" / "keda-scaledobject-v1alpha1.json").read_text())


def custom(obj):
    return obj["apiVersion"].split("/")[0].endswith("keda.sh")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_validate_against_kubernetes_schemas(rendered, overlay, version):
    checked = 0
    for obj in rendered[overlay]:
        if custom(obj):
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_object_validates_against_keda_crd_schema(rendered, overlay):
    scaled = [o for o in rendered[overlay] if custom(o)]
    assert [o["kind"] for o in scaled] == ["ScaledObject"]
    jsonschema.Draft202012Validator.check_schema(KEDA_SCHEMA)
    jsonschema.validate(scaled[0], KEDA_SCHEMA, cls=jsonschema.Draft202012Validator)


def test_validators_reject_what_they_should(rendered):
    """The checks above are not vacuous: a typo or a wrong type fails them."""
    deployment = next(o for o in rendered["gpu"] if o["kind"] == "Deployment")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSIONS[-1], strict=True)
    scaled = next(o for o in rendered["gpu"] if custom(o))
    (trigger,) = scaled["spec"]["triggers"]

    def with_metadata(metadata):
        spec = {**scaled["spec"], "triggers": [{**trigger, "metadata": metadata}]}
        return {**scaled, "spec": spec}

    jsonschema.validate(with_metadata(trigger["metadata"]), KEDA_SCHEMA,
                        cls=jsonschema.Draft202012Validator)
    for bad in ({**trigger["metadata"], "targetValue": 4},  # CRD: metadata values are strings
                {k: v for k, v in trigger["metadata"].items() if k != "valueLocation"},
                {**trigger["metadata"], "valueLocaton": "depth"}):  # a typo KEDA would ignore
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(with_metadata(bad), KEDA_SCHEMA,
                                cls=jsonschema.Draft202012Validator)

"""/openapi.json describes exactly the routes the app serves, and validates as OpenAPI 3.1."""

from __future__ import annotations

import json
import re

from openapi_spec_validator import validate

from api import create_app
from shared.settings import Settings

# Blueprints outside the JSON API contract: the web pages and Flask's static files.
NOT_API = {"pages", "static"}


def _routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in NOT_API:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path):
    app = create_app(Settings(storage_url=tmp_path.as_uri()))
    document = app.test_client().get("/openapi.json").get_json()
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert _routes(app) == documented


def test_the_document_is_valid_openapi():
    with open("api/openapi.json") as f:
        validate(json.load(f))


def test_the_document_describes_each_form_of_data_set_the_service_takes():
    """Each form, as the parser echoes it, is a `Dataset` of the document; annotations are
    taken by a manifest and a prefix only, and are COCO or VOC."""
    from jsonschema import Draft202012Validator

    from shared.spec.datasets import parse_dataset

    with open("api/openapi.json") as f:
        components = json.load(f)["components"]

    def valid(raw: dict) -> bool:
        return Draft202012Validator({"$ref": "#/components/schemas/Dataset",
                                     "components": components}).is_valid(raw)

    coco = {"coco": "s3://b/instances.json"}
    for raw in ({"manifest": "s3://b/m.jsonl", "annotations": coco},
                {"prefix": "s3://b/p/", "labels": "folder", "label_map": {"cat": 3},
                 "annotations": {"voc": "s3://b/Annotations/"}},
                {"webdataset": "s3://b/s-{000..009}.tar", "label_field": "species",
                 "label_map": {"cat": 3}},
                {"huggingface": "s3://b/hf/", "split": "validation", "image_column": "img",
                 "label_column": "breed", "label_map": {"cat": 3}}):
        assert valid(parse_dataset(raw).to_json()), raw
    assert not valid({"webdataset": "s3://b/s.tar", "annotations": coco})
    assert not valid({"prefix": "s3://b/p/", "annotations": {"webdataset": "s3://b/s.tar"}})

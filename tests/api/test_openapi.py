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

"""Names: path traversal and odd Unicode in uploaded files' names, in upload prefixes, in a
job's image names and in the routes' own path parts. A name that would leave its folder is
refused (400, nothing stored); an odd but harmless one is kept as given and still finds its
object; a route never answers anything but its JSON 404 for a name it does not know."""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote, urlparse

import pytest
from e2e.helpers import side_effects
from waiting import job_final

from badinput.cases import PIXELS, clean_png
from badinput.helpers import (
    assert_error,
    assert_map,
    check_worker,
    items_of,
    post_multipart,
    tally,
)

FAMILY = "traversal/unicode names"

TRAVERSING = [
    "..", "../x.png", "a/../../x.png", "/abs.png", "a//b.png", "./a.png", "a/./b.png",
    "a\\..\\b.png", "C:\\x.png", "x.png/", ".", "", "a" * 256 + ".png", "x\x01.png",
    "x\x7f.png", "../" * 40 + "etc/passwd",
]


@pytest.mark.parametrize("name", TRAVERSING, ids=repr)
def test_an_upload_named_out_of_its_folder_is_refused(bad, mallory, name):
    before = side_effects(bad)
    response = post_multipart(mallory, f"{bad.url}/v1/uploads",
                              [("prefix", None, b"names"), ("files", name, clean_png())])
    assert_error(response, 400, "invalid_spec", "files[0]")
    assert side_effects(bad) == before
    tally(FAMILY)


@pytest.mark.parametrize("prefix", ["..", "../../etc", "/abs", "a/../..", "", "a\x00b",
                                    "x" * 300, "a\\b"], ids=repr)
def test_an_upload_prefix_out_of_the_tenants_area_is_refused(bad, mallory, prefix):
    before = side_effects(bad)
    response = post_multipart(mallory, f"{bad.url}/v1/uploads",
                              [("prefix", None, prefix.encode()), ("files", "a.png", clean_png())])
    assert_error(response, 400, "invalid_spec", "prefix")
    assert side_effects(bad) == before
    tally(FAMILY)


ODD_NAMES = [
    "café.png", "名前/画像.png", "with space.png", "\u202egnp.exe", "emoji \U0001f600.png",
    "100%.png", "%2e%2e/x.png", "a#b?c.png", "semi;colon=1.png", "quote'\".png",
    "\u200bzero-width.png", "e\u0301-combining.png",
]


def test_uploads_with_odd_names_keep_them_and_their_uris_find_them(bad, mallory, bad_model,
                                                                   reference, worker):
    storage = bad.backend.storage()
    before = set(storage.list())
    response = post_multipart(mallory, f"{bad.url}/v1/uploads", [("prefix", None, b"names")] + [
        ("files", name, clean_png()) for name in ODD_NAMES])
    assert response.status_code == 201, response.text
    uris = response.json()["uris"]
    added = set(storage.list()) - before
    assert added <= {f"t/mallory/uploads/names/{n}" for n in ODD_NAMES}, added
    job = mallory.post(f"{bad.url}/v1/jobs", json={
        "model": bad_model, "outputs": ["npy"], "inputs": [{"uri": u} for u in uris]},
        timeout=30)
    assert job.status_code == 202, job.text
    job = job_final(mallory, bad.url, job.json()["id"], timeout=180)
    assert job["status"] == "succeeded" and job["progress"]["done"] == len(ODD_NAMES), job
    (want,) = reference.maps([PIXELS])
    for item, uri in zip(items_of(mallory, bad.url, job["id"]), uris, strict=True):
        assert item["input"] == uri
        assert_map(mallory, bad.url, item, want)
    check_worker(bad, worker)
    tally(FAMILY, len(ODD_NAMES))


JOB_NAMES = [
    "../../etc/passwd.png", "%2e%2e%2f%2e%2e%2fx.png", "/etc/shadow", "C:\\Windows\\x.png",
    "\u202egnp.exe", "n" * 10_000 + ".png", "<script>alert(1)</script>.png", "CON",
]


def test_a_jobs_image_names_are_only_labels(bad, mallory, bad_model, reference, worker):
    storage = bad.backend.storage()
    before = set(storage.list())
    response = post_multipart(mallory, f"{bad.url}/v1/jobs", [
        ("spec", None, json.dumps({"model": bad_model, "outputs": ["npy"]}).encode())] + [
        ("images", name, clean_png()) for name in JOB_NAMES])
    assert response.status_code == 202, response.text
    job = job_final(mallory, bad.url, response.json()["id"], timeout=180)
    items = items_of(mallory, bad.url, job["id"])
    assert job["status"] == "succeeded", job
    assert [item["input"] for item in items] == [name[:255] for name in JOB_NAMES]
    added = set(storage.list()) - before
    assert all(key.startswith(f"t/mallory/jobs/{job['id']}/") for key in added), added
    (want,) = reference.maps([PIXELS])
    for item in items:
        assert_map(mallory, bad.url, item, want)
    check_worker(bad, worker)
    tally(FAMILY, len(JOB_NAMES))


JOB = "0123456789abcdef0123456789abcdef"
ROUTE_PATHS = [
    f"/v1/jobs/{JOB}/files/..%2f..%2f..%2fmodels",
    f"/v1/jobs/{JOB}/files/../../../t",
    f"/v1/jobs/{JOB}/files/%2e%2e/%2e%2e/x",
    f"/v1/jobs/{JOB}/files/a%00b",
    f"/v1/jobs/{JOB}/maps/0/0.png%00.npy",
    f"/v1/jobs/{JOB}/maps/../../0.png",
    "/v1/jobs/%2e%2e",
    "/v1/jobs/..%2f..%2fmodels",
    "/v1/jobs/%E2%80%AE",
    "/v1/jobs/" + "f" * 2000,
    "/v1/models/..%2f..%2fetc%2fpasswd",
    "/v1/models/%00",
    "/v1/models/%E2%80%AEevil",
    "/v1/models/" + quote("名前"),
    "/v1/examples/..%2f..%2f..%2fetc%2fpasswd",
    "/v1/examples/%2e%2e",
    "/v1/examples/" + quote("\u202egnp.exe"),
    "/v1/jobs/%ff%fe",
    f"/v1/jobs/{JOB}/files/a?expires=99999999999&sig=%C3%A9",
    f"/v1/jobs/{JOB}/maps/0/0.png?expires=99999999999&sig=%00",
]


@pytest.mark.parametrize("path", ROUTE_PATHS)
def test_an_odd_name_in_a_route_is_a_json_404(bad, path):
    # http.client sends the path exactly as written (no dot-segment removal, no re-quoting).
    url = urlparse(bad.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.request("GET", path, headers={
        "Authorization": f"Bearer {bad.keys['mallory']}"})
    response = connection.getresponse()
    body = response.read()
    connection.close()

    class Answer:  # what assert_error reads of a response
        status_code = response.status
        headers = {"Content-Type": response.getheader("Content-Type", "")}
        text = body.decode("utf-8", "replace")

        @staticmethod
        def json():
            import json

            return json.loads(body)

    assert_error(Answer, 404, "not_found")
    tally(FAMILY)


URI = "file:///nowhere/a.png"
INPUT = '{"model": "tiny-resnet18", "inputs": [{"uri": "URI"%s}]}'.replace("URI", URI)
SURROGATES = [
    ("in a uri", INPUT.replace('a.png"', 'a.png\\ud800"') % ""),
    ("in an id", INPUT % ', "id": "\\ud800"'),
    ("in a label", INPUT % ', "label": "\\udfff"'),
    ("in a mask", INPUT % (', "mask": "' + URI + '\\udc00"')),
    ("reversed pair", INPUT % ', "id": "\\ude00\\ud83d"'),
    ("in a field name", '{"model": "tiny-resnet18", "\\ud800": 1}'),
]


@pytest.mark.parametrize("case", SURROGATES, ids=[c[0] for c in SURROGATES])
def test_a_lone_surrogate_in_json_is_refused(bad, mallory, bad_model, case):
    _, text = case
    before = side_effects(bad)
    response = mallory.post(f"{bad.url}/v1/jobs", data=text.encode(), timeout=30,
                            headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_spec", "surrogate")
    assert side_effects(bad) == before
    tally(FAMILY)


@pytest.mark.parametrize("where", ["class_names", "name"])
def test_a_lone_surrogate_in_a_model_spec_is_refused(bad, mallory, where):
    spec = ('{"name": "sur", "architecture": "resnet18", "num_classes": 1, '
            '"class_names": ["\\ud800"]}' if where == "class_names" else
            '{"name": "sur\\ud800", "architecture": "resnet18", "num_classes": 1}')
    before = side_effects(bad)
    response = post_multipart(mallory, f"{bad.url}/v1/models", [
        ("spec", None, spec.encode()), ("weights", "w", b"\x02" + bytes(7) + b"{}")])
    assert_error(response, 400, "invalid_spec", "surrogate")
    assert side_effects(bad) == before
    tally(FAMILY)

"""Tenant isolation on every route: tenant B gets 404 for all of tenant A's jobs, items, files,
maps, reports, results and models, and cannot read A's objects through inputs or data sets.
A's signed URLs work without a key, for their one object only, and not after they expire;
presigned S3 URLs are signed for one object; the `Host` header never reaches a URL."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from urllib.parse import parse_qsl, quote, urlparse

import pytest
import requests
from badinput.cases import clean_png
from badinput.helpers import assert_error
from waiting import job_final

from devstack import ROOT, start_api
from security.conftest import LOGS, register_ready
from shared.settings import Settings

DOCUMENT = json.loads((ROOT / "api" / "openapi.json").read_text())
JOB_ROUTES = sorted((method, path) for path, ops in DOCUMENT["paths"].items()
                    for method in ops if "{job_id}" in path)


def _items(session, url: str, job_id: str, headers=None) -> list[dict]:
    response = session.get(f"{url}/v1/jobs/{job_id}/items", headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["items"]


@pytest.fixture(scope="module")
def alices(sec, sec_model) -> dict:
    """Alice's upload job (output files) and data-set job (maps cut from shards), finished."""
    alice = sec.session("alice")
    response = alice.post(f"{sec.url}/v1/jobs", timeout=30, files=[
        ("spec", (None, json.dumps({"model": sec_model}))),
        ("images", ("a.png", clean_png())), ("images", ("b.png", clean_png()))])
    assert response.status_code == 202, response.text
    upload_job = job_final(alice, sec.url, response.json()["id"])
    uploaded = alice.post(f"{sec.url}/v1/uploads", data={"prefix": "iso"}, timeout=30, files=[
        ("files", ("one.png", io.BytesIO(clean_png()))),
        ("files", ("two.png", io.BytesIO(clean_png())))])
    assert uploaded.status_code == 201, uploaded.text
    response = alice.post(f"{sec.url}/v1/jobs", timeout=30, json={
        "model": sec_model, "dataset": {"prefix": uploaded.json()["prefix"]}})
    assert response.status_code == 202, response.text
    dataset_job = job_final(alice, sec.url, response.json()["id"])
    assert upload_job["status"] == dataset_job["status"] == "succeeded"
    return {"upload": upload_job["id"], "dataset": dataset_job["id"],
            "uploads": uploaded.json(), "model": sec_model}


def _route_urls(sec, alices: dict) -> list[tuple[str, str]]:
    """(method, URL) of every route of the document that names a job, filled in with alice's
    jobs and names of her real files and maps."""
    alice = sec.session("alice")
    upload_item = _items(alice, sec.url, alices["upload"])[0]
    dataset_item = _items(alice, sec.url, alices["dataset"])[0]
    file_name = urlparse(upload_item["outputs"][0]["npy"]).path.split("/files/", 1)[1]
    map_name = urlparse(dataset_item["outputs"][0]["png"]).path.split("/maps/", 1)[1]
    report = alice.get(f"{sec.url}/v1/jobs/{alices['upload']}/report", timeout=30).json()
    picture = urlparse(report["suspects"][0]["overlay"]).path.split("/report/files/", 1)[1]
    urls = []
    for method, path in JOB_ROUTES:
        job = alices["dataset"] if "/maps/" in path else alices["upload"]
        name = (map_name if "/maps/" in path else
                picture if "/report/files/" in path else file_name)
        url = sec.url + path.replace("{job_id}", job).replace("{name}", name)
        urls.append((method, url))
        if path.endswith("/results"):
            urls += [(method, f"{url}?format={fmt}") for fmt in ("csv", "jsonl")]
    return urls


def test_bob_gets_404_on_every_route_of_alices_jobs(sec, alices):
    alice, bob = sec.session("alice"), sec.session("bob")
    urls = _route_urls(sec, alices)
    assert {(m, urlparse(u).path) for m, u in urls} and len(JOB_ROUTES) >= 7
    for method, url in urls:
        if method == "get":  # alice reads each one: the 404s below are bob's, not the URL's
            assert alice.get(url, timeout=30).status_code in (200, 302), url
        assert_error(bob.request(method, url, timeout=30), 404, "not_found")
        assert_error(requests.request(method, url, timeout=30), 401, "unauthorized")
    for job in (alices["upload"], alices["dataset"]):  # bob's DELETE cancelled nothing
        assert alice.get(f"{sec.url}/v1/jobs/{job}", timeout=10).json()["status"] == "succeeded"


def test_bob_cannot_see_use_or_delete_alices_model(sec, alices):
    alice, bob = sec.session("alice"), sec.session("bob")
    name = alices["model"]
    assert_error(bob.get(f"{sec.url}/v1/models/{name}", timeout=10), 404, "not_found")
    assert_error(bob.delete(f"{sec.url}/v1/models/{name}", timeout=10), 404, "not_found")
    assert name not in [m["name"] for m in bob.get(f"{sec.url}/v1/models", timeout=10)
                        .json()["models"]]
    job = bob.post(f"{sec.url}/v1/jobs", timeout=30, files=[
        ("spec", (None, json.dumps({"model": name}))), ("images", ("a.png", clean_png()))])
    assert_error(job, 404, "not_found", name)
    assert alice.get(f"{sec.url}/v1/models/{name}", timeout=10).json()["status"] == "ready"


def test_bob_cannot_read_alices_objects_through_inputs_or_data_sets(sec, alices, tiny_weights):
    bob = sec.session("bob")
    model = {"name": "bobs-model", "architecture": "resnet18", "num_classes": 10,
             "input_size": 32, "resize": 32}
    registered = bob.post(f"{sec.url}/v1/models", timeout=60, files={
        "spec": (None, json.dumps(model)), "weights": ("w", tiny_weights.read_bytes())})
    assert registered.status_code in (201, 409), registered.text
    uris = alices["uploads"]["uris"]
    storage = sec.storage()
    storage.put("t/bob/manifest.jsonl", json.dumps({"uri": uris[0]}).encode())
    for body, field in (
        ({"inputs": [{"uri": uris[0]}]}, "inputs[0].uri"),
        ({"inputs": [{"uri": storage.uri("t/bob/x.png"), "mask": uris[0]}]}, "inputs[0].mask"),
        ({"dataset": {"prefix": alices["uploads"]["prefix"]}}, "dataset.prefix"),
        ({"dataset": {"manifest": storage.uri(f"t/alice/jobs/{alices['upload']}/results.parquet"
                                              )}}, "dataset.manifest"),
    ):
        response = bob.post(f"{sec.url}/v1/jobs", json={"model": model["name"], **body},
                            timeout=30)
        assert_error(response, 400, "invalid_spec", field)


def _tampered(url: str) -> list[str]:
    """The signed URL made to open something else, or to last longer, or with a forged
    signature."""
    parsed = urlparse(url)
    query = dict(parse_qsl(parsed.query))
    base = f"{parsed.scheme}://{parsed.netloc}"
    other = parsed.path.replace(".npy", ".png") if ".npy" in parsed.path else (
        parsed.path.replace(".png", ".npy"))
    forged = "0" * 64
    return [
        f"{base}{other}?{parsed.query}",
        f"{base}{parsed.path.replace('/0/', '/1/', 1)}?{parsed.query}",
        f"{base}{parsed.path}?expires={int(query['expires']) + 3600}&sig={query['sig']}",
        f"{base}{parsed.path}?expires={query['expires']}&sig={forged}",
        f"{base}{parsed.path}?expires={query['expires']}",
        f"{base}{parsed.path}",
    ]


def test_signed_urls_open_their_one_object_without_a_key(sec, alices):
    alice = sec.session("alice")
    item = _items(alice, sec.url, alices["upload"])[0]
    map_item = _items(alice, sec.url, alices["dataset"])[0]
    for url in (item["outputs"][0]["npy"], map_item["outputs"][0]["npy"]):
        assert url.startswith(sec.url) and "sig=" in url
        assert requests.get(url, timeout=30).status_code == 200
        for tampered in _tampered(url):
            assert_error(requests.get(tampered, timeout=30), 401, "unauthorized")
            # With a key, a URL that is no longer validly signed is the key's: bob's 404.
            assert_error(sec.session("bob").get(tampered, timeout=30), 404, "not_found")


def test_signed_urls_expire(sec, alices):
    api = start_api({**sec.env, "SALIENCY_PRESIGN_EXPIRES_S": "2"}, LOGS)
    try:
        alice = sec.session("alice")
        urls = [_items(alice, api.url, alices[kind])[0]["outputs"][0]["npy"]
                for kind in ("upload", "dataset")]
        assert all(requests.get(u, timeout=30).status_code == 200 for u in urls)
        time.sleep(3.1)
        for url in urls:
            assert_error(requests.get(url, timeout=30), 401, "unauthorized")
    finally:
        api.stop()


@pytest.mark.parametrize("headers", [{"Host": "evil.example"},
                                     {"Host": "evil.example:443", "X-Forwarded-Host": "evil"},
                                     {"X-Forwarded-Host": "evil.example",
                                      "X-Forwarded-Proto": "https"},
                                     {"Forwarded": "host=evil.example;proto=https"}],
                         ids=["Host", "Host and X-Forwarded-Host", "X-Forwarded-Host",
                              "Forwarded"])
def test_the_host_header_never_flows_into_urls(sec, alices, headers):
    alice = sec.session("alice")
    for job in (alices["upload"], alices["dataset"]):
        for item in _items(alice, sec.url, job, headers=headers):
            for output in item["outputs"]:
                for kind in ("npy", "png", "overlay"):
                    assert output[kind].startswith(sec.url + "/v1/jobs/"), output[kind]
                    assert "evil" not in output[kind]


# --- presigned S3 URLs ---------------------------------------------------------------------------

def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_valid(url: str, secret: str) -> bool:
    """Whether `url` carries a valid AWS Signature V4 query signature for exactly its own
    method (GET), host and path, recomputed here from the secret key."""
    parsed = urlparse(url)
    params = dict(parse_qsl(parsed.query, keep_blank_values=True))
    signature = params.pop("X-Amz-Signature")
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                     for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", parsed.path, query, f"host:{parsed.netloc}\n",
                           params["X-Amz-SignedHeaders"], "UNSIGNED-PAYLOAD"])
    date, region, service, terminal = params["X-Amz-Credential"].split("/")[1:]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"],
                         f"{date}/{region}/{service}/{terminal}",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, terminal):
        key = _hmac(key, part)
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(),
                               signature)


def test_presigned_s3_urls_are_signed_for_one_object_and_expire(sec_s3, tiny_weights):
    model = register_ready(sec_s3, tiny_weights)
    alice = sec_s3.session("alice")
    response = alice.post(f"{sec_s3.url}/v1/jobs", timeout=30, files=[
        ("spec", (None, json.dumps({"model": model}))), ("images", ("a.png", clean_png()))])
    job = job_final(alice, sec_s3.url, response.json()["id"])
    (item,) = _items(alice, sec_s3.url, job["id"])
    secret = sec_s3.env["AWS_SECRET_ACCESS_KEY"]
    expires = Settings.from_env(sec_s3.env).presign_expires_s
    urls = [item["outputs"][0][kind] for kind in ("npy", "png", "overlay")]
    results = alice.get(f"{sec_s3.url}/v1/jobs/{job['id']}/results", allow_redirects=False,
                        timeout=30)
    assert results.status_code == 302
    urls.append(results.headers["Location"])
    for url in urls:
        parsed = urlparse(url)
        params = dict(parse_qsl(parsed.query))
        assert parsed.path.startswith("/saliency-test/svc/t/alice/jobs/" + job["id"] + "/")
        assert params["X-Amz-Expires"] == str(expires)
        assert sigv4_valid(url, secret), url
        assert requests.get(url, timeout=30).status_code == 200  # no key needed
        for other in {u for u in urls if u != url}:
            moved = f"{parsed.scheme}://{parsed.netloc}{urlparse(other).path}?{parsed.query}"
            assert not sigv4_valid(moved, secret), "a signature that opens another object"
        longer = url.replace(f"X-Amz-Expires={expires}", f"X-Amz-Expires={expires * 10}")
        assert not sigv4_valid(longer, secret)

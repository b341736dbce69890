"""No route fetches anything outside the configured storage and the data-set roots: URLs,
`file://` paths elsewhere, and loopback, private and link-local addresses are refused in job
inputs, masks, manifests and prefixes, and in webhook URLs (unless allow-listed by name and
port: `localhost` allows port 80 alone); a manifest whose lines name such places fails those
items, and nothing ever connects to them."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from badinput.cases import PIXELS, clean_png
from badinput.helpers import assert_error
from waiting import job_final

LISTENER = "http://127.0.0.1:{port}/a.png"


def _places(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/a.png", f"https://127.0.0.1:{port}/a.png",
        f"http://localhost:{port}/a.png", f"http://[::1]:{port}/a.png",
        "http://169.254.169.254/latest/meta-data/iam/", "http://[fe80::1]/a.png",
        "http://10.0.0.1/a.png", "http://172.16.0.1/a.png", "http://192.168.1.1/a.png",
        f"http://0.0.0.0:{port}/a.png", f"http://2130706433:{port}/a.png",
        f"gopher://127.0.0.1:{port}/_x", f"ftp://127.0.0.1:{port}/a.png",
        "file:///etc/passwd", "file://localhost/etc/hostname", f"file://127.0.0.1:{port}/a.png",
        "s3://another-bucket/a.png",
    ]


FIELDS = ["inputs[0].uri", "inputs[0].mask", "dataset.manifest", "dataset.prefix"]


def _body(field: str, place: str, good: str) -> dict:
    if field == "inputs[0].uri":
        return {"inputs": [{"uri": place}]}
    if field == "inputs[0].mask":
        return {"inputs": [{"uri": good, "mask": place}]}
    return {"dataset": {field.split(".")[1]: place}}


@pytest.mark.parametrize("field", FIELDS)
def test_inputs_masks_manifests_and_prefixes_elsewhere_are_refused(sec, sec_model, listener,
                                                                   field):
    storage = sec.storage()
    storage.put("t/alice/ssrf/good.png", clean_png())
    good = storage.uri("t/alice/ssrf/good.png")
    alice = sec.session("alice")
    for place in _places(listener.port):
        response = alice.post(f"{sec.url}/v1/jobs", timeout=30,
                              json={"model": sec_model, **_body(field, place, good)})
        assert_error(response, 400, "invalid_spec", field)
    assert listener.connections == 0


NOTIFY = [
    "http://127.0.0.1:{port}/hook", "http://[::1]:{port}/hook", "http://0.0.0.0:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook", "http://2130706433:{port}/hook",
    "http://0x7f000001:{port}/hook", "http://127.1:{port}/hook",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/hook", "http://10.1.2.3/hook",
    "http://172.31.0.1/hook", "http://192.168.0.1/hook", "http://100.64.0.1/hook",
    "http://100.100.100.200/latest/meta-data/", "http://198.18.0.1/hook",
    "http://224.0.0.1/hook", "http://user:pass@localhost:{port}/hook",
    "ftp://localhost:{port}/hook", "file:///etc/passwd", "gopher://localhost:{port}/_x",
    "http://no-such-host.invalid/hook", "localhost:{port}/hook",
    # An allowed host on a port its entry does not name: the stack's own Redis, any other.
    "http://localhost:{port}/hook", "https://localhost:{port}/hook", "http://localhost:6379/",
    "http://localhost:443/hook", "http://localhost:0/hook", "http://localhost:99999/hook",
    "http://localhost:x/hook", "http://[::1/hook",
    # The receiver's port, on its address rather than the host name its entry allows.
    "http://127.0.0.1:{receiver}/hook",
]


@pytest.mark.parametrize("url", NOTIFY)
def test_a_webhook_url_to_a_private_place_is_refused_at_submission(sec, sec_model, listener,
                                                                    receiver, url):
    alice = sec.session("alice")
    url = url.format(port=listener.port, receiver=urlsplit(receiver).port)
    spec = {"model": sec_model, "notify": {"url": url}}
    response = alice.post(f"{sec.url}/v1/jobs", timeout=30, files={
        "spec": (None, json.dumps(spec)), "images": ("a.png", clean_png())})
    assert_error(response, 400, "invalid_spec", "notify.url")
    assert listener.connections == 0


def test_a_manifests_lines_elsewhere_fail_their_items_and_are_never_fetched(
        sec, sec_model, listener):
    """The worker reads only where the API would: a manifest in the tenant's own area whose
    lines name URLs, other files or other tenants' objects fails those items alone."""
    storage = sec.storage()
    storage.put("t/alice/ssrf/good.png", clean_png())
    storage.put("t/bob/private/secret.png", clean_png())
    good = storage.uri("t/alice/ssrf/good.png")
    lines = [
        {"uri": good},
        {"uri": LISTENER.format(port=listener.port)},
        {"uri": f"http://localhost:{listener.port}/a.png"},
        {"uri": "file:///etc/hostname"},
        {"uri": storage.uri("t/bob/private/secret.png")},
        {"uri": "../../bob/private/secret.png"},
        {"uri": "s3://another-bucket/a.png"},
        {"uri": good, "mask": LISTENER.format(port=listener.port)},
    ]
    storage.put("t/alice/ssrf/manifest.jsonl",
                "\n".join(json.dumps(line) for line in lines).encode())
    alice = sec.session("alice")
    response = alice.post(f"{sec.url}/v1/jobs", timeout=30, json={
        "model": sec_model, "outputs": ["npy"],
        "dataset": {"manifest": storage.uri("t/alice/ssrf/manifest.jsonl")}})
    assert response.status_code == 202, response.text
    job = job_final(alice, sec.url, response.json()["id"])
    assert job["status"] == "succeeded" and job["progress"]["done"] == 1, job
    items = alice.get(f"{sec.url}/v1/jobs/{job['id']}/items", timeout=10).json()["items"]
    assert items[0]["status"] == "succeeded"
    for item in items[1:]:
        assert item["status"] == "failed" and item["error"], item
    assert listener.connections == 0
    assert PIXELS.shape == (40, 40, 3)  # the good input is the suite's clean picture

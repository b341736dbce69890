"""Over-long URLs and headers, and malformed HTTP: the API answers 414 and 431 itself below
gunicorn's limits, and gunicorn's own refusals (over its limits, or HTTP it cannot parse) are
written in the same JSON error shape (`api.errors.write_server_error`)."""

from __future__ import annotations

import json

import pytest
from e2e.helpers import side_effects

from badinput.helpers import assert_error, check_real_job, raw_request, tally

FAMILY = "over-long URLs and headers"
HTTP = "malformed HTTP"


def _get(path: str, headers: tuple[str, ...] = (), key: str = "") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", f"Authorization: Bearer {key}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")


LONG = [
    ("a 5000-character path", lambda k: _get("/v1/jobs/" + "a" * 5000, key=k), 414,
     "uri_too_long"),
    ("a 5000-character query", lambda k: _get("/v1/models?x=" + "a" * 5000, key=k), 414,
     "uri_too_long"),
    ("a 9000-character path (gunicorn's limit)", lambda k: _get("/v1/jobs/" + "a" * 9000, key=k),
     414, "uri_too_long"),
    ("a 100000-character path", lambda k: _get("/" + "a" * 100_000, key=k), 414, "uri_too_long"),
    ("a 10 KB and a 7 KB header", lambda k: _get(
        "/v1/models", ("X-A: " + "a" * 10_000, "X-B: " + "b" * 7_000), key=k), 431,
     "headers_too_large"),
    ("40 headers of 500 bytes", lambda k: _get(
        "/v1/models", tuple(f"X-{i}: {'v' * 500}" for i in range(40)), key=k), 431,
     "headers_too_large"),
    ("one 17 KB header (gunicorn's limit)", lambda k: _get(
        "/v1/models", ("X-A: " + "a" * 17_000,), key=k), 431, "headers_too_large"),
    ("150 headers (gunicorn's limit)", lambda k: _get(
        "/v1/models", tuple(f"X-{i}: v" for i in range(150)), key=k), 431, "headers_too_large"),
    ("a 16.5 KB authorization header", lambda k: _get("/v1/models", key=k + "x" * 16_500), 431,
     "headers_too_large"),
    ("a 16 KB cookie and a small header", lambda k: _get(
        "/v1/models", ("Cookie: a=" + "c" * 16_300, "X-B: " + "b" * 200), key=k), 431,
     "headers_too_large"),
]


@pytest.mark.parametrize("case", LONG, ids=[c[0] for c in LONG])
def test_an_over_long_url_or_header_block_is_answered_in_json(bad, case):
    _, make, status, code = case
    before = side_effects(bad)
    assert_error(raw_request(bad.url, make(bad.keys["mallory"])), status, code)
    assert side_effects(bad) == before
    tally(FAMILY)


def test_after_long_urls_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model, reference,
                                                             worker):
    check_real_job(bad, mallory, bad_model, reference, worker)


MALFORMED = [
    ("garbage request line", b"GARBAGE\r\n\r\n"),
    ("an unknown HTTP version", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("a header without a colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"),
    ("a header name with a space", b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"),
    ("a nul in a header value", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("a nul in the method", b"G\x00T /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("a lower-case method", b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("a bare line feed", b"GET /healthz HTTP/1.1\nHost: x\n\n"),
    ("both content-length and chunked", b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two content-lengths", b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
     b"Content-Length: 5\r\n\r\nabcd"),
    ("a bad chunk size", b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
    ("an unknown transfer coding", b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n"),
    ("a chunked body that stops", b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"model\""),
    ("a chunk without its terminator", b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_http_is_a_json_4xx(bad, case):
    _, request = case
    # Requests on /v1 carry the key, so that the body is read, not refused unread with a 401.
    request = request.replace(b"Host: x\r\n", b"Host: x\r\nAuthorization: Bearer "
                              + bad.keys["mallory"].encode() + b"\r\n", 1)
    before = side_effects(bad)
    answer = raw_request(bad.url, request, half_close=True)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert_error(answer, answer.status_code)
    assert side_effects(bad) == before
    tally(HTTP)


def _post(path: str, content_type: str, body: bytes, announced: int, key: str) -> bytes:
    """A POST whose `Content-Length` announces `announced` bytes, of which `body` is sent."""
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {announced}\r\n\r\n"
            ).encode() + body


def _cut(bad, model: str, case: str) -> bytes:
    """The request of one case: each body is cut short of what its header announced."""
    from badinput.cases import clean_png
    from badinput.helpers import multipart

    key = bad.keys["mallory"]
    storage = bad.backend.storage()
    storage.put("badinput/http/good.png", clean_png())
    job = json.dumps({"model": model, "inputs": [
        {"uri": storage.uri("badinput/http/good.png")}]}).encode()
    parts, content_type = multipart([("spec", None, json.dumps({"model": model}).encode()),
                                     ("images", "a.png", clean_png())])
    upload, upload_type = multipart([("prefix", None, b"cut"), ("files", "a.png", clean_png())])
    return {
        # A whole JSON job, and more announced: it used to be accepted as it was.
        "a json job, whole, announcing 100 bytes more": _post(
            "/v1/jobs", "application/json", job, len(job) + 100, key),
        "a json job cut in the middle": _post(
            "/v1/jobs", "application/json", job[:len(job) // 2], len(job), key),
        "a multipart job cut in its spec": _post(
            "/v1/jobs", content_type, parts[:60], len(parts), key),
        "a multipart job cut in its image": _post(
            "/v1/jobs", content_type, parts[:len(parts) - 200], len(parts), key),
        "a multipart job without its closing boundary": _post(
            "/v1/jobs", content_type, parts[:-len(b"--b0undary--\r\n")], len(parts), key),
        "an upload cut in its file": _post(
            "/v1/uploads", upload_type, upload[:len(upload) - 100], len(upload), key),
        "a model registration cut in its weights": _post(
            "/v1/models", content_type, parts[:len(parts) - 50], len(parts), key),
    }[case]


CUT = ["a json job, whole, announcing 100 bytes more", "a json job cut in the middle",
       "a multipart job cut in its spec", "a multipart job cut in its image",
       "a multipart job without its closing boundary", "an upload cut in its file",
       "a model registration cut in its weights"]


@pytest.mark.parametrize("case", CUT)
def test_a_body_shorter_than_its_content_length_is_a_400_bad_request(bad, bad_model, case):
    """The client stops sending (half-closes) before the body its header announced."""
    request = _cut(bad, bad_model, case)
    before = side_effects(bad)
    answer = raw_request(bad.url, request, half_close=True)
    assert_error(answer, 400, "bad_request", "Content-Length announced")
    assert side_effects(bad) == before
    tally(HTTP)


def test_after_malformed_http_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model,
                                                                   reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker)

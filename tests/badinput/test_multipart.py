"""Multipart abuse and oversized bodies: too many parts, huge or odd part names, missing file
names, a `spec` or an artifact given twice, broken framing, bodies over the limits (announced
or streamed). Each is its documented 4xx in the error shape, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from e2e.helpers import side_effects

from badinput.cases import clean_png
from badinput.helpers import (
    assert_error,
    check_real_job,
    multipart,
    post_multipart,
    raw_request,
    tally,
)

MULTIPART = "multipart abuse"
OVERSIZED = "oversized bodies"
MODEL = "tiny-resnet18"
SPEC = json.dumps({"model": MODEL}).encode()
WEIGHTS_SPEC = json.dumps({"name": "dup", "architecture": "resnet18", "num_classes": 10}).encode()
EMPTY_SAFETENSORS = b"\x02\x00\x00\x00\x00\x00\x00\x00{}"


def _spec_and(*parts):
    return [("spec", None, SPEC), *parts]


def _image(name="a.png"):
    return ("images", name, clean_png())


# (case, route, parts or raw body with its content type, status, code, mentioned)
CASES = [
    ("1000 image parts", "jobs", _spec_and(*[_image(f"{i}.png") for i in range(1000)]),
     413, "too_large", None),
    ("17 images over the limit of 16", "jobs", _spec_and(*[_image() for _ in range(17)]),
     413, "too_large", "images"),
    ("1000 form fields", "jobs", _spec_and(*[(f"f{i}", None, b"x") for i in range(1000)]),
     413, "too_large", None),
    ("a 100 KB part name", "jobs", _spec_and(_image(), ("n" * 100_000, None, b"x")),
     400, None, None),
    ("a part name with a nul", "jobs", _spec_and(_image(), ("images\x00x", None, b"x")),
     400, "invalid_spec", "is not an expected part"),
    ("a right-to-left part name", "jobs", _spec_and(_image(), ("\u202especi", None, b"x")),
     400, "invalid_spec", "is not an expected part"),
    ("an image part without a file name", "jobs", _spec_and(("images", None, clean_png())),
     400, "invalid_spec", "images"),
    ("no image part", "jobs", _spec_and(), 400, "invalid_spec", "images"),
    ("no spec part", "jobs", [_image()], 400, "invalid_spec", "spec"),
    ("spec twice", "jobs", _spec_and(("spec", None, SPEC), _image()), 400, "invalid_spec",
     "spec"),
    ("spec twice, once as a file", "jobs", _spec_and(("spec", "spec.json", SPEC), _image()),
     400, "invalid_spec", "spec"),
    ("an empty spec", "jobs", [("spec", None, b""), _image()], 400, "invalid_spec", "spec"),
    ("a spec with a byte-order mark", "jobs", [("spec", None, b"\xef\xbb\xbf" + SPEC), _image()],
     400, "invalid_spec", "spec"),
    ("a spec of invalid utf-8", "jobs", [("spec", None, b'{"model": "\xff\xfe"}'), _image()],
     400, "invalid_spec", "model"),
    ("a spec of 1.5 MB as a file", "jobs",
     [("spec", "spec.json", b'{"model": "' + b"m" * 1_500_000 + b'"}'), _image()],
     400, "invalid_spec", "spec"),
    ("a spec of 1.5 MB as a field", "jobs",
     [("spec", None, b'{"model": "' + b"m" * 1_500_000 + b'"}'), _image()], 413, "too_large",
     None),
    ("an empty image", "jobs", _spec_and(("images", "a.png", b"")), 415,
     "unsupported_media_type", "images[0]"),
    ("an empty file name", "uploads", [("files", "", clean_png())], 400, "invalid_spec",
     "files[0]"),
    ("prefix twice", "uploads", [("prefix", None, b"a"), ("prefix", None, b"b"),
                                 ("files", "a.png", clean_png())], 400, "invalid_spec", "prefix"),
    ("an unexpected upload part", "uploads", [("files", "a.png", clean_png()),
                                              ("spec", None, SPEC)], 400, "invalid_spec", "spec"),
    ("no file part", "uploads", [("prefix", None, b"a")], 400, "invalid_spec", "files"),
    ("files as a field", "uploads", [("files", None, clean_png())], 400, "invalid_spec",
     "files"),
    ("prefix as a file", "uploads", [("prefix", "p", b"a"), ("files", "a.png", clean_png())],
     400, "invalid_spec", "prefix"),
    ("a part without a name", "uploads", [(None, None, b"x"), ("files", "a.png", clean_png())],
     400, "invalid_spec", "without a name"),
    ("a file part without a name", "jobs", _spec_and(_image(), (None, "a.png", clean_png())),
     400, "invalid_spec", "without a name"),
    ("17 files over the limit of 16", "uploads",
     [("files", f"{i}.png", clean_png()) for i in range(17)], 413, "too_large", "files"),
    ("weights twice", "models", [("spec", None, WEIGHTS_SPEC),
                                 ("weights", "a", EMPTY_SAFETENSORS),
                                 ("weights", "b", EMPTY_SAFETENSORS)], 400, "invalid_spec",
     "weights"),
    ("weights and a program", "models", [("spec", None, WEIGHTS_SPEC),
                                         ("weights", "a", EMPTY_SAFETENSORS),
                                         ("program", "b", b"PK")], 400, "invalid_spec",
     "weights"),
    ("model spec twice", "models", [("spec", None, WEIGHTS_SPEC), ("spec", None, WEIGHTS_SPEC),
                                    ("weights", "a", EMPTY_SAFETENSORS)], 400, "invalid_spec",
     "spec"),
    ("weights as a field, not a file", "models", [("spec", None, WEIGHTS_SPEC),
                                                  ("weights", None, EMPTY_SAFETENSORS)],
     400, "invalid_spec", "weights"),
]
ROUTES = {"jobs": "/v1/jobs", "uploads": "/v1/uploads", "models": "/v1/models"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_abused_multipart_is_refused_and_stores_nothing(bad, mallory, bad_model, case):
    _, route, parts, status, code, mentioned = case
    before = side_effects(bad)
    response = post_multipart(mallory, f"{bad.url}{ROUTES[route]}", parts)
    assert_error(response, status, code, mentioned)
    assert side_effects(bad) == before
    tally(MULTIPART)


def _framed(body_of) -> tuple[bytes, str]:
    body, content_type = multipart(_spec_and(_image()))
    return body_of(body, content_type)


FRAMING = [
    ("no closing boundary", lambda b, t: (b[:-len("--b0undary--\r\n")], t), 400),
    ("cut in the middle of the image", lambda b, t: (b[:len(b) // 2], t), 400),
    ("no boundary parameter", lambda b, t: (b, "multipart/form-data"), 400),
    ("another boundary", lambda b, t: (b, "multipart/form-data; boundary=other"), 400),
    ("a json body", lambda b, t: (SPEC, t), 400),
    ("an empty body", lambda b, t: (b"", t), 400),
    ("a part without headers", lambda b, t: (b"--b0undary\r\n\r\nxyz\r\n--b0undary--\r\n", t),
     400),
    ("a part without a name", lambda b, t: (
        b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nxyz\r\n--b0undary--\r\n", t), 400),
    ("a form-urlencoded body", lambda b, t: (b"spec=x&images=y",
                                             "application/x-www-form-urlencoded"), 415),
    ("text/plain", lambda b, t: (b"hello", "text/plain"), 415),
    ("no content type", lambda b, t: (b, ""), 415),
]


@pytest.mark.parametrize("case", FRAMING, ids=[c[0] for c in FRAMING])
def test_broken_multipart_framing_is_refused(bad, mallory, bad_model, case):
    _, make, status = case
    body, content_type = _framed(make)
    before = side_effects(bad)
    headers = {"Content-Type": content_type} if content_type else {}
    response = mallory.post(f"{bad.url}/v1/jobs", data=body, headers=headers, timeout=30)
    if not content_type:
        # requests sends no Content-Type for bytes; the API must still say what it takes.
        assert "Content-Type" not in response.request.headers
    assert_error(response, status)
    assert side_effects(bad) == before
    tally(MULTIPART)


def test_after_multipart_abuse_an_unnamed_image_is_kept_and_a_job_succeeds(
        bad, mallory, bad_model, reference, worker):
    from badinput.cases import PIXELS, Case

    unnamed = Case("empty file name", "", clean_png, expected=lambda: PIXELS)
    check_real_job(bad, mallory, bad_model, reference, worker, [unnamed])
    tally(MULTIPART)


# --- oversized bodies --------------------------------------------------------------------------

def _announced(route: str, length: int, content_type: str, key: str) -> bytes:
    return (f"POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()


OVERSIZE = [
    ("a multipart job of 2.1 MB", "jobs",
     lambda: multipart(_spec_and(("images", "a.png", b"\x89PNG" + bytes(2_100_000))))),
    ("a json job of 2.1 MB", "jobs",
     lambda: (json.dumps({"model": MODEL, "inputs": [{"uri": "s3://b/" + "k" * 1000}] * 2100})
              .encode(), "application/json")),
    ("an upload of 2.1 MB", "uploads",
     lambda: multipart([("files", "a.png", b"\x89PNG" + bytes(2_100_000))])),
]


@pytest.mark.parametrize("case", OVERSIZE, ids=[c[0] for c in OVERSIZE])
def test_a_body_over_the_limit_is_413(bad, mallory, case):
    _, route, make = case
    body, content_type = make()
    before = side_effects(bad)
    response = mallory.post(f"{bad.url}{ROUTES[route]}", data=body,
                            headers={"Content-Type": content_type}, timeout=60)
    assert_error(response, 413, "too_large")
    assert side_effects(bad) == before
    tally(OVERSIZED)


@pytest.mark.parametrize("route,length", [("jobs", 10**12), ("uploads", 10**12),
                                          ("models", 10**12), ("models", 60_000_001),
                                          ("jobs", 2_000_001)])
def test_a_body_announced_over_the_limit_is_413_before_it_is_sent(bad, route, length):
    before = side_effects(bad)
    head = _announced(ROUTES[route], length, "multipart/form-data; boundary=b0undary",
                      bad.keys["mallory"])
    assert_error(raw_request(bad.url, head), 413, "too_large")
    assert side_effects(bad) == before
    tally(OVERSIZED)


@pytest.mark.parametrize("route", ["jobs", "uploads"])
def test_a_chunked_body_over_the_limit_is_413(bad, mallory, route):
    body, content_type = multipart([("files", "a.png", b"\x89PNG" + bytes(3_000_000))])

    def chunks():
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    before = side_effects(bad)
    response = mallory.post(f"{bad.url}{ROUTES[route]}", data=chunks(),
                            headers={"Content-Type": content_type}, timeout=60)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert_error(response, 413, "too_large")
    assert side_effects(bad) == before
    tally(OVERSIZED)


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "0x10", "1, 2"])
def test_a_malformed_content_length_is_a_json_400(bad, length):
    before = side_effects(bad)
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            "Content-Type: application/json\r\n\r\n{}").encode()
    assert_error(raw_request(bad.url, head), 400)
    assert side_effects(bad) == before
    tally(OVERSIZED)


def test_after_oversized_bodies_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model,
                                                                     reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker)

"""Every error code over HTTP, in the one error shape; a rejected request leaves nothing behind."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from e2e.helpers import image_bytes, npy_bytes, side_effects, submit

MODEL = "tiny-resnet18"


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


def _post_multipart(spec, files):
    return lambda s, url: submit(s, url, spec, files)


def _post_json(body):
    return lambda s, url: s.post(f"{url}/v1/jobs", json=body, timeout=30)


CASES = {
    "spec without model": (400, "invalid_spec", "model",
                           _post_multipart({}, [("a.png", image_bytes(1))])),
    "unknown method": (400, "invalid_spec", "methods",
                       _post_multipart({"model": MODEL, "methods": ["lrp"]},
                                       [("a.png", image_bytes(1))])),
    "unknown rectifier rule": (400, "invalid_spec", "methods[0].rule", _post_multipart(
        {"model": MODEL, "methods": [{"name": "guided_backprop", "rule": "gelu"}]},
        [("a.png", image_bytes(1))])),
    "class out of range": (400, "invalid_spec", "target.class",
                           _post_multipart({"model": MODEL, "target": {"class": 10}},
                                           [("a.png", image_bytes(1))])),
    "spec not JSON": (400, "invalid_spec", "spec", lambda s, url: s.post(
        f"{url}/v1/jobs", files={"spec": (None, "{model"), "images": ("a.png", image_bytes(1))},
        timeout=30)),
    "no images": (400, "invalid_spec", "images", lambda s, url: s.post(
        f"{url}/v1/jobs", files={"spec": (None, json.dumps({"model": MODEL}))}, timeout=30)),
    "unexpected part": (400, "invalid_spec", "extra", lambda s, url: s.post(
        f"{url}/v1/jobs", files={"spec": (None, json.dumps({"model": MODEL})),
                                 "extra": ("x", b"x")}, timeout=30)),
    "bad inputs": (400, "invalid_spec", "inputs[0]",
                   _post_json({"model": MODEL, "inputs": ["s3://x/y"]})),
    "uri outside storage": (400, "invalid_spec", "inputs[0].uri",
                            _post_json({"model": MODEL, "inputs": [{"uri": "http://x/y.png"}]})),
    "unknown model": (404, "not_found", "model",
                      _post_multipart({"model": "nope"}, [("a.png", image_bytes(1))])),
    "too many images": (413, "too_large", "images",
                        _post_multipart({"model": MODEL},
                                        [(f"{i}.png", image_bytes(i)) for i in range(9)])),
    "too many pixels": (413, "too_large", "pixels",
                        _post_multipart({"model": MODEL}, [("big.png", image_bytes(1, size=400))])),
    "too many uris": (413, "too_large", "inputs",
                      _post_json({"model": MODEL, "inputs": [{"uri": "x"}] * 501})),
    "request too large": (413, "too_large", "",
                          _post_multipart({"model": MODEL}, [("huge.png", bytes(2_100_000))])),
    "plain text body": (415, "unsupported_media_type", "multipart/form-data",
                        lambda s, url: s.post(f"{url}/v1/jobs", data="hello",
                                              headers={"Content-Type": "text/plain"}, timeout=30)),
    "gif image": (415, "unsupported_media_type", "images[0]",
                  _post_multipart({"model": MODEL}, [("a.gif", _gif())])),
    "truncated png": (422, "undecodable_input", "images[1]",
                      _post_multipart({"model": MODEL}, [("a.png", image_bytes(1)),
                                                          ("b.png", image_bytes(2)[:80])])),
    "float64 npy": (422, "undecodable_input", "float32",
                    _post_multipart({"model": MODEL},
                                    [("a.npy", npy_bytes(np.zeros((3, 32, 32))))])),
    "npy of the wrong shape": (422, "undecodable_input", "(3, 32, 32)",
                               _post_multipart({"model": MODEL}, [(
                                   "a.npy", npy_bytes(np.zeros((3, 16, 16), np.float32)))])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rejected_requests_answer_the_error_and_leave_nothing(stack, stack_model, alice, case):
    status, code, mentioned, send = CASES[case]
    before = side_effects(stack)
    response = send(alice, stack.url)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] == code
    assert mentioned in error["message"]
    assert side_effects(stack) == before


@pytest.mark.parametrize("path", ["/v1/jobs/0123456789abcdef0123456789abcdef", "/v1/jobs/x",
                                  "/v1/jobs/0123456789abcdef0123456789abcdef/items",
                                  "/v1/models/nope"])
def test_unknown_resources_are_404(stack, alice, path):
    response = alice.get(stack.url + path, timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_bad_paging_arguments_name_the_argument(stack, stack_model, alice):
    job_id = submit(alice, stack.url, {"model": MODEL}, [("a.png", image_bytes(1))]).json()["id"]
    for args, name in (({"cursor": "x"}, "cursor"), ({"limit": "0"}, "limit"),
                       ({"limit": "5000"}, "limit")):
        response = alice.get(f"{stack.url}/v1/jobs/{job_id}/items", params=args, timeout=10)
        assert response.status_code == 400 and response.json()["error"]["message"].startswith(name)


def test_model_registration_errors(stack, stack_model, alice, tiny_weights):
    def post(files):
        return alice.post(f"{stack.url}/v1/models", files=files, timeout=30)

    spec = {"name": "m2", "architecture": "resnet18", "num_classes": 10}
    cases = [
        ({"spec": (None, json.dumps({**spec, "num_classes": 0})),
          "weights": ("w", tiny_weights.read_bytes())}, 400, "num_classes"),
        ({"spec": (None, json.dumps(spec)), "weights": ("w", b"not safetensors")}, 422, "weights"),
        ({"spec": (None, json.dumps(spec))}, 400, "weights"),
        ({"spec": (None, json.dumps({**spec, "name": MODEL})),
          "weights": ("w", tiny_weights.read_bytes())}, 409, MODEL),
    ]
    before = side_effects(stack)
    for files, status, mentioned in cases:
        response = post(files)
        assert response.status_code == status, response.text
        assert mentioned in response.json()["error"]["message"]
    response = alice.post(f"{stack.url}/v1/models", json=spec, timeout=10)
    assert response.status_code == 415
    assert side_effects(stack) == before

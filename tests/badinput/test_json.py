"""JSON that is valid syntax but bad input: deep nesting, NaN and infinities anywhere,
fields of the wrong type (lists and objects where names go, which must never reach a hash),
paging arguments that only look like numbers, and an `Idempotency-Key` reused for another
request. Each is its documented 4xx in the error shape, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from e2e.helpers import side_effects, submit

from badinput.cases import clean_png
from badinput.helpers import (
    assert_error,
    check_real_job,
    check_worker,
    post_multipart,
    run_job,
    tally,
)

NESTED = "deeply nested JSON"
NAN = "NaN in JSON"
TYPES = "ill-typed fields"
PAGING = "paging arguments"
IDEMPOTENCY = "idempotency keys"
MODEL = "tiny-resnet18"
URI = "s3://nowhere/a.png"


def _job_multipart(session, url, spec_text: str):
    return post_multipart(session, f"{url}/v1/jobs",
                          [("spec", None, spec_text.encode()), ("images", "a.png", clean_png())])


def _job_json(session, url, text: str):
    return session.post(f"{url}/v1/jobs", data=text.encode(),
                        headers={"Content-Type": "application/json"}, timeout=30)


def _model(session, url, spec_text: str, weights: bytes = b"\x02" + bytes(7) + b"{}"):
    return post_multipart(session, f"{url}/v1/models",
                          [("spec", None, spec_text.encode()), ("weights", "w", weights)])


def _deep(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _safetensors(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header


# (case, send(session, url), status, code, mentioned)
NESTED_CASES = [
    ("a spec of 100000 [", lambda s, u: _job_multipart(s, u, "[" * 100_000), 400,
     "invalid_spec", "spec"),
    ("a closed spec nested 100000 deep", lambda s, u: _job_multipart(s, u, _deep(100_000)),
     400, "invalid_spec", "spec"),
    ("a json body of 100000 [", lambda s, u: _job_json(s, u, "[" * 100_000), 400,
     "invalid_spec", "body"),
    ("a json body of 50000 {", lambda s, u: _job_json(s, u, '{"a":' * 50_000), 400,
     "invalid_spec", "body"),
    ("a target nested 1000 deep", lambda s, u: _job_json(
        s, u, f'{{"model": "{MODEL}", "target": {_deep(1000)}, "inputs": [{{"uri": "{URI}"}}]}}'),
     400, "invalid_spec", "nested"),
    ("methods nested 33 deep", lambda s, u: _job_multipart(
        s, u, f'{{"model": "{MODEL}", "methods": {_deep(33, chr(34) + "gradient" + chr(34))}}}'),
     400, "invalid_spec", "nested"),
    ("a model spec of 100000 [", lambda s, u: _model(s, u, "[" * 100_000), 400, "invalid_spec",
     "spec"),
    ("a safetensors header of 100000 [", lambda s, u: _model(
        s, u, json.dumps({"name": "deep", "architecture": "resnet18", "num_classes": 10}),
        _safetensors(b"[" * 100_000)), 422, "undecodable_input", "weights"),
    ("a safetensors header nested in an object", lambda s, u: _model(
        s, u, json.dumps({"name": "deep", "architecture": "resnet18", "num_classes": 10}),
        _safetensors(b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")), 422,
     "undecodable_input", "weights"),
]


@pytest.mark.parametrize("case", NESTED_CASES, ids=[c[0] for c in NESTED_CASES])
def test_deeply_nested_json_is_refused(bad, mallory, bad_model, case):
    _, send, status, code, mentioned = case
    before = side_effects(bad)
    assert_error(send(mallory, bad.url), status, code, mentioned)
    assert side_effects(bad) == before
    tally(NESTED)


def test_nesting_inside_strings_is_not_nesting(bad, mallory, bad_model):
    """32 levels are allowed, and brackets inside a string do not count."""
    before = side_effects(bad)
    text = json.dumps({"model": MODEL, "target": json.loads(_deep(30)),
                       "methods": ["[" * 1000]})
    error = assert_error(_job_multipart(mallory, bad.url, text), 400, "invalid_spec")
    assert error["message"].startswith("methods[0]: unknown method"), error
    assert side_effects(bad) == before
    tally(NESTED)


def test_after_nested_json_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model,
                                                                reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker)


# --- NaN and infinities -------------------------------------------------------------------------

MODEL_SPEC = '{"name": "nan-model", "architecture": "resnet18", "num_classes": 10%s}'
NAN_CASES = [
    ("model std NaN", "model", MODEL_SPEC % ', "std": [NaN, 1, 1]', "std"),
    ("model mean Infinity", "model", MODEL_SPEC % ', "mean": [Infinity, 0, 0]', "mean"),
    ("model mean -Infinity", "model", MODEL_SPEC % ', "mean": [0, -Infinity, 0]', "mean"),
    ("model std 1e999", "model", MODEL_SPEC % ', "std": [1e999, 1, 1]', "std"),
    ("model num_classes NaN", "model", MODEL_SPEC.replace("10%s", "NaN"), "num_classes"),
    ("model input_size Infinity", "model", MODEL_SPEC % ', "input_size": Infinity', "input_size"),
    ("job seed NaN", "multipart", f'{{"model": "{MODEL}", "seed": NaN}}', "seed"),
    ("job seed Infinity", "multipart", f'{{"model": "{MODEL}", "seed": Infinity}}', "seed"),
    ("job seed -Infinity", "multipart", f'{{"model": "{MODEL}", "seed": -Infinity}}', "seed"),
    ("job seed 1e999", "multipart", f'{{"model": "{MODEL}", "seed": 1e999}}', "seed"),
    ("job seed -1e999", "multipart", f'{{"model": "{MODEL}", "seed": -1e999}}', "seed"),
    ("target class NaN", "multipart", f'{{"model": "{MODEL}", "target": {{"class": NaN}}}}',
     "target"),
    ("target topk Infinity", "multipart",
     f'{{"model": "{MODEL}", "target": {{"topk": Infinity}}}}', "target"),
    ("target channel NaN", "multipart",
     f'{{"model": "{MODEL}", "target": {{"layer": "layer1", "channel": NaN}}}}', "target"),
    ("retention NaN", "multipart", f'{{"model": "{MODEL}", "retention_s": NaN}}', "retention_s"),
    ("method parameter NaN", "multipart",
     f'{{"model": "{MODEL}", "methods": [{{"name": "gradient", "x": NaN}}]}}', "methods"),
    ("audit sample NaN", "multipart",
     f'{{"model": "{MODEL}", "audit": {{"sanity": {{"sample": NaN}}}}}}', "audit"),
    ("notify url NaN", "multipart", f'{{"model": "{MODEL}", "notify": {{"url": NaN}}}}',
     "notify"),
    ("an unknown field NaN", "multipart", f'{{"model": "{MODEL}", "x": NaN}}', "spec"),
    ("a NaN spec", "multipart", "NaN", "spec"),
    ("json body seed NaN", "json", f'{{"model": "{MODEL}", "seed": NaN, "inputs": '
                                   f'[{{"uri": "{URI}"}}]}}', "body"),
    ("json body label NaN", "json", f'{{"model": "{MODEL}", "inputs": '
                                    f'[{{"uri": "{URI}", "label": NaN}}]}}', "body"),
    ("json body box Infinity", "json", f'{{"model": "{MODEL}", "inputs": '
                                       f'[{{"uri": "{URI}", "box": [0, 0, Infinity, 1]}}]}}',
     "body"),
    ("json body label 1e999", "json", f'{{"model": "{MODEL}", "inputs": '
                                      f'[{{"uri": "{URI}", "label": 1e999}}]}}', "label"),
    ("json body label map NaN", "json",
     f'{{"model": "{MODEL}", "dataset": {{"prefix": "s3://b/p/", "labels": "folder", '
     f'"label_map": {{"cat": NaN}}}}}}', "body"),
]


@pytest.mark.parametrize("case", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_nan_and_infinities_are_refused_anywhere(bad, mallory, bad_model, case):
    _, where, text, mentioned = case
    send = {"model": _model, "multipart": _job_multipart, "json": _job_json}[where]
    before = side_effects(bad)
    error = assert_error(send(mallory, bad.url, text), 400, "invalid_spec")
    assert mentioned in error["message"] or "finite" in error["message"], error
    assert side_effects(bad) == before
    tally(NAN)


def test_after_nan_no_answer_holds_nan_and_a_job_succeeds(bad, mallory, bad_model, worker):
    """What the API answers is strict JSON: its models, jobs and items parse without NaN."""
    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in an answer"))

    strict(mallory.get(f"{bad.url}/v1/models", timeout=10).text)
    job, items = run_job(mallory, bad.url, {"model": bad_model, "outputs": ["npy"]},
                         [("a.png", clean_png())])
    assert job["status"] == "succeeded" and items[0]["status"] == "succeeded", items
    strict(mallory.get(f"{bad.url}/v1/jobs/{job['id']}", timeout=10).text)
    strict(mallory.get(f"{bad.url}/v1/jobs/{job['id']}/items", timeout=10).text)
    check_worker(bad, worker)
    tally(NAN)


# --- fields of the wrong type -------------------------------------------------------------------

WRONG_TYPES = [
    ("methods", [["gradient"]]), ("methods", [{"a": 1}]), ("methods", [{"name": ["gradient"]}]),
    ("methods", [{"name": {"x": 1}}]), ("methods", [None]), ("methods", [1]),
    ("methods", [True]), ("methods", "gradient"), ("methods", {"gradient": 1}),
    ("methods", []), ("methods", [""]), ("methods", ["gradient", ["x"]]),
    ("methods", ["gradient"] * 17),
    ("kind", ["attribution"]), ("kind", {"a": 1}),
    ("kind", 1), ("model", ["x"]), ("model", {"$ne": None}), ("model", 1), ("model", None),
    ("reduce", ["max_abs"]), ("reduce", {"a": 1}), ("outputs", [["png"]]),
    ("outputs", [{"a": 1}]), ("outputs", "png"), ("map_dtype", ["float16"]),
    ("map_dtype", {"a": 1}), ("target", [[1]]), ("target", {"class": [1]}),
    ("target", {"class": {"a": 1}}), ("target", {"class": -1}), ("target", {"class": True}),
    ("target", {"class": 1.5}), ("target", {"topk": {}}), ("target", {"layer": ["x"],
                                                                      "channel": 0}),
    ("target", {"layer": "layer1", "channel": 0, "position": [[0]]}), ("target", ["predicted"]),
    ("seed", [1]), ("seed", "1"), ("seed", -1), ("seed", 2**64), ("seed", True),
    ("retention_s", {"a": 1}), ("audit", {"sanity": [1]}), ("audit", [1]),
    ("write", [["png"]]), ("notify", ["http://x"]), ("notify", {"url": ["x"]}),
    ("notify", {"url": "http://x", "events": [["succeeded"]]}),
]


@pytest.mark.parametrize("case", WRONG_TYPES, ids=lambda c: f"{c[0]}={json.dumps(c[1])[:40]}")
def test_a_field_of_the_wrong_type_is_a_400_naming_it(bad, mallory, bad_model, case):
    field, value = case
    before = side_effects(bad)
    response = submit(mallory, bad.url, {"model": MODEL, field: value}, [("a.png", clean_png())])
    assert_error(response, 400, "invalid_spec", field)
    assert side_effects(bad) == before
    tally(TYPES)


WRONG_INPUTS = [
    ({"uri": URI, "label": [1]}, "label"), ({"uri": URI, "label": {"a": 1}}, "label"),
    ({"uri": URI, "box": [[1], 2, 3, 4]}, "box"), ({"uri": URI, "box": {"a": 1}}, "box"),
    ({"uri": URI, "id": ["x"]}, "id"), ({"uri": URI, "mask": ["x"]}, "mask"),
    ({"uri": [URI]}, "uri"), ({"uri": {"a": 1}}, "uri"), ({URI: 1}, "inputs[0]"),
    ({"uri": URI, ("x" * 10): 1}, "inputs[0]"),
]


@pytest.mark.parametrize("case", WRONG_INPUTS, ids=lambda c: json.dumps(c[0])[:50])
def test_an_input_field_of_the_wrong_type_is_a_400_naming_it(bad, mallory, bad_model, case):
    entry, field = case
    before = side_effects(bad)
    response = mallory.post(f"{bad.url}/v1/jobs", json={"model": MODEL, "inputs": [entry]},
                            timeout=30)
    assert_error(response, 400, "invalid_spec", field)
    assert side_effects(bad) == before
    tally(TYPES)


@pytest.mark.parametrize("dataset", [{"prefix": ["s3://b/p/"]}, {"manifest": {"a": 1}},
                                     {"prefix": "s3://b/p/", "labels": ["folder"]},
                                     {"prefix": "s3://b/p/", "labels": "folder",
                                      "label_map": [["cat", 1]]},
                                     {"prefix": "s3://b/p/", "labels": "folder",
                                      "label_map": {"cat": [1]}}, [1], "s3://b/p/",
                                     {"prefix": "s3://b/p/", "annotations": "s3://b/a.json"},
                                     {"manifest": "s3://b/m.jsonl",
                                      "annotations": {"coco": ["s3://b/a.json"]}},
                                     {"prefix": "s3://b/p/", "annotations": {
                                         "voc": "s3://b/v/", "category_map": {"cat": [1]}}}],
                         ids=lambda d: json.dumps(d)[:50])
def test_a_dataset_of_the_wrong_type_is_a_400(bad, mallory, bad_model, dataset):
    before = side_effects(bad)
    response = mallory.post(f"{bad.url}/v1/jobs", json={"model": MODEL, "dataset": dataset},
                            timeout=30)
    assert_error(response, 400, "invalid_spec", "dataset")
    assert side_effects(bad) == before
    tally(TYPES)


@pytest.mark.parametrize("index", [10, 10**12, 2**63], ids=["10", "10**12", "2**63"])
def test_a_label_map_beyond_the_models_classes_is_a_400(bad, mallory, bad_model, index):
    """The model's classes are known at submission: a folder mapped past them is refused
    there, not run to fail every item it labels."""
    storage = bad.backend.storage()
    storage.put("t/mallory/label-map/cat/a.png", clean_png())
    before = side_effects(bad)
    response = mallory.post(f"{bad.url}/v1/jobs", timeout=30, json={
        "model": MODEL, "dataset": {"prefix": storage.uri("t/mallory/label-map") + "/",
                                    "labels": "folder", "label_map": {"cat": index}}})
    error = assert_error(response, 400, "invalid_spec", "dataset.label_map.cat")
    assert f"{index} is not a class of model {MODEL!r}" in error["message"], error
    assert side_effects(bad) == before
    tally(TYPES)


def test_after_ill_typed_fields_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model,
                                                                     reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker)


# --- paging arguments ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def a_job(bad, bad_model) -> str:
    session = bad.session("mallory")
    job, _ = run_job(session, bad.url, {"model": bad_model, "outputs": ["npy"]},
                     [("a.png", clean_png())])
    return job["id"]


PAGING_CASES = [
    ("cursor", "²"), ("limit", "¹"), ("cursor", "٣"), ("limit", "५"), ("cursor", "-1"),
    ("cursor", "1e3"), ("cursor", "0x10"), ("cursor", " 1"), ("cursor", "1 "), ("limit", "0"),
    ("limit", "1001"), ("limit", "99999999999999999999"), ("cursor", "NaN"), ("limit", "1.5"),
    ("cursor", "\x00"), ("limit", "+5"), ("cursor", "１"), ("limit", "Infinity"),
]


@pytest.mark.parametrize("case", PAGING_CASES, ids=lambda c: f"{c[0]}={c[1]!r}")
def test_a_paging_argument_that_is_not_a_plain_number_is_a_400(bad, mallory, a_job, case):
    name, value = case
    response = mallory.get(f"{bad.url}/v1/jobs/{a_job}/items", params={name: value}, timeout=10)
    assert_error(response, 400, "invalid_spec", name)
    tally(PAGING)


@pytest.mark.parametrize("value", ["²", "¹", "٣", "１", "1e3", "+5", " 1", "NaN", "-1"],
                         ids=repr)
def test_a_job_pages_limit_that_is_not_a_plain_number_gives_the_default_page(
        bad, mallory, a_job, value):
    """The job's web page reads `limit` leniently, and only ASCII digits as a number."""
    response = mallory.get(f"{bad.url}/jobs/{a_job}", params={"limit": value}, timeout=10)
    assert response.status_code == 200, response.text[:300]
    assert 'data-page-size="24"' in response.text
    tally(PAGING)


@pytest.mark.parametrize("fmt", ["xml", "../report", "PARQUET", "", "csv\x00"])
def test_an_unknown_results_format_is_a_400(bad, mallory, a_job, fmt):
    response = mallory.get(f"{bad.url}/v1/jobs/{a_job}/results", params={"format": fmt},
                           timeout=10)
    assert_error(response, 400, "invalid_spec", "format")
    tally(PAGING)


def test_after_paging_arguments_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model,
                                                                     reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker)


# --- idempotency keys ------------------------------------------------------------------------

def test_an_idempotency_key_reused_for_another_request_is_422(bad, mallory, bad_model):
    key = {"Idempotency-Key": "badinput-reused"}
    spec = {"model": bad_model, "outputs": ["npy"]}
    first = submit(mallory, bad.url, spec, [("a.png", clean_png())], headers=key)
    assert first.status_code == 202, first.text
    again = submit(mallory, bad.url, spec, [("a.png", clean_png())], headers=key)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    before = side_effects(bad)
    for changed in (
        submit(mallory, bad.url, {**spec, "seed": 1}, [("a.png", clean_png())], headers=key),
        submit(mallory, bad.url, spec, [("b.png", clean_png())], headers=key),
        submit(mallory, bad.url, spec, [("a.png", clean_png() + b"\x00")], headers=key),
        submit(mallory, bad.url, spec, [("a.png", clean_png())] * 2, headers=key),
        mallory.post(f"{bad.url}/v1/jobs", headers=key, timeout=30, json={
            **spec, "inputs": [{"uri": bad.backend.storage().uri("badinput/uris/good.png")}]}),
    ):
        assert_error(changed, 422, "idempotency_mismatch", "Idempotency-Key")
        tally(IDEMPOTENCY)
    assert side_effects(bad) == before


@pytest.mark.parametrize("value", [b"", b"k" * 256, b"\xe9t\xe9"], ids=["empty", "256 chars",
                                                                       "latin-1"])
def test_an_idempotency_key_out_of_bounds_is_a_400_or_kept_apart(bad, mallory, bad_model, value):
    before = side_effects(bad)
    body = json.dumps({"model": bad_model, "inputs": [{"uri": "http://x/y"}]}).encode()
    request = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + bad.keys["mallory"].encode() + b"\r\nIdempotency-Key: " + value
               + b"\r\nContent-Type: application/json\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)
    from badinput.helpers import raw_request

    error = assert_error(raw_request(bad.url, request), 400, "invalid_spec")
    assert error["message"].startswith("Idempotency-Key" if len(value) != 3 else "inputs[0]")
    assert side_effects(bad) == before
    tally(IDEMPOTENCY)


def test_after_idempotency_keys_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model,
                                                                     reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker)

"""Inputs named by URI. A URI outside the configured storage and the data-set roots — other
schemes, other hosts, `..` in any spelling, the service's private tree — is refused at the API
(400, nothing stored). A URI in the right place whose object is bad (a folder, missing, a bomb,
an extreme aspect ratio, NaN, a pickle, a link out of the root) fails its item alone, with a
message, while the job's other items succeed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e.helpers import side_effects
from PIL import Image
from waiting import job_final

from badinput.cases import (
    ARRAY,
    ODD,
    PIXELS,
    clean_png,
    npy_header,
    pickled_npy,
)
from badinput.helpers import (
    assert_error,
    assert_map,
    check_worker,
    items_of,
    npy,
    pil_bytes,
    tally,
    zero_png,
)

FAMILY = "bad URIs"
PLACE = "badinput/uris"


def _refused_uris(root: str) -> list[tuple[str, object]]:
    """(case, URI) pairs refused at the API; `root` is the storage's `file://` URI."""
    return [
        ("http", "http://example.com/a.png"),
        ("https", "https://example.com/a.png"),
        ("link-local metadata", "http://169.254.169.254/latest/meta-data/"),
        ("loopback redis", "http://127.0.0.1:6379/"),
        ("loopback ipv6", "http://[::1]/a.png"),
        ("private address", "http://10.0.0.1/a.png"),
        ("ftp", "ftp://example.com/a.png"),
        ("gopher to redis", "gopher://127.0.0.1:6379/_FLUSHALL"),
        ("data uri", "data:image/png;base64,iVBORw0KGgo="),
        ("javascript", "javascript:alert(1)"),
        ("unc path", "\\\\server\\share\\a.png"),
        ("absolute path without scheme", "/etc/passwd"),
        ("relative path", "badinput/uris/good.png"),
        ("file outside the storage", "file:///etc/passwd"),
        ("proc environ", "file:///proc/self/environ"),
        ("file on localhost outside", "file://localhost/etc/passwd"),
        ("file on another host", "file://evil.example/a.png"),
        ("upper-case scheme outside", "FILE:///etc/passwd"),
        ("single-slash file", "file:/etc/passwd"),
        ("dot-dot", f"{root}/../../../etc/passwd"),
        ("dot-dot inside", f"{root}/{PLACE}/../../../../etc/passwd"),
        ("percent-encoded dot-dot", f"{root}/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        ("upper-case percent-encoded dot-dot", f"{root}/%2E%2E/%2E%2E/etc/passwd"),
        ("percent-encoded slash and dot-dot", f"{root}/a%2f..%2f..%2f..%2fetc%2fpasswd"),
        ("encoded nul", f"{root}/{PLACE}/good.png%00.png"),
        ("another tenant's private object", f"{root}/t/bob/jobs/x/inputs/000000.png"),
        ("the service's own tree", f"{root}/t/mallory-other/models/m/x.safetensors"),
        ("another bucket", "s3://another-bucket/a.png"),
        ("s3 without bucket", "s3:///a.png"),
        ("nul", f"{root}/{PLACE}/good.png\x00.png"),
        ("newline", f"{root}/{PLACE}/good.png\nHost: evil"),
        ("over 1024 characters", f"{root}/{PLACE}/" + "a" * 1100 + ".png"),
        ("empty", ""),
        ("a number", 42),
        ("null", None),
        ("a list", [f"{root}/{PLACE}/good.png"]),
    ]


def _root(bad) -> str:
    return bad.backend.storage().uri("x")[:-2]


URI_CASES = [case for case, _ in _refused_uris("file:///root")]


@pytest.mark.parametrize("case", URI_CASES)
def test_a_uri_outside_the_readable_places_is_refused_at_the_api(bad, mallory, bad_model, case):
    uri = dict(_refused_uris(_root(bad)))[case]
    before = side_effects(bad)
    response = mallory.post(f"{bad.url}/v1/jobs", json={
        "model": bad_model, "inputs": [{"uri": uri}]}, timeout=30)
    assert_error(response, 400, "invalid_spec", "inputs[0].uri")
    assert side_effects(bad) == before
    tally(FAMILY)


@pytest.mark.parametrize("field", ["mask", "manifest", "prefix"])
def test_a_mask_or_data_set_outside_the_readable_places_is_refused(bad, mallory, bad_model,
                                                                    field):
    before = side_effects(bad)
    if field == "mask":
        body = {"inputs": [{"uri": f"{_root(bad)}/{PLACE}/good.png",
                            "mask": "http://169.254.169.254/mask.png"}]}
        where = "inputs[0].mask"
    else:
        body = {"dataset": {field: "http://169.254.169.254/latest/"}}
        where = f"dataset.{field}"
    response = mallory.post(f"{bad.url}/v1/jobs", json={"model": bad_model, **body},
                            timeout=30)
    assert_error(response, 400, "invalid_spec", where)
    assert side_effects(bad) == before
    tally(FAMILY)


@pytest.mark.parametrize("field", ["coco", "voc"])
def test_annotations_outside_the_readable_places_are_refused(bad, mallory, bad_model, field):
    """Annotations are read where a manifest may be: the tenant's own area and the data-set
    roots; nothing else is ever fetched, another tenant's area included."""
    storage = bad.backend.storage()
    storage.put("t/mallory/annotated/a.png", clean_png())
    storage.put("t/trudy/annotations/instances.json", b"{}")
    before = side_effects(bad)
    for uri in ("http://169.254.169.254/latest/", "file:///etc/",
                "s3://another-bucket/instances.json", f"{_root(bad)}/../instances.json",
                storage.uri("t/trudy/annotations/instances.json")):
        response = mallory.post(f"{bad.url}/v1/jobs", timeout=30, json={
            "model": bad_model, "dataset": {
                "prefix": storage.uri("t/mallory/annotated") + "/",
                "annotations": {field: uri}}})
        assert_error(response, 400, "invalid_spec", f"dataset.annotations.{field}")
    assert side_effects(bad) == before
    tally(FAMILY)


LINKED_PREFIXES = ["a data-set root's link to /etc", "a folder under that link",
                   "a link out of the tenant's own area"]


@pytest.mark.parametrize("case", LINKED_PREFIXES)
def test_a_prefix_that_links_out_of_its_root_is_refused(bad, mallory, bad_model, tmp_path,
                                                         case):
    """A data-set prefix whose folder is a symbolic link out of its root (`etc -> /etc`) is
    a 400 at submission; nothing out there is listed."""
    outside = tmp_path / "outside"
    (outside / "cat").mkdir(parents=True)
    (outside / "cat" / "a.png").write_bytes(clean_png())
    storage = bad.backend.storage()
    roots = {"a data-set root's link to /etc": (bad.backend.dataset_dir, "escape-etc", "/etc", ""),
             "a folder under that link": (bad.backend.dataset_dir, "escape-etc", "/etc", "ssl/"),
             "a link out of the tenant's own area": (storage.root / "t" / "mallory", "linked",
                                                     outside, "")}
    root, name, target, below = roots[case]
    link = Path(root) / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target, target_is_directory=True)
    try:
        before = side_effects(bad)
        response = mallory.post(f"{bad.url}/v1/jobs", timeout=30, json={
            "model": bad_model, "dataset": {"prefix": f"{link.as_uri()}/{below}",
                                            "labels": "folder"}})
        assert side_effects(bad) == before
    finally:
        link.unlink()
    assert_error(response, 400, "invalid_spec", "dataset.prefix")
    assert "symbolic link" in response.json()["error"]["message"]
    tally(FAMILY)


def _bad_objects(tmp_path) -> list[tuple[str, bytes | None, str]]:
    """(name, bytes or None for a special entry, what the item's error says)."""
    return [
        ("folder", None, "folder"),
        ("missing.png", None, "no such object"),
        ("wide.png", zero_png(25_000_000, 1), "elongated"),
        ("tall.png", zero_png(300_000, 80), "elongated"),
        ("truncated.png", clean_png()[:len(clean_png()) // 2], "cannot be decoded"),
        ("nan.npy", npy(ARRAY * float("nan")), "NaN"),
        ("evil.npy", pickled_npy(str(tmp_path / "unpickled")), "float32"),
        ("small.npy", npy(ARRAY[:, :16, :16].copy()), "(3, 32, 32)"),
        ("header-only.npy", npy_header((3, 32, 32)), "array"),
        ("bomb.png", zero_png(6000, 6000), "exceeds the limit"),
        ("anim.gif", pil_bytes(Image.new("RGB", (8, 8)), "GIF"), "not an accepted format"),
        ("empty.png", b"", "not an accepted format"),
        ("escape.png", None, "leads out"),
        ("\u202egnp.exe", None, "no such object"),
    ]


def test_a_bad_object_fails_its_item_alone_while_the_others_succeed(
        bad, mallory, bad_model, reference, worker, tmp_path):
    storage = bad.backend.storage()
    storage.put(f"{PLACE}/good.png", clean_png())
    storage.put(f"{PLACE}/good-odd.png", pil_bytes(Image.fromarray(ODD), "PNG"))
    storage.put(f"{PLACE}/folder/inside.png", clean_png())
    outside = tmp_path / "outside.png"
    outside.write_bytes(clean_png())
    link = storage.root / PLACE / "escape.png"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    bad_objects = _bad_objects(tmp_path)
    for name, data, _ in bad_objects:
        if data is not None:
            storage.put(f"{PLACE}/{name}", data)
    uris = ([storage.uri(f"{PLACE}/good.png")]
            + [(storage.root / PLACE / name).as_uri() for name, _, _ in bad_objects]
            + [storage.uri(f"{PLACE}/good-odd.png")])
    response = mallory.post(f"{bad.url}/v1/jobs", json={
        "model": bad_model, "outputs": ["npy"], "inputs": [{"uri": u} for u in uris]},
        timeout=30)
    assert response.status_code == 202, response.text
    job = job_final(mallory, bad.url, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    assert job["progress"]["done"] == 2 and job["progress"]["failed"] == len(bad_objects), job
    items = items_of(mallory, bad.url, job["id"])
    first, *failed, last = items
    good_maps = reference.maps([PIXELS, ODD])
    assert_map(mallory, bad.url, first, good_maps[0])
    assert_map(mallory, bad.url, last, good_maps[1])
    for item, (name, _, says) in zip(failed, bad_objects, strict=True):
        assert item["status"] == "failed" and item["outputs"] == [], item
        assert says in item["error"], (name, item["error"])
    assert not (tmp_path / "unpickled").exists()
    check_worker(bad, worker)
    tally(FAMILY, len(items))


def test_a_bad_manifest_line_fails_its_item_alone(bad, mallory, bad_model, reference, worker):
    """A data set's manifest is read by the planner: a line nested 100,000 deep, with NaN,
    a lone surrogate, or no object at all fails its item with a message."""
    storage = bad.backend.storage()
    storage.put("t/mallory/manifests/good.png", clean_png())
    good = storage.uri("t/mallory/manifests/good.png")
    lines = [
        json.dumps({"uri": good}),
        "[" * 100_000,
        '{"uri": "GOOD", "label": NaN}'.replace("GOOD", good),
        '{"uri": "GOOD", "id": "\\ud800"}'.replace("GOOD", good),
        '{"uri": "GOOD", "box": [0, 0, Infinity, 1]}'.replace("GOOD", good),
        "[1, 2, 3]",
        "not json",
        json.dumps({"uri": good, "label": [1]}),
        json.dumps({"uri": "http://169.254.169.254/latest/meta-data/"}),
        json.dumps({"uri": good, "id": "last"}),
    ]
    storage.put("t/mallory/manifests/m.jsonl", "\n".join(lines).encode())
    response = mallory.post(f"{bad.url}/v1/jobs", timeout=30, json={
        "model": bad_model, "outputs": ["npy"],
        "dataset": {"manifest": storage.uri("t/mallory/manifests/m.jsonl")}})
    assert response.status_code == 202, response.text
    job = job_final(mallory, bad.url, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    assert job["progress"]["done"] == 2 and job["progress"]["failed"] == len(lines) - 2, job
    items = items_of(mallory, bad.url, job["id"])
    (want,) = reference.maps([PIXELS])
    for item in (items[0], items[-1]):
        assert_map(mallory, bad.url, item, want, tol=1e-3)
    for item in items[1:-2]:  # lines that are not an input's JSON object
        assert item["status"] == "failed" and item["error"].startswith("manifest line"), item
    assert items[-2]["status"] == "failed" and items[-2]["error"].startswith("uri: must be")
    check_worker(bad, worker)
    tally(FAMILY, len(lines))

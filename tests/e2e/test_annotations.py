"""COCO and VOC annotations on the real stack (local and S3 storage): a prefix of images with
an instances file (checked by pycocotools) or a folder of VOC XML, its boxes in the metrics
exactly as the same boxes given in a manifest, a union of boxes, an image without
annotation, an annotation of another size and a refused XML failing their items alone, and
annotations the API or the planner refuses."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from annotation_files import BILLION_LAUGHS, checked_coco, coco_json, voc_xml
from waiting import job_final

from e2e.helpers import all_items, counts, dataset_uri, download, image_bytes, side_effects
from e2e.helpers import put_in_dataset_root as put

CATEGORIES = [{"id": 3, "name": "kitty"}, {"id": 5, "name": "puppy"}]
CATEGORY_MAP = {"kitty": 3, "puppy": 5}  # the stack's model has no class names
METRICS = ("energy_in_box", "pointing_hit", "border_energy", "concentration")


def _job(alice, stack, model, dataset: dict) -> tuple[dict, list[dict]]:
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "model": model.name, "methods": ["gradient"], "target": "label", "map_dtype": "float32",
        "dataset": dataset}, timeout=30)
    assert response.status_code == 202, response.text
    job = job_final(alice, stack.url, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    return job, all_items(alice, stack.url, job["id"], limit=10)


def _figures(item: dict) -> tuple:
    metrics = item["outputs"][0]["metrics"]
    return tuple(metrics[m] for m in METRICS)


def _baselines(alice, stack, job: dict) -> dict[str, float | None]:
    """The centre-Gaussian baseline's energy in the box of each item (by file name), from
    the results file."""
    import json

    lines = alice.get(f"{stack.url}/v1/jobs/{job['id']}/results", params={"format": "jsonl"},
                      timeout=30).text.splitlines()
    rows = [json.loads(line) for line in lines]
    return {row["uri"].rsplit("/", 1)[1]: row["baseline_energy_in_box"] for row in rows}


def _union_metrics(alice, stack, item: dict, boxes: list[tuple[int, int, int, int]],
                   size: tuple[int, int]) -> dict:
    """The metrics of the item's map (downloaded) for the union of `boxes`, each placed as a
    manifest's box is."""
    from shared.spec.model import Preprocessing
    from worker.kinds.attribution.audit import box_to_input, item_metrics

    values = np.load(io.BytesIO(download(alice, stack, item["outputs"][0]["npy"])))
    prep = Preprocessing(input_size=32, resize=32)
    union = np.logical_or.reduce([box_to_input(b, size, prep).mask for b in boxes])
    return item_metrics(values, union, 32)


def test_coco_and_voc_boxes_reach_the_metrics_as_manifest_boxes_do(stack, stack_model, alice,
                                                                   tmp_path):
    run = f"annotated-{time.monotonic_ns()}"
    for i, rel in enumerate(("3/a.png", "3/b.png", "5/c.png", "5/d.png", "5/e.png")):
        put(stack, f"{run}/img/{rel}", image_bytes(700 + i, size=40))
    size = (40, 40)
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 40},
              {"id": 2, "file_name": "b.png", "width": 40, "height": 40},
              {"id": 3, "file_name": "c.png", "width": 40, "height": 40},
              {"id": 5, "file_name": "e.png", "width": 40, "height": 36}]
    annotations = [
        {"image_id": 1, "category_id": 3, "bbox": [4, 4, 20, 20]},
        {"image_id": 1, "category_id": 5, "bbox": [22, 22, 10, 10]},  # not the label's class
        {"image_id": 2, "category_id": 3, "bbox": [2, 2, 10, 10]},
        {"image_id": 2, "category_id": 3, "bbox": [25, 25, 8, 8]},
        {"image_id": 3, "category_id": 5, "bbox": [5.5, 8, 20, 15]},
        {"image_id": 5, "category_id": 3, "bbox": [0, 0, 4, 4]},
    ]
    data = coco_json(images, annotations, CATEGORIES)
    checked_coco(data, tmp_path)
    coco = put(stack, f"{run}/annotations/instances.json", data)
    prefix = dataset_uri(stack, f"{run}/img")
    job, (a, b, c, d, e) = _job(alice, stack, stack_model, {
        "prefix": prefix, "labels": "folder",
        "annotations": {"coco": coco, "category_map": CATEGORY_MAP}})
    assert counts(job) == {"total": 5, "done": 4, "failed": 1}
    assert job["dataset"]["annotations"] == {"coco": coco, "key": "file_name",
                                             "objects": "boxes", "category_map": CATEGORY_MAP}
    assert [i["label"] for i in (a, b, c, d)] == [3, 3, 5, 5]

    # The same boxes, [floor x, floor y, ceil(x + w), ceil(y + h)], given in a manifest.
    manifest = put(stack, f"{run}/manifest.jsonl", (
        b'{"uri": "img/3/a.png", "label": 3, "box": [4, 4, 24, 24]}\n'
        b'{"uri": "img/5/c.png", "label": 5, "box": [5, 8, 26, 23]}\n'))
    boxed, (boxed_a, boxed_c) = _job(alice, stack, stack_model, {"manifest": manifest})
    assert _figures(a) == pytest.approx(_figures(boxed_a), rel=1e-6)
    assert _figures(c) == pytest.approx(_figures(boxed_c), rel=1e-6)
    baselines = _baselines(alice, stack, job)
    assert baselines["d.png"] is None and baselines["a.png"] is not None
    assert {n: baselines[n] for n in ("a.png", "c.png")} == pytest.approx(
        _baselines(alice, stack, boxed), rel=1e-6)
    assert "reasons" not in a["outputs"][0]["metrics"]
    # Two boxes of the label's class: their union.
    union = _union_metrics(alice, stack, b, [(2, 2, 12, 12), (25, 25, 33, 33)], size)
    got = b["outputs"][0]["metrics"]
    assert got["energy_in_box"] == pytest.approx(union["energy_in_box"], rel=1e-5)
    assert got["pointing_hit"] == union["pointing_hit"]
    assert d["outputs"][0]["metrics"]["energy_in_box"] is None
    assert d["outputs"][0]["metrics"]["reasons"]["energy_in_box"] == (
        f"no annotation of this image in {coco}")
    assert e["status"] == "failed" and e["error"] == (
        f"{prefix}/5/e.png: its annotation ({coco} image 5) is of a 40x36 image, but the "
        "image is 40x40 (after its EXIF orientation)")

    # VOC: 1-based inclusive corners, [xmin - 1, ymin - 1, xmax, ymax]: the same boxes.
    voc = {"a": [("kitty", (5, 5, 24, 24)), ("puppy", (23, 23, 32, 32))],
           "b": [("kitty", (3, 3, 12, 12)), ("kitty", (26, 26, 33, 33))],
           "c": [("puppy", (6, 9, 26, 23))]}
    for stem, objects in voc.items():
        put(stack, f"{run}/voc/Annotations/{stem}.xml", voc_xml(f"{stem}.png", size, objects))
    put(stack, f"{run}/voc/Annotations/d.xml", BILLION_LAUGHS)
    folder = dataset_uri(stack, f"{run}/voc/Annotations") + "/"
    job, (va, vb, vc, vd, ve) = _job(alice, stack, stack_model, {
        "prefix": prefix, "labels": "folder",
        "annotations": {"voc": folder, "category_map": CATEGORY_MAP}})
    assert counts(job) == {"total": 5, "done": 4, "failed": 1}
    for got, want in ((va, a), (vb, b), (vc, c)):
        assert _figures(got) == pytest.approx(_figures(want), rel=1e-6), got["input"]
    assert vd["status"] == "failed" and vd["error"].startswith(
        f"{prefix}/5/d.png: its annotation in {folder}d.xml: refused: a DOCTYPE")
    assert ve["outputs"][0]["metrics"]["reasons"]["energy_in_box"] == (
        f"no annotation of this image in {folder}")


def test_annotations_the_api_or_the_planner_cannot_use_are_refused(stack, stack_model, alice):
    run = f"bad-annotations-{time.monotonic_ns()}"
    put(stack, f"{run}/img/a.png", image_bytes(720, size=40))
    prefix = dataset_uri(stack, f"{run}/img")
    picture = put(stack, f"{run}/picture.json", image_bytes(721, size=8))
    coco = put(stack, f"{run}/instances.json", coco_json([], [], CATEGORIES))
    empty = dataset_uri(stack, f"{run}/none") + "/"
    before = side_effects(stack)
    for given, message in (
        ({"coco": dataset_uri(stack, f"{run}/missing.json")},
         "dataset.annotations.coco: no object at"),
        ({"coco": picture}, f"dataset.annotations.coco: {picture!r} is not a JSON object"),
        ({"coco": coco, "category_map": {"kitty": 12}},
         "dataset.annotations.category_map.kitty: 12 is not a class of model"),
        ({"voc": empty}, "dataset.annotations.voc: nothing under"),
        ({"coco": coco, "objects": "outlines"}, "dataset.annotations.objects: must be one of"),
    ):
        response = alice.post(f"{stack.url}/v1/jobs", json={
            "model": stack_model.name, "dataset": {"prefix": prefix, "annotations": given}},
            timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_spec" and error["message"].startswith(message), error
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "kind": "top_activations", "model": stack_model.name, "layer": "layer1",
        "channels": [0], "dataset": {"prefix": prefix, "annotations": {"coco": coco}}},
        timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == (
        "dataset.annotations: only an attribution job reads annotations (for its audit's box "
        "metrics), not top_activations")
    assert side_effects(stack) == before

    broken = put(stack, f"{run}/broken.json", b'{"images": [{"id": 1, "file_name": "a.png"}')
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "model": stack_model.name, "dataset": {"prefix": prefix, "annotations": {
            "coco": broken}}}, timeout=30)
    assert response.status_code == 202, response.text
    job = job_final(alice, stack.url, response.json()["id"], timeout=120)
    assert job["status"] == "failed"
    assert job["error"].startswith(f"dataset.annotations.coco: {broken}: is not valid JSON")

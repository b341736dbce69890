"""Joining a data set's items to COCO and VOC annotations at planning, on a real Redis and
local storage: the objects in each plan line against pycocotools' own reading of the file,
category maps, the join keys, bad annotations failing their items alone, files the job
cannot use failing it with a message naming them, and a run's metrics and size check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from annotation_files import (
    BARE_DOCTYPE,
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    checked_coco,
    coco_json,
    voc_xml,
)

from shared.spec.annotations import ImageObjects, coco_box
from shared.status import JobStatus

CLASSES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CAT, DOG = 3, 5
CATEGORIES = [{"id": 17, "name": "cat", "supercategory": "animal"},
              {"id": 18, "name": "dog", "supercategory": "animal"},
              {"id": 1, "name": "person", "supercategory": "person"}]


@pytest.fixture
def rt(redis_server, tmp_path, tiny_weights, tiny_spec):
    """The runtime with the tiny model registered with class names (CIFAR-10's)."""
    from runtime_testing import Runtime

    rt = Runtime.start(f"{redis_server}/14", tmp_path, tiny_weights,
                       {**tiny_spec, "name": "named", "class_names": CLASSES})
    yield rt
    rt.ctx.redis.flushdb()


def _images(rt, names: list[str], size: tuple[int, int] = (40, 40)) -> str:
    """PNGs of `size` under `set/` in the data-set root; the prefix's URI."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for name in names:
        path = rt.root / "set" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    return (rt.root / "set").as_uri() + "/"


def _write(rt, rel: str, data: bytes) -> str:
    path = rt.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def _planned(rt, dataset: dict, **spec) -> tuple[str, list]:
    job_id = rt.dataset_job(dataset, **spec)
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert not job.planning and job.final_status is None, job.error
    return job_id, [source for start in range(0, job.total, job.plan_chunk)
                    for source in rt.ctx.layout(job).inputs(start,
                                                            min(start + job.plan_chunk, job.total))]


def _failed(rt, dataset: dict) -> str:
    """Plan a data set whose annotations fail the job: planning ends (or the job would never
    be finalized), and the finalizer makes it failed. Its error."""
    from worker.jobs.runner import advance

    job_id = rt.dataset_job(dataset)
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.final_status is JobStatus.FAILED and not job.planning
    advance(rt.ctx, job_id)
    assert rt.ctx.jobs.get(job_id).status is JobStatus.FAILED
    return job.error


def _image(i: int, name: str, size=(40, 40)) -> dict:
    return {"id": i, "file_name": name, "width": size[0], "height": size[1]}


def test_coco_objects_reach_each_items_plan_line_as_pycocotools_reads_them(rt, tmp_path):
    images = [_image(7, "a.png"), _image(8, "b.png"), _image(9, "elsewhere.png")]
    annotations = [
        {"image_id": 7, "category_id": 18, "bbox": [2.5, 3.0, 10.2, 7.0]},
        {"image_id": 7, "category_id": 18, "bbox": [20.0, 21.0, 5.0, 5.0]},
        {"image_id": 7, "category_id": 17, "bbox": [0.0, 0.0, 4.0, 4.0]},
        {"image_id": 7, "category_id": 1, "bbox": [1.0, 1.0, 3.0, 3.0]},  # no class: left out
        {"image_id": 8, "category_id": 17, "bbox": [30.9, 0.1, 9.0, 39.8]},
        {"image_id": 9, "category_id": 17, "bbox": [1.0, 1.0, 3.0, 3.0]},
    ]
    data = coco_json(images, annotations, CATEGORIES)
    reference = checked_coco(data, tmp_path)
    coco = _write(rt, "ann/instances.json", data)
    prefix = _images(rt, ["a.png", "b.png", "c.png"])
    _, (a, b, c) = _planned(rt, {"prefix": prefix, "annotations": {"coco": coco}})

    # The decision, worked by hand: [floor x, floor y, ceil(x + w), ceil(y + h)].
    assert a.objects == ImageObjects(f"{coco} image 7", (40, 40), boxes={
        DOG: ((2, 3, 13, 10), (20, 21, 25, 26)), CAT: ((0, 0, 4, 4),)})
    assert b.objects.boxes == {CAT: ((30, 0, 40, 40),)}
    assert c.objects == ImageObjects(coco, found=False)
    # Every item's objects are what pycocotools finds for its image, by category name.
    for source, image_id in ((a, 7), (b, 8)):
        expected: dict[int, list] = {}
        for ann in reference.loadAnns(reference.getAnnIds(imgIds=[image_id])):
            name = reference.loadCats([ann["category_id"]])[0]["name"]
            if name in CLASSES:
                expected.setdefault(CLASSES.index(name), []).append(coco_box(ann["bbox"]))
        assert {k: list(v) for k, v in source.objects.boxes.items()} == expected
        info = reference.loadImgs([image_id])[0]
        assert source.objects.size == (info["width"], info["height"])


def test_a_category_map_by_name_or_id_names_classes_by_index_or_name(rt, tmp_path):
    categories = [{"id": 40, "name": "kitty"}, {"id": 41, "name": "puppy"},
                  {"id": 42, "name": "dog"}]
    annotations = [{"image_id": 1, "category_id": c, "bbox": [c - 40, 0, 2, 2]}
                   for c in (40, 41, 42)]
    data = coco_json([_image(1, "a.png")], annotations, categories)
    checked_coco(data, tmp_path)
    coco = _write(rt, "ann/mapped.json", data)
    prefix = _images(rt, ["a.png"])
    _, (a,) = _planned(rt, {"prefix": prefix, "annotations": {
        "coco": coco, "category_map": {"kitty": "cat", "41": DOG}}})
    # kitty by name to a class name, puppy by id to an index, dog by its own name.
    assert a.objects.boxes == {CAT: ((0, 0, 2, 2),), DOG: ((1, 0, 3, 2), (2, 0, 4, 2))}

    error = _failed(rt, {"prefix": prefix, "annotations": {
        "coco": coco, "category_map": {"kitten": "cat"}}})
    assert error == (f"dataset.annotations.category_map: ['kitten'] name no category of "
                     f"{coco} (by name or id)")


def test_a_bad_annotation_fails_its_item_alone(rt, tmp_path):
    images = [_image(1, "a.png"), _image(2, "b.png"), _image(3, "c.png", (40, "x"))]
    annotations = [{"image_id": 1, "category_id": 17, "bbox": [0, 0, 4, 4]},
                   {"image_id": 2, "category_id": 17, "bbox": [5, 5, 0, 3]},
                   {"image_id": 2, "category_id": 18, "bbox": [0, 0, 4, 4]},
                   {"image_id": 1, "category_id": 99, "bbox": [0, 0, 4, 4]}]
    data = coco_json(images, annotations, CATEGORIES)
    coco = _write(rt, "ann/bad.json", data)
    prefix = _images(rt, ["a.png", "b.png", "c.png", "d.png"])
    _, (a, b, c, d) = _planned(rt, {"prefix": prefix, "annotations": {"coco": coco}})
    assert a.error == (f"{a.name}: its annotation in {coco} image 1: annotation 4: "
                       "category_id 99 is not among the file's categories")
    assert b.error == (f"{b.name}: its annotation in {coco} image 2: annotation 2: bbox "
                       "[5, 5, 0, 3] has no area (its width and height must be positive)")
    assert c.error == (f"{c.name}: its annotation in {coco} image 3: width and height must be "
                       "positive integers, got 40 and 'x'")
    assert d.error is None and d.objects == ImageObjects(coco, found=False)


def test_items_join_by_path_suffix_by_id_and_ambiguity_fails_the_items_it_concerns(rt):
    images = [_image(1, "x/0.png"), _image(2, "y/0.png"), _image(3, "z.png"),
              _image(4, "dup.png"), _image(5, "./dup.png"), _image(6, "000042.png"),
              _image(7, "/mnt/data/coco/w.png")]
    annotations = [{"image_id": i, "category_id": 17, "bbox": [i, 0, 1, 1]}
                   for i in range(1, 8)]
    coco = _write(rt, "ann/paths.json", coco_json(images, annotations, CATEGORIES))
    prefix = _images(rt, ["x/0.png", "y/0.png", "y/z.png", "dup.png", "000006.png", "w.png"])
    _, (six, dup, w, x0, y0, z) = _planned(rt, {"prefix": prefix,
                                                "annotations": {"coco": coco}})
    # By as many folders as the annotated name has; else (an absolute path) by file name.
    assert [s.objects.boxes[CAT][0][0] for s in (x0, y0, z, w)] == [1, 2, 3, 7]
    assert dup.error == (f"{dup.name}: more than one image in {coco} has the file name "
                         "'dup.png'; give them distinct names, or join by the other key "
                         '(dataset.annotations.key: "id" or "file_name")')
    assert six.objects.found is False  # by file name, not by id

    _, (six, dup, *_rest) = _planned(rt, {"prefix": prefix,
                                          "annotations": {"coco": coco, "key": "id"}})
    assert six.objects.source == f"{coco} image 6"  # 000006 is id 6
    assert dup.objects.found is False


def _runs(mask: np.ndarray) -> list[int]:
    """An uncompressed COCO RLE's counts: run lengths of the column-major pixels, from 0s."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return [0, *runs] if flat[0] else runs


def test_masks_are_the_union_of_a_classs_objects_as_pycocotools_draws_them(rt, tmp_path):
    from pycocotools import mask as coco_mask

    height, width = 30, 40
    compressed = np.zeros((height, width), dtype=np.uint8)
    compressed[20:25, 1:9] = 1
    counts = coco_mask.encode(np.asfortranarray(compressed))["counts"].decode()
    uncompressed = np.zeros((height, width), dtype=np.uint8)
    uncompressed[1:5, 30:35] = 1
    annotations = [
        {"image_id": 1, "category_id": 18, "bbox": [2, 2, 10, 10],
         "segmentation": [[2, 2, 12, 2, 12, 12], [20, 20, 25, 20, 25, 28, 20, 28]]},
        {"image_id": 1, "category_id": 18, "bbox": [1, 20, 8, 5],
         "segmentation": {"size": [height, width], "counts": counts}},
        {"image_id": 1, "category_id": 17, "bbox": [30, 1, 5, 4],
         "segmentation": {"size": [height, width], "counts": _runs(uncompressed)}},
        {"image_id": 1, "category_id": 17, "bbox": [3, 3, 2, 2], "segmentation": []},
        {"image_id": 2, "category_id": 18, "bbox": [0, 0, 1, 1],
         "segmentation": {"size": [height, width], "counts": [5, 3]}},
        {"image_id": 3, "category_id": 17, "bbox": [50, 40, 5, 5], "segmentation": []},
    ]
    images = [_image(i, f"{n}.png", (width, height)) for i, n in enumerate("abc", start=1)]
    data = coco_json(images, annotations, CATEGORIES)
    reference = checked_coco(data, tmp_path)
    coco = _write(rt, "ann/masks.json", data)
    prefix = _images(rt, ["a.png", "b.png", "c.png"], (width, height))
    _, (a, b, c) = _planned(rt, {"prefix": prefix,
                                 "annotations": {"coco": coco, "objects": "masks"}})
    for cls, name in ((DOG, "dog"), (CAT, "cat")):
        anns = reference.loadAnns(reference.getAnnIds(
            imgIds=[1], catIds=reference.getCatIds(catNms=[name])))
        union = np.zeros((height, width), dtype=bool)
        for ann in anns:
            if ann["segmentation"]:
                with warnings.catch_warnings():  # pycocotools' decode, under numpy 2
                    warnings.simplefilter("ignore", DeprecationWarning)
                    union |= reference.annToMask(ann) != 0
            else:  # no segmentation: its box
                x0, y0, x1, y1 = coco_box(ann["bbox"])
                union[y0:y1, x0:x1] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            got = coco_mask.decode({"size": [height, width],
                                    "counts": a.objects.masks[cls].encode()}) != 0
        assert np.array_equal(got, union), name
    assert b.error == (f"{b.name}: its annotation in {coco} image 2: its RLE covers 8 pixels, "
                       f"not the image's {height * width}")
    # A box wholly outside its image: an empty mask, which the metrics say marks no pixel.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert not coco_mask.decode({"size": [height, width],
                                     "counts": c.objects.masks[CAT].encode()}).any()


def test_voc_objects_by_filename_or_stem_and_refused_xml_fails_its_item_alone(rt):
    _write(rt, "voc/Annotations/a.xml", voc_xml("a.png", (40, 40), [
        ("dog", (3, 4, 10, 12)), ("cat", (1, 1, 40, 40)), ("person", (1, 1, 2, 2))]))
    _write(rt, "voc/Annotations/b-annotation.xml", voc_xml("b.png", None, [
        ("dog", (1.5, 2, 5.5, 6))]))
    _write(rt, "voc/Annotations/c.xml", voc_xml(None, (0, 0), [("cat", (5, 5, 5, 5))]))
    _write(rt, "voc/Annotations/d.xml", BILLION_LAUGHS)
    _write(rt, "voc/Annotations/e.xml", EXTERNAL_ENTITY)
    _write(rt, "voc/Annotations/f.xml", BARE_DOCTYPE)
    _write(rt, "voc/Annotations/g.xml", b"<annotation><object><name>dog</name>")
    _write(rt, "voc/Annotations/notes.txt", b"not an annotation")
    voc = (rt.root / "voc" / "Annotations").as_uri() + "/"
    prefix = _images(rt, [f"{n}.png" for n in "abcdefgh"])
    _, (a, b, c, d, e, f, g, h) = _planned(rt, {"prefix": prefix, "annotations": {"voc": voc}})
    # The decision, worked by hand: [xmin − 1, ymin − 1, xmax, ymax].
    assert a.objects == ImageObjects(f"{voc}a.xml", (40, 40), boxes={
        DOG: ((2, 3, 10, 12),), CAT: ((0, 0, 40, 40),)})
    assert b.objects == ImageObjects(f"{voc}b-annotation.xml", None,
                                     boxes={DOG: ((0, 1, 6, 6),)})
    assert c.objects == ImageObjects(f"{voc}c.xml", None, boxes={CAT: ((4, 4, 5, 5),)})
    for source in (d, e, f):
        assert source.error.startswith(f"{source.name}: its annotation in {voc}"
                                       f"{source.name[-5]}.xml: refused: a DOCTYPE or entity "
                                       "declaration"), source.error
    assert g.error.startswith(f"{g.name}: its annotation in {voc}g.xml: is not well-formed XML")
    assert h.objects == ImageObjects(voc, found=False)


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("broken.json", b'{"images": [{"id": 1, "file_name": "a.png"}', "is not valid JSON"),
    ("list.json", b"[1, 2]", "has no categories; is it a COCO instances file?"),
    ("nameless.json", coco_json([{"id": 1}], [], CATEGORIES),
     "images[0] needs an integer id (0 to 2^63 - 1) and a file_name"),
    ("twice.json", coco_json([_image(1, "a.png"), _image(1, "b.png")], [], CATEGORIES),
     "image id 1 is given twice"),
    ("strangers.json", coco_json([_image(1, "a.png")], [], [{"id": 1, "name": "sofa"}]),
     "is a class of model"),
])
def test_an_annotation_file_the_job_cannot_use_fails_it_naming_the_file(rt, name, data,
                                                                        expected):
    coco = _write(rt, f"ann/{name}", data)
    error = _failed(rt, {"prefix": _images(rt, ["a.png"]), "annotations": {"coco": coco}})
    assert error.startswith("dataset.annotations.coco:") and coco in error, error
    assert expected in error, error


def test_an_annotation_file_over_the_limit_fails_the_job_naming_the_setting(rt):
    data = coco_json([_image(1, "a.png")], [], CATEGORIES)
    coco = _write(rt, "ann/large.json", data)
    rt.configure(max_annotation_bytes=len(data) - 1)
    error = _failed(rt, {"prefix": _images(rt, ["a.png"]), "annotations": {"coco": coco}})
    assert error == (f"dataset.annotations.coco: {coco} is larger than {len(data) - 1} bytes "
                     "(SALIENCY_MAX_ANNOTATION_BYTES)")


def test_a_run_gives_box_metrics_of_the_target_class_and_fails_a_resized_image(rt):
    images = [_image(1, "a.png"), _image(2, "b.png", (40, 30)), _image(3, "c.png")]
    annotations = [{"image_id": 1, "category_id": 18, "bbox": [4, 4, 20, 20]},
                   {"image_id": 2, "category_id": 18, "bbox": [4, 4, 20, 20]},
                   {"image_id": 3, "category_id": 17, "bbox": [4, 4, 20, 20]}]
    coco = _write(rt, "ann/run.json", coco_json(images, annotations, CATEGORIES))
    lines = [{"uri": _images(rt, [n]) + n, "label": "dog"} for n in ("a.png", "b.png", "c.png")]
    lines.append({"uri": _images(rt, ["d.png"]) + "d.png", "label": "dog"})
    manifest = rt.manifest("m.jsonl", lines)
    job_id = rt.dataset_job({"manifest": manifest, "annotations": {"coco": coco}},
                            target="label")
    rt.run(job_id)
    job = rt.ctx.jobs.get(job_id)
    a, b, c, d = rt.ctx.layout(job).records()
    assert a.ok and a.outputs[0].metrics["energy_in_box"] is not None
    assert "reasons" not in a.outputs[0].metrics and a.baseline["energy_in_box"] is not None
    assert b.error == (f"{lines[1]['uri']}: its annotation ({coco} image 2) is of a 40x30 "
                       "image, but the image is 40x40 (after its EXIF orientation)")
    assert c.outputs[0].metrics["reasons"] == dict.fromkeys(
        ("energy_in_box", "pointing_hit"),
        f"its annotation ({coco} image 3) has no object of class 5 (dog), the label")
    assert d.outputs[0].metrics["reasons"]["energy_in_box"] == (
        f"no annotation of this image in {coco}")

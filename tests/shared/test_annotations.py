"""COCO and VOC annotations as the contract reads them: the `dataset.annotations` spec, the
box conventions (worked by hand), category maps, the COCO reader against pycocotools, RLE
decoding against pycocotools, and VOC XML with its DOCTYPEs refused."""

from __future__ import annotations

import io
import json
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

from shared.errors import InputError, SpecError
from shared.spec.annotations import (
    AnnotationError,
    AnnotationsSpec,
    CategoryClasses,
    ImageObjects,
    coco_box,
    parse_annotations,
    voc_box,
)
from shared.spec.coco import categories, images, objects, rle_mask, rle_string_counts
from shared.spec.coco import segmentation_error as problem
from shared.spec.datasets import parse_dataset
from shared.spec.model import ModelSpec
from shared.spec.voc import parse_voc

MODEL = ModelSpec("m", 4, class_names=("plane", "cat", "dog", "ship"))


def test_a_dataset_carries_annotations_with_their_defaults_and_echoes_them():
    for base in ({"manifest": "s3://b/m.jsonl"}, {"prefix": "s3://b/img/"}):
        spec = parse_dataset({**base, "annotations": {"coco": "s3://b/instances.json"}})
        assert spec.annotations == AnnotationsSpec(coco="s3://b/instances.json")
        assert spec.to_json() == {**base, "annotations": {
            "coco": "s3://b/instances.json", "key": "file_name", "objects": "boxes"}}
        assert parse_dataset(spec.to_json()) == spec
    voc = parse_annotations({"voc": "s3://b/Annotations/", "key": "id",
                             "category_map": {"pottedplant": 3, "cow": "dog"}})
    assert voc.to_json() == {"voc": "s3://b/Annotations/", "key": "id",
                             "category_map": {"pottedplant": 3, "cow": "dog"}}


@pytest.mark.parametrize(("raw", "field"), [
    ({}, "dataset.annotations"),
    ({"coco": "s3://b/a.json", "voc": "s3://b/v/"}, "dataset.annotations"),
    ("s3://b/a.json", "dataset.annotations"),
    ({"coco": 3}, "dataset.annotations.coco"),
    ({"coco": "s3://b/a.json", "labels": "folder"}, "dataset.annotations.labels"),
    ({"voc": "s3://b/v/", "objects": "masks"}, "dataset.annotations.objects"),
    ({"coco": "s3://b/a.json", "objects": "polygons"}, "dataset.annotations.objects"),
    ({"coco": "s3://b/a.json", "key": "image_id"}, "dataset.annotations.key"),
    ({"coco": "s3://b/a.json", "category_map": {}}, "dataset.annotations.category_map"),
    ({"coco": "s3://b/a.json", "category_map": ["cat"]}, "dataset.annotations.category_map"),
    ({"coco": "s3://b/a.json", "category_map": {"cat": True}},
     "dataset.annotations.category_map.cat"),
    ({"coco": "s3://b/a.json", "category_map": {"cat": -1}},
     "dataset.annotations.category_map.cat"),
])
def test_a_malformed_annotations_field_is_refused_naming_it(raw, field):
    with pytest.raises(SpecError) as caught:
        parse_dataset({"prefix": "s3://b/img/", "annotations": raw})
    assert caught.value.field == field


def test_a_category_map_value_must_be_a_class_of_the_model():
    spec = parse_dataset({"prefix": "s3://b/img/", "annotations": {
        "coco": "s3://b/a.json", "category_map": {"kitty": "cat", "18": 2, "ox": "cow"}}})
    with pytest.raises(SpecError, match="^dataset.annotations.category_map.ox: 'cow' is not a "
                                        "class of model 'm' "):
        spec.check_classes(MODEL)
    spec = parse_dataset({"prefix": "s3://b/img/", "annotations": {
        "voc": "s3://b/v/", "category_map": {"boat": 4}}})
    with pytest.raises(SpecError, match="^dataset.annotations.category_map.boat: 4 is not"):
        spec.check_classes(MODEL)


def test_categories_map_by_name_then_by_id_then_by_equal_name():
    spec = AnnotationsSpec(coco="s3://b/a.json", category_map={"kitty": "cat", "18": 2})
    classes = CategoryClasses(spec, MODEL)
    assert classes.of("kitty", 17) == 1  # by name, to a class name
    assert classes.of("puppy", 18) == 2  # by id, to an index
    assert classes.of("ship", 3) == 3  # the class of the same name
    assert classes.of("person", 1) is None
    assert classes.of("18") == 2  # a VOC name that looks like an id is a name
    assert classes.unknown_keys({"kitty"}, {18}) == []
    assert classes.unknown_keys({"cat"}, {17}) == ["18", "kitty"]


def test_coco_and_voc_boxes_follow_the_decisions():
    # COCO [x, y, w, h] -> [floor x, floor y, ceil(x + w), ceil(y + h)]
    assert coco_box([2.5, 3.0, 10.2, 7.0]) == (2, 3, 13, 10)
    assert coco_box([0, 0, 40, 30]) == (0, 0, 40, 30)
    assert coco_box([-0.5, 1.2, 0.4, 0.3]) == (-1, 1, 0, 2)
    # VOC 1-based inclusive -> [xmin - 1, ymin - 1, xmax, ymax]
    assert voc_box(1, 1, 40, 30) == (0, 0, 40, 30)
    assert voc_box(5, 5, 5, 5) == (4, 4, 5, 5)  # one pixel
    assert voc_box(1.5, 2, 5.5, 6) == (0, 1, 6, 6)
    for bad in ([1, 2, 0, 5], [1, 2, 3], [1, 2, float("nan"), 3], [1, 2, True, 3], None):
        with pytest.raises(AnnotationError, match="bbox"):
            coco_box(bad)
    with pytest.raises(AnnotationError, match="needs xmin <= xmax"):
        voc_box(10, 1, 9, 5)


def test_image_objects_round_trip_through_a_plan_line():
    objects = ImageObjects("s3://b/a.json image 4", (40, 30),
                           boxes={1: ((0, 0, 4, 4), (5, 5, 9, 9))}, masks={2: "abc"})
    line = json.loads(json.dumps(objects.to_json()))
    assert ImageObjects.from_json(line) == objects
    missing = ImageObjects("s3://b/a.json", found=False)
    assert ImageObjects.from_json(missing.to_json()) == missing


def test_the_coco_reader_sees_what_pycocotools_sees(tmp_path):
    data = coco_json(
        [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
         {"id": 2, "file_name": "sub/b.jpg"}, {"id": 3, "file_name": "c.jpg", "width": 0,
                                                "height": 5}],
        [{"image_id": 1, "category_id": 7, "bbox": [1.5, 2, 3, 4],
          "segmentation": [[1, 2, 4, 2, 4, 6]]},
         {"image_id": 2, "category_id": 9, "bbox": [0, 0, 2, 2], "segmentation": []},
         {"image_id": 2, "category_id": 7, "bbox": [0, 0, -2, 2]},
         {"image_id": 1, "category_id": "7", "bbox": [0, 0, 2, 2]}],
        [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}])
    reference = checked_coco(data, tmp_path)
    f = io.BytesIO(data)
    assert categories(f, "x") == {c["id"]: c["name"] for c in reference.dataset["categories"]}
    got = list(images(f, "x"))
    assert [(i.id, i.file_name) for i in got] == [
        (i["id"], i["file_name"]) for i in reference.dataset["images"]]
    assert [i.size for i in got] == [(40, 30), None, None]
    assert got[2].error == "width and height must be positive integers, got 0 and 5"
    found = list(objects(f, "x", with_segmentation=True))
    assert [(o.image_id, o.category_id, o.box) for o in found[:2]] == [
        (a["image_id"], a["category_id"], coco_box(a["bbox"]))
        for a in reference.dataset["annotations"][:2]]
    assert [o.segmentation for o in found[:2]] == [[[1, 2, 4, 2, 4, 6]], None]
    assert found[2].error == ("annotation 3: bbox [0, 0, -2, 2] has no area (its width and "
                              "height must be positive)")
    assert found[3].error == "annotation 4: category_id must be an integer"
    assert [o.segmentation for o in objects(f, "x", with_segmentation=False)] == [None] * 4


@pytest.mark.parametrize(("data", "message"), [
    (b'{"categories": [{"id": 1, "name": "cat"}], "images": [', "x: is not valid JSON"),
    (b'{"images": [], "annotations": []}', "x: has no categories"),
    (b'{"categories": [{"id": 1}]}', "x: categories[0] needs an integer id and a name"),
    (coco_json([{"id": -1, "file_name": "a.png"}], [], [{"id": 1, "name": "cat"}]),
     "x: images[0] needs an integer id (0 to 2^63 - 1) and a file_name"),
])
def test_a_file_that_is_not_a_coco_file_is_an_input_error(data, message):
    f = io.BytesIO(data)
    with pytest.raises(InputError) as caught:
        categories(f, "x")
        list(images(f, "x"))
    assert caught.value.message.startswith(message)


def test_compressed_rle_decodes_as_pycocotools_decodes_it():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(5)
    for height, width in ((7, 5), (30, 40), (1, 1)):
        mask = rng.random((height, width)) < 0.4
        rle = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))
        with warnings.catch_warnings():  # pycocotools' decode, under numpy 2
            warnings.simplefilter("ignore", DeprecationWarning)
            reference = coco_mask.decode(rle) != 0
        assert np.array_equal(rle_mask(rle["counts"].decode(), width, height), reference)
        assert np.array_equal(reference, mask)
        runs = rle_string_counts(rle["counts"].decode())
        assert np.array_equal(rle_mask(runs, width, height), mask)
    for counts, message in (("/", "character out of range"), ("P", "ends inside"),
                            ("\x7f", "character out of range"), ("@", "run out of range")):
        with pytest.raises(AnnotationError, match=message):
            rle_string_counts(counts)


def test_segmentations_pycocotools_must_not_be_given_are_refused():
    assert problem([[1, 1, 10, 1, 10, 8]], 20, 10) is None
    assert problem({"size": [10, 20], "counts": [5, 195]}, 20, 10) is None
    assert "at least 3 points" in problem([[1, 1, 10, 1]], 20, 10)
    assert "at least 3 points" in problem([[1, 1, 10, 1, 10]], 20, 10)
    assert "outside the 20x10 image" in problem([[1, 1, 1e12, 1, 10, 8]], 20, 10)
    assert "more than 64 times" in problem([[0, 0, 20, 10] * 500], 20, 10)
    assert "not the image's [height, width] [10, 20]" in problem(
        {"size": [20, 10], "counts": [200]}, 20, 10)
    assert "covers 300 pixels, not the image's 200" in problem(
        {"size": [10, 20], "counts": [100, 200]}, 20, 10)
    assert "covers" in problem({"size": [10, 20], "counts": "0"}, 20, 10)
    assert "non-negative integers" in problem({"size": [10, 20], "counts": [-5, 205]}, 20, 10)
    assert "list of polygons or an RLE" in problem("polygon", 20, 10)


def test_a_voc_annotation_gives_its_file_name_size_and_objects():
    got = parse_voc(voc_xml("2007_000027.jpg", (486, 500), [
        ("person", (174, 101, 349, 351)), ("dog", (1.5, 2, 5.5, 6))]))
    assert got.filename == "2007_000027.jpg" and got.size == (486, 500)
    assert got.objects == (("person", (173, 100, 349, 351)), ("dog", (0, 1, 6, 6)))
    assert parse_voc(voc_xml(None, (0, 0), [])).size is None


@pytest.mark.parametrize(("data", "message"), [
    (BILLION_LAUGHS, "refused: a DOCTYPE"),
    (EXTERNAL_ENTITY, "refused: a DOCTYPE"),
    (BARE_DOCTYPE, "refused: a DOCTYPE"),
    (b"<annotation><object>", "is not well-formed XML"),
    (b"<svg/>", r"is not a VOC annotation \(its root is <svg>"),
    (b"<annotation><object><name>cat</name></object></annotation>",
     r"object 1 \(cat\) has no bndbox"),
    (voc_xml("a.jpg", None, [("cat", (1, 1, 3, 3))]).replace(b"<xmax>3", b"<xmax>three"),
     r"object 1 \(cat\) bndbox/xmax must be a number"),
    (voc_xml("a.jpg", (-3, 4), []), "size must be positive whole numbers"),
])
def test_a_voc_annotation_that_cannot_be_read_is_refused(data, message):
    with pytest.raises(AnnotationError, match=message):
        parse_voc(data)

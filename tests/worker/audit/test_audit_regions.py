"""Boxes and masks follow the image through the resize and centre crop of `preprocess_image`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as TF

from shared.errors import InputError
from shared.spec.model import Preprocessing
from worker.kinds.attribution.audit.regions import Region, box_to_input, mask_to_input, resized_size
from worker.models.build import preprocess_image

# Plain [0, 1] pixels out of preprocess_image: the normalization is the identity.
PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def coverage(width: int, height: int, box, prep: Preprocessing) -> np.ndarray:
    """How much of each input pixel a white box on black covers, through preprocess_image."""
    image = Image.new("L", (width, height), 0)
    x0, y0, x1, y1 = box
    ImageDraw.Draw(image).rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    return preprocess_image(image, prep)[0].numpy()


CASES = [
    # (width, height, box, input_size, resize)
    (320, 240, (40, 30, 200, 150), 64, 80),  # landscape: crop left and right
    (240, 320, (10, 200, 120, 310), 64, 72),  # portrait: crop top and bottom
    (100, 100, (20, 20, 60, 80), 32, 32),  # square, no crop
    (640, 200, (300, 50, 400, 150), 48, 56),  # wide, heavy crop
    (77, 131, (5, 9, 70, 40), 40, 45),  # odd sizes
]


@pytest.mark.parametrize(("width", "height", "box", "side", "resize"), CASES)
def test_box_covers_the_pixels_preprocess_image_puts_it_in(width, height, box, side, resize):
    prep = Preprocessing(input_size=side, resize=resize, **PLAIN)
    region = box_to_input(box, (width, height), prep)
    cover = coverage(width, height, box, prep)
    assert region.mask is not None and region.mask.shape == (side, side)
    assert region.mask[cover > 0.75].all()
    assert not region.mask[cover < 0.25].any()
    assert region.mask.any()


@given(width=st.integers(8, 600), height=st.integers(8, 600), resize=st.integers(8, 300))
@settings(max_examples=60, deadline=None)
def test_resized_size_is_torchvision_s(width, height, resize):
    out = TF.resize(torch.zeros(1, height, width), [resize], antialias=False)
    assert resized_size(width, height, resize) == (out.shape[2], out.shape[1])


def test_a_box_cropped_away_has_no_mask_and_says_why():
    prep = Preprocessing(input_size=64, resize=64)
    region = box_to_input([0, 0, 20, 64], (256, 64), prep)  # the crop keeps x in [96, 160)
    assert region.mask is None
    assert "centre crop" in region.reason


def test_a_box_outside_the_image_has_no_mask_and_says_why():
    region = box_to_input([120, 0, 150, 10], (100, 100), Preprocessing(32, 32))
    assert region.mask is None
    assert "outside the 100×100 image" in region.reason


def test_a_box_partly_outside_the_image_is_clipped():
    prep = Preprocessing(input_size=32, resize=32)
    region = box_to_input([-10, -10, 16, 16], (32, 32), prep)
    expected = np.zeros((32, 32), bool)
    expected[:16, :16] = True
    np.testing.assert_array_equal(region.mask, expected)


def test_a_box_thinner_than_a_pixel_keeps_the_pixel_under_it():
    prep = Preprocessing(input_size=32, resize=32)
    region = box_to_input([500, 200, 502, 202], (1000, 1000), prep)  # 0.064 px after resizing
    assert region.mask.sum() == 1
    assert region.mask[6, 16]


@pytest.mark.parametrize("box", [[1, 2, 3], [5, 5, 5, 9], [9, 0, 3, 4], ["a", 0, 1, 1],
                                 [0, 0, float("nan"), 1], [True, 0, 1, 1]])
def test_a_malformed_box_is_an_input_error_naming_the_box(box):
    with pytest.raises(InputError, match="^box: "):
        box_to_input(box, (10, 10), Preprocessing(8, 8))


def test_a_region_has_a_mask_or_a_reason():
    with pytest.raises(ValueError):
        Region(None)
    with pytest.raises(ValueError):
        Region(np.ones((2, 2), bool), "both")


def disc(width: int, height: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width] + 0.5
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.mark.parametrize(("width", "height", "side", "resize"),
                         [(300, 200, 64, 72), (90, 160, 32, 40)])
def test_mask_is_the_preprocessed_mask_picture_thresholded_at_half(width, height, side, resize):
    prep = Preprocessing(input_size=side, resize=resize, **PLAIN)
    mask = disc(width, height, width * 0.45, height * 0.55, min(width, height) / 4)
    picture = Image.fromarray((mask * 255).astype(np.uint8))
    expected = preprocess_image(picture, prep)[0].numpy() >= 0.5
    region = mask_to_input(mask, prep)
    assert expected.any()
    # The picture is rounded to 8 bits before resizing; our mask is not: only pixels within
    # rounding of one half may differ.
    cover = preprocess_image(picture, prep)[0].numpy()
    differ = region.mask != expected
    assert np.all(np.abs(cover[differ] - 0.5) < 0.01)


def test_mask_outside_the_crop_has_no_mask_and_says_why():
    mask = np.zeros((64, 256), bool)
    mask[10:50, 5:40] = True
    region = mask_to_input(mask, Preprocessing(input_size=64, resize=64))
    assert region.mask is None and "centre crop" in region.reason


def test_an_empty_mask_has_no_mask_and_says_why():
    region = mask_to_input(np.zeros((20, 20), np.uint8), Preprocessing(8, 8))
    assert region.mask is None and "no pixel" in region.reason


def test_a_mask_thinner_than_half_a_pixel_keeps_its_strongest_pixels():
    mask = np.zeros((400, 400), bool)
    mask[:, 200] = True  # one column: 0.08 of an input pixel wide at 32 px
    region = mask_to_input(mask, Preprocessing(input_size=32, resize=32))
    assert region.mask is not None
    columns = np.flatnonzero(region.mask.any(axis=0))
    assert set(columns) <= {15, 16}
    assert region.mask[:, columns[0]].all()


def test_a_mask_of_the_wrong_rank_is_an_input_error():
    with pytest.raises(InputError, match="^mask: "):
        mask_to_input(np.ones((2, 3, 4)), Preprocessing(8, 8))


def test_an_annotations_boxes_of_a_class_cover_what_preprocess_image_puts_them_in():
    """The union of the class's boxes, each placed as `box_to_input` places one; the other
    class's box is not the object."""
    from shared.spec.annotations import ImageObjects
    from worker.kinds.attribution.audit.regions import objects_to_input

    width, height, prep = 160, 120, Preprocessing(input_size=48, resize=56, **PLAIN)
    boxes = ((20, 10, 60, 50), (90, 60, 150, 110))
    objects = ImageObjects("s3://b/instances.json image 1", (width, height),
                           boxes={3: boxes, 5: ((0, 0, 10, 10),)})
    region = objects_to_input(objects, 3, "class 3", (width, height), prep)
    image = Image.new("L", (width, height), 0)
    for x0, y0, x1, y1 in boxes:
        ImageDraw.Draw(image).rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    cover = preprocess_image(image, prep)[0].numpy()
    assert region.mask[cover > 0.75].all() and not region.mask[cover < 0.25].any()
    assert np.array_equal(region.mask, box_to_input(boxes[0], (width, height), prep).mask
                          | box_to_input(boxes[1], (width, height), prep).mask)


def test_an_annotations_mask_of_a_class_is_placed_as_a_mask_is():
    from pycocotools import mask as coco_mask

    from shared.spec.annotations import ImageObjects
    from worker.kinds.attribution.audit.regions import objects_to_input

    width, height, prep = 90, 160, Preprocessing(input_size=32, resize=40, **PLAIN)
    mask = disc(width, height, 40, 90, 25)
    counts = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"].decode()
    objects = ImageObjects("s3://b/instances.json image 1", (width, height), masks={3: counts})
    region = objects_to_input(objects, 3, "class 3", (width, height), prep)
    assert np.array_equal(region.mask, mask_to_input(mask, prep).mask)


def test_an_annotation_without_the_items_object_says_why():
    from shared.spec.annotations import ImageObjects
    from worker.kinds.attribution.audit.regions import objects_to_input

    prep, size = Preprocessing(32, 32), (100, 100)
    annotated = ImageObjects("s3://b/a.xml", size, boxes={3: ((200, 0, 250, 10),)})
    cases = {
        "no annotation of this image in s3://b/instances.json": (
            ImageObjects("s3://b/instances.json", found=False), 3, size),
        "its annotation (s3://b/a.xml) has no object of class 5 (dog), the label": (
            annotated, 5, size),
        "the box [200, 0, 250, 10] lies outside the 100×100 image": (annotated, 3, size),
        "a .npy input is in the model's input space: the objects of its annotation cannot "
        "be placed on it": (annotated, 3, None),
    }
    for reason, (objects, cls, image_size) in cases.items():
        region = objects_to_input(objects, cls, "class 5 (dog), the label", image_size, prep)
        assert region == Region(None, reason)

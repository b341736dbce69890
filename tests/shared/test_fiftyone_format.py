"""The FiftyOne format's pure parts: 16-bit heatmaps within half a step of the map, zero and
non-finite maps drawn without dividing by zero, repeatable ids, field names by position and
rank, one kind per field. (The whole format is checked against FiftyOne in e2e/test_export.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.results.fiftyone import Ids, Schema, heatmap_png, output_field
from shared.results.records import OutputRecord


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_a_heatmap_is_the_map_in_65535_steps_of_its_top():
    values = np.random.default_rng(3).gamma(2.0, 0.01, (9, 11)).astype(np.float32)
    png, top = heatmap_png(values)
    pixels = _pixels(png)
    assert pixels.dtype == np.uint16 and top == pytest.approx(float(values.max()))
    assert pixels.max() == 65535 and pixels[values == 0].max(initial=0) == 0
    assert np.abs(pixels / 65535 * top - values).max() <= top / 65535 / 2 * (1 + 1e-6)


@pytest.mark.parametrize("values", [np.zeros((4, 5)), np.full((4, 5), np.nan)])
def test_a_map_without_a_positive_value_is_all_zero(values):
    png, top = heatmap_png(values)
    assert top == 0.0 and not _pixels(png).any()


def test_non_finite_values_are_drawn_as_zero():
    values = np.array([[1.0, np.nan], [np.inf, 0.5]])
    png, top = heatmap_png(values)
    assert top == 1.0 and _pixels(png).tolist() == [[65535, 0], [0, 32768]]


def test_ids_are_repeatable_object_ids_and_rand_is_fiftyones_range():
    ids = Ids("ab" * 16, created=1_700_000_000)
    oid = ids.object_id(3, "gradient_0")["$oid"]
    assert oid == ids.object_id(3, "gradient_0")["$oid"] != ids.object_id(4, "gradient_0")["$oid"]
    assert len(oid) == 24 and oid.startswith(format(1_700_000_000, "08x"))
    assert all(0.999 <= ids.rand(i) < 1.0 for i in range(100))
    assert len({ids.rand(i) for i in range(100)}) == 100


def test_fields_are_named_by_method_position_and_rank():
    def out(method, position, rank=None):
        return OutputRecord(method, position, {"class": 1}, rank=rank)

    assert [output_field(o) for o in (out("gradient", 0), out("gradcam", 1, 2),
                                      out("gradcam", 1, 0), out("gradient", 2))] == [
        "gradient_0", "gradcam_1_r2", "gradcam_1_r0", "gradient_2"]


def test_a_field_has_one_kind():
    schema = Schema()
    schema.declare("gradient_0_pointing_hit", "bool")
    schema.declare("gradient_0_pointing_hit", "bool")
    with pytest.raises(ValueError, match="both bool and float"):
        schema.declare("gradient_0_pointing_hit", "float")
    names = [d["name"] for d in schema.documents()]
    assert names[:3] == ["id", "filepath", "tags"] and names[-1] == "gradient_0_pointing_hit"

"""Each output's picture per `render`, on hand-made maps: v1's bytes when asked for, the
papers' pictures by default, overlays weighted by value, and colour bars that carry the
values the colours stand for."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.media.colormap import INFERNO
from shared.media.render import encode_png, smooth_cam
from shared.media.renderings import CAM_PHOTO_WEIGHT, Colorbar, Rendering
from shared.spec.job import V1_OVERLAY_OPACITY, job_spec_from_json, parse_job_spec
from shared.spec.methods import METHODS, method_spec

RNG = np.random.default_rng(0)
VALUES = RNG.normal(size=(3, 12, 12)).astype(np.float32)
PHOTO = RNG.integers(0, 256, (12, 12, 3), dtype=np.uint8)


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("RGB"))


# The pictures as v1 drew them, the formulas copied from the renderer before `render`.
def v1_top(map2d: np.ndarray) -> float:
    top = float(np.percentile(map2d, 99.5)) if map2d.size else 0.0
    if not np.isfinite(top) or top <= 0:
        top = float(map2d.max()) if map2d.size else 0.0
    return top


def v1_unit(map2d: np.ndarray) -> np.ndarray:
    map2d = np.asarray(map2d, dtype=np.float32)
    top = v1_top(map2d)
    return np.zeros_like(map2d) if top <= 0 else np.clip(map2d / top, 0.0, 1.0)


def v1_png(values: np.ndarray, reduce: str = "max_abs") -> bytes:
    map2d = np.abs(values).max(axis=0) if reduce == "max_abs" else np.abs(values).sum(axis=0)
    return encode_png(np.rint(v1_unit(map2d) * 255).astype(np.uint8), palette=INFERNO)


def v1_overlay(rgb: np.ndarray, values: np.ndarray) -> bytes:
    unit = v1_unit(np.abs(values).max(axis=0))
    weight = (0.6 * unit)[..., None]
    colour = INFERNO[np.rint(unit * 255).astype(np.uint8)]
    blended = rgb.astype(np.float32) * (1 - weight) + colour.astype(np.float32) * weight
    return encode_png(np.rint(blended).astype(np.uint8))


def v1_signed(values: np.ndarray) -> bytes:
    scale = float(np.percentile(np.abs(values), 99.5))
    unit = np.clip(0.5 + values / (2 * scale), 0, 1)
    return encode_png(np.rint(unit.transpose(1, 2, 0) * 255).astype(np.uint8))


@pytest.mark.parametrize("reduce", ["max_abs", "sum_abs"])
def test_render_heatmap_is_v1s_png_byte_for_byte(reduce):
    for name in METHODS:
        drawing = Rendering("heatmap", reduce, grid=(3, 3))
        assert drawing.draw("png", VALUES)[0] == v1_png(VALUES, reduce), name


def test_v1s_overlay_and_signed_files_are_kept_byte_for_byte():
    old = Rendering("heatmap", overlay_opacity=V1_OVERLAY_OPACITY)
    assert old.draw("overlay", VALUES, PHOTO)[0] == v1_overlay(PHOTO, VALUES)
    for render in ("heatmap", "signed", "cam"):
        assert Rendering(render).draw("signed", VALUES)[0] == v1_signed(VALUES)


def test_what_was_stored_before_render_existed_is_drawn_as_v1_drew_it():
    old = Rendering.of(job_spec_from_json({"model": "m", "reduce": "max_abs"}).work,
                       {"rule": "relu"})
    assert old == Rendering("heatmap", "max_abs", V1_OVERLAY_OPACITY)
    assert old.draw("png", VALUES)[0] == v1_png(VALUES)
    assert old.draw("overlay", VALUES, PHOTO)[0] == v1_overlay(PHOTO, VALUES)
    new = Rendering.of(parse_job_spec({"model": "m", "reduce": "l2", "overlay_opacity": 0.8}).work,
                       {"render": "cam"}, [7, 7])
    assert new == Rendering("cam", "l2", 0.8, (7, 7))


@pytest.mark.parametrize(("name", "picture"), [
    ("gradient", "heatmap"), ("smoothgrad", "heatmap"), ("integrated_gradients", "heatmap"),
    ("occlusion", "heatmap"), ("guided_backprop", "signed"), ("deconvnet", "signed"),
    ("guided_gradcam", "signed"), ("gradcam", "cam"),
])
def test_each_methods_default_png_is_its_papers_picture(name, picture):
    drawing = Rendering(method_spec(name)["render"], grid=(3, 3))
    png, bar = drawing.draw("png", VALUES, PHOTO)
    if picture == "heatmap":
        assert png == v1_png(VALUES) and bar.colormap == "inferno"
    elif picture == "signed":
        assert png == v1_signed(VALUES) and bar.colormap == "signed"
    else:
        smooth = smooth_cam(np.abs(VALUES).max(axis=0), (3, 3))
        colour = INFERNO[np.rint(smooth / smooth.max() * 255).astype(np.uint8)]
        expected = PHOTO * (1 - CAM_PHOTO_WEIGHT) + colour * CAM_PHOTO_WEIGHT
        np.testing.assert_array_equal(decode(png), np.rint(expected).astype(np.uint8))


def test_the_colour_bar_carries_the_clip_bounds():
    map2d = np.abs(VALUES).max(axis=0)
    top = np.percentile(map2d, 99.5)
    for kind in ("png", "overlay"):
        png, bar = Rendering().draw(kind, VALUES, PHOTO)
        assert bar == Rendering().colorbars((kind,), VALUES)[kind]
        assert bar.colormap == "inferno" and bar.low == 0
        assert bar.high == pytest.approx(top, rel=1e-6)
    # The value at the bar's top end is where the colours saturate: the brightest colour.
    pixels = decode(Rendering().draw("png", VALUES)[0])
    assert (pixels[map2d >= top] == INFERNO[255]).all()
    assert not (pixels[map2d < top * 0.99] == INFERNO[255]).all(axis=1).any()
    scale = np.percentile(np.abs(VALUES), 99.5)
    for drawing, kind in ((Rendering(), "signed"), (Rendering("signed"), "png")):
        bar = drawing.draw(kind, VALUES)[1]
        assert bar.colormap == "signed"
        assert (bar.low, bar.high) == pytest.approx((-scale, scale), rel=1e-6)
    cam = Rendering("cam", grid=(3, 3))
    smooth = smooth_cam(np.abs(VALUES).max(axis=0), (3, 3))
    assert cam.draw("png", VALUES, PHOTO)[1] == Colorbar("inferno", 0.0, float(smooth.max()))
    assert cam.colorbars(("overlay",), VALUES)["overlay"].high == pytest.approx(smooth.max())
    both = Rendering("signed").colorbars(("png", "overlay", "signed"), VALUES)
    assert both["png"] == both["signed"] and both["overlay"].colormap == "inferno"


def test_signed_pictures_centre_zero_on_grey_128_and_scale_both_signs_alike():
    values = np.zeros((3, 6, 6), np.float32)
    values[:, 1, 1] = 2.0
    values[:, 4, 4] = -2.0
    values[0, 2, 3] = 1.0
    values[1, 3, 2] = -1.0
    pixels, bar = Rendering("signed").pixels("png", values)
    assert (bar.low, bar.high) == (-2.0, 2.0)
    assert pixels[0, 0].tolist() == [128, 128, 128]
    assert pixels[1, 1].tolist() == [255, 255, 255] and pixels[4, 4].tolist() == [0, 0, 0]
    # +1 and -1 sit at equal distances either side of grey (127.5 before rounding).
    assert (int(pixels[2, 3, 0]), int(pixels[3, 2, 1])) == (191, 64)


def test_an_overlay_weights_colour_by_value():
    map_values = np.zeros((1, 12, 12), np.float32)
    zero = decode(Rendering().draw("overlay", map_values, PHOTO)[0])
    np.testing.assert_array_equal(zero, PHOTO)  # a zero map leaves the photo as it is
    map_values[0, 5, 6] = 3.0  # one hot pixel among zeros: full colour, the rest untouched
    hot = decode(Rendering().draw("overlay", map_values, PHOTO)[0])
    assert hot[5, 6].tolist() == INFERNO[255].tolist()
    mask = np.ones((12, 12), bool)
    mask[5, 6] = False
    np.testing.assert_array_equal(hot[mask], PHOTO[mask])
    # Between: the colour's weight is opacity × the normalized value.
    ramp = np.tile(np.linspace(0, 1, 12, dtype=np.float32), (12, 1))[None]
    for opacity in (1.0, 0.5):
        pixels = decode(Rendering(overlay_opacity=opacity).draw("overlay", ramp, PHOTO)[0])
        unit = ramp[0] / np.percentile(ramp[0], 99.5)
        unit = np.clip(unit, 0, 1)
        weight = (opacity * unit)[..., None]
        colour = INFERNO[np.rint(unit * 255).astype(np.uint8)].astype(np.float32)
        expected = np.rint(PHOTO * (1 - weight) + colour * weight)
        np.testing.assert_array_equal(pixels, expected)


@pytest.mark.parametrize("render", ["heatmap", "signed", "cam"])
def test_all_zero_maps_draw_without_dividing_by_zero(render):
    zeros = np.zeros((3, 12, 12), np.float32)
    drawing = Rendering(render, grid=(3, 3))
    with np.errstate(all="raise"):
        for kind in ("png", "overlay", "signed"):
            png, bar = drawing.draw(kind, zeros, PHOTO)
            assert decode(png).shape == (12, 12, 3)
            assert (bar.low, bar.high) == (0.0, 0.0)
    assert (decode(drawing.draw("signed", zeros)[0]) == 128).all()
    np.testing.assert_array_equal(decode(drawing.draw("overlay", zeros, PHOTO)[0]), PHOTO)


def test_a_cam_is_smoothed_over_its_layer_grid():
    """Bilinear upsampling from a 4×4 grid to 64 px has creases: its slope jumps at the cell
    centres. The cam picture's map has none left, and keeps the CAM's peak where it was."""
    grid = np.zeros((4, 4), np.float32)
    grid[1, 2] = 1.0
    # F.interpolate(..., mode="bilinear", align_corners=False) from 4 to 64, written by hand.
    src = np.clip((np.arange(64) + 0.5) * 4 / 64 - 0.5, 0, 3)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, 3)
    frac = (src - low).astype(np.float32)
    rows = grid[low] * (1 - frac)[:, None] + grid[high] * frac[:, None]
    upsampled = rows[:, low] * (1 - frac) + rows[:, high] * frac

    def worst_kink(m: np.ndarray) -> float:
        """The largest change of slope between neighbouring pixels, along either axis."""
        return max(float(np.abs(np.diff(m, 2, axis=axis)).max()) for axis in (0, 1))

    smooth = smooth_cam(upsampled, (4, 4))
    assert worst_kink(upsampled) > 0.05  # the slope turns from +1/16 to -1/16 at the peak
    assert worst_kink(smooth) < worst_kink(upsampled) / 10
    # The peak stays at the cell's centre (pixels 23.5, 39.5: the four around it tie).
    assert np.unravel_index(smooth.argmax(), smooth.shape) in {
        (y, x) for y in (23, 24) for x in (39, 40)}
    np.testing.assert_array_equal(smooth_cam(upsampled, None), upsampled)
    np.testing.assert_array_equal(smooth_cam(upsampled, (64, 64)), upsampled)
    flat = np.full((64, 64), 2.0, np.float32)
    np.testing.assert_allclose(smooth_cam(flat, (4, 4)), flat, rtol=1e-6)


def test_a_picture_over_the_photo_needs_the_photo():
    assert Rendering().needs_photo("overlay") and Rendering("cam").needs_photo("png")
    assert not Rendering().needs_photo("png") and not Rendering("signed").needs_photo("png")
    with pytest.raises(ValueError, match="photo"):
        Rendering("cam").draw("png", VALUES)
    with pytest.raises(ValueError, match="no picture of kind 'npy'"):
        Rendering().pixels("npy", VALUES)

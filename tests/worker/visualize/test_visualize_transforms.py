"""The random affine warp against exact references: an integer jitter is a shift, a quarter
turn is `torch.rot90`, a zoom by 2 reads the central half; draws stay within their ranges."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.spec.visualize import Regularizers
from worker.kinds.visualize.transforms import Affine, draw, resize, warp


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_the_identity_returns_the_images_themselves(images):
    assert warp(images, [Affine(), Affine()]) is images


def test_an_integer_jitter_moves_pixels_and_reflects_at_the_border(images):
    out = warp(images, [Affine(dy=2, dx=-3), Affine()])
    # Content moves down by 2 and left by 3.
    torch.testing.assert_close(out[0, :, 2:, :-3], images[0, :, :-2, 3:], rtol=0, atol=1e-5)
    # The rows uncovered at the top mirror the image's own top rows (reflection).
    torch.testing.assert_close(out[0, :, 0, :-3], images[0, :, 1, 3:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1], images[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("angle", "turns"), [(90, 1), (-90, -1), (180, 2)])
def test_quarter_turns_equal_rot90_counter_clockwise(images, angle, turns):
    out = warp(images, [Affine(angle=angle)] * 2)
    torch.testing.assert_close(out, torch.rot90(images, turns, dims=(2, 3)), rtol=0, atol=1e-5)


def test_a_zoom_by_two_reads_the_central_half():
    # A linear ramp is sampled exactly by bilinear interpolation: zooming by 2 about the
    # centre halves its slope and keeps its centre value.
    ramp = torch.arange(16, dtype=torch.float32).expand(1, 3, 16, 16).contiguous()
    out = warp(ramp, [Affine(scale=2.0)])
    expected = (ramp - 7.5) / 2 + 7.5
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_a_warp_of_a_constant_image_is_constant():
    flat = torch.full((1, 3, 12, 12), 0.7)
    out = warp(flat, [Affine(dy=1.5, dx=3, scale=1.3, angle=33)])
    torch.testing.assert_close(out, flat)


@settings(max_examples=50, deadline=None)
@given(jitter=st.integers(0, 32), low=st.floats(0.5, 1.0), high=st.floats(1.0, 2.0),
       rotate=st.floats(0.0, 180.0), seed=st.integers(0, 2**32))
def test_draws_stay_in_their_ranges_and_follow_the_generator(jitter, low, high, rotate, seed):
    reg = Regularizers(jitter=jitter, scale=(low, high), rotate=rotate)
    a = draw(torch.Generator().manual_seed(seed), reg)
    assert abs(a.dy) <= jitter and abs(a.dx) <= jitter
    assert a.dy == int(a.dy) and a.dx == int(a.dx)
    assert low <= a.scale <= high
    assert -rotate <= a.angle <= rotate
    assert draw(torch.Generator().manual_seed(seed), reg) == a


def test_no_transformation_draws_nothing():
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    off = Regularizers(jitter=0, scale=(1.0, 1.0), rotate=0.0)
    assert draw(generator, off).identity
    assert torch.equal(generator.get_state(), state)


def test_resize_shrinks_with_antialiasing_and_keeps_a_right_sized_image(images):
    assert resize(images, 16) is images
    small = resize(images, 8)
    expected = F.interpolate(images, size=(8, 8), mode="bilinear", antialias=True,
                             align_corners=False)
    torch.testing.assert_close(small, expected)

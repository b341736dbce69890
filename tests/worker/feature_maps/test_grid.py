"""The channel picture: blocks of projections beside the block of patches, each projection
cropped to its patch and scaled on its own, decoded back from the PNG; the stored one
labelled (each block's method, layer and channel; each cell's rank and activation)."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from shared.media.render import signed_rgb
from worker.kinds.top_activations.feature_maps import TopActivation, channel_grid, grid_png
from worker.kinds.top_activations.feature_maps.grid import BACKGROUND, BLOCK_GAP, CELL_GAP, LINE
from worker.kinds.top_activations.feature_maps.projections import Projection


def projection(index, box, scale, channel=0, size=12):
    """A unit whose projection is `scale` times a ramp, and whose patch is a flat colour."""
    x0, y0, x1, y1 = box
    ramp = np.linspace(-1, 1, 3 * size * size, dtype=np.float32).reshape(3, size, size)
    patch = np.full((y1 - y0, x1 - x0, 3), 10 * index, np.uint8)
    return Projection(channel, TopActivation(index, 1.0, (0, 0)),
                      {"deconvnet": scale * ramp, "gradient": -ramp}, box, patch)


def cell(grid, block, row, col, cell_size, n_cols=2):
    """The pixels of one cell (scale 1, so min_cell must be at most the cell size)."""
    block_width = n_cols * cell_size[1] + (n_cols - 1) * CELL_GAP
    top = row * (cell_size[0] + CELL_GAP)
    left = block * (block_width + BLOCK_GAP) + col * (cell_size[1] + CELL_GAP)
    return grid[top:top + cell_size[0], left:left + cell_size[1]]


def test_layout_methods_then_patches_best_first():
    units = [projection(i, (2, 1, 8, 6), scale=10.0 ** i) for i in range(3)]
    grid = channel_grid(units, ["deconvnet", "gradient"], columns=2, min_cell=1)
    cell_size = (5, 6)
    block_width = 2 * 6 + CELL_GAP
    assert grid.shape == (2 * 5 + CELL_GAP, 3 * block_width + 2 * BLOCK_GAP, 3)
    for i, unit in enumerate(units):
        row, col = divmod(i, 2)
        for block, method in enumerate(["deconvnet", "gradient"]):
            expected = signed_rgb(unit.maps[method][:, 1:6, 2:8])
            np.testing.assert_array_equal(cell(grid, block, row, col, cell_size), expected)
        np.testing.assert_array_equal(cell(grid, 2, row, col, cell_size), unit.patch)
    # the fourth cell of each block is empty
    assert (cell(grid, 0, 1, 1, cell_size) == BACKGROUND).all()


def test_each_projection_is_scaled_on_its_own():
    small, large = projection(0, (0, 0, 12, 12), 1e-6), projection(1, (0, 0, 12, 12), 1e3)
    grid = channel_grid([small, large], ["deconvnet"], columns=2, min_cell=1)
    for col in range(2):
        picture = cell(grid, 0, 0, col, (12, 12))
        assert picture.min() == 0 and picture.max() == 255


def test_signed_rgb_puts_zero_at_grey_and_survives_an_all_zero_map():
    assert (signed_rgb(np.zeros((3, 4, 4), np.float32)) == 128).all()
    picture = signed_rgb(np.array([[[-2.0, 0.0, 2.0]]], np.float32), clip_percentile=100)
    np.testing.assert_array_equal(picture[0, :, 0], [0, 128, 255])
    assert picture.shape == (1, 3, 3)


def test_clipped_patches_are_centred_and_small_cells_enlarged():
    full, clipped = projection(0, (0, 0, 4, 4), 1.0), projection(1, (0, 0, 2, 4), 1.0)
    grid = channel_grid([full, clipped], ["deconvnet"], columns=2, min_cell=8)
    assert grid.shape[0] == 8  # 4×4 cells enlarged twice
    block_width = 2 * 8 + CELL_GAP
    second = grid[:, block_width + BLOCK_GAP + 8 + CELL_GAP:]  # the clipped patch's cell
    np.testing.assert_array_equal(second[:, 2:6], np.full((8, 4, 3), 10, np.uint8))
    assert (second[:, :2] == BACKGROUND).all() and (second[:, 6:] == BACKGROUND).all()


def test_png_decodes_to_the_labelled_picture():
    units = [projection(i, (0, 0, 6, 6), 1.0) for i in range(4)]
    with Image.open(io.BytesIO(grid_png(units, ["deconvnet"], layer="layer3"))) as image:
        decoded = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(decoded, channel_grid(units, ["deconvnet"], labelled=True,
                                                        layer="layer3"))


def text(lines, size):
    """`lines` written on a white `size` (h, w), one per LINE px from the top left."""
    image = Image.new("RGB", size[::-1], (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((0, i * LINE), line, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(image)


def test_the_labelled_figure_titles_each_block_and_captions_each_cell():
    """Each block titled with its method (or "patches"), the layer and the channel, above the
    bare figure's cells; under each cell its rank and activation."""
    units = [replace(projection(i, (0, 0, 6, 6), 1.0, channel=7),
                     top=TopActivation(i, 10.5 - i, (0, 0))) for i in range(4)]
    bare = channel_grid(units, ["deconvnet"])  # 6 px patches enlarged to 48 px cells
    figure = channel_grid(units, ["deconvnet"], labelled=True, layer="layer3")
    side, block_width, top = 48, 3 * 48 + 2 * CELL_GAP, 3 * LINE + CELL_GAP
    assert figure.shape == (top + 2 * (side + LINE) + CELL_GAP, bare.shape[1], 3)
    for block, name in enumerate(["deconvnet", "patches"]):
        left = block * (block_width + BLOCK_GAP)
        np.testing.assert_array_equal(figure[:3 * LINE, left:left + block_width],
                                      text([name, "layer3", "channel 7"], (3 * LINE, block_width)))
        for i in range(4):
            row, col = divmod(i, 3)
            y, x = top + row * (side + LINE + CELL_GAP), left + col * (side + CELL_GAP)
            bare_y = row * (side + CELL_GAP)
            np.testing.assert_array_equal(figure[y:y + side, x:x + side],
                                          bare[bare_y:bare_y + side, x:x + side])
            np.testing.assert_array_equal(figure[y + side:y + side + LINE, x:x + side],
                                          text([f"#{i + 1} {10.5 - i:.4g}"], (LINE, side)))


def test_a_title_wider_than_its_block_widens_the_block():
    units = [projection(0, (0, 0, 6, 6), 1.0)]
    layer = "blocks.5.0.conv_pwl.a_rather_long_module_name"
    figure = channel_grid(units, ["deconvnet"], labelled=True, layer=layer)
    width = math.ceil(ImageFont.load_default().getlength(layer))
    assert width > 48 and figure.shape[1] == 2 * width + BLOCK_GAP


def test_one_channel_per_picture_and_an_empty_one_is_blank():
    with pytest.raises(ValueError, match="one channel per picture"):
        channel_grid([projection(0, (0, 0, 4, 4), 1.0, channel=1),
                      projection(1, (0, 0, 4, 4), 1.0, channel=2)], ["deconvnet"])
    assert (channel_grid([], ["deconvnet"]) == BACKGROUND).all()

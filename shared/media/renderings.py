"""Which picture each file of a map is: the method's `render`, the job's `reduce` and
`overlay_opacity`, resolved once into `shared.media.render` calls.

The worker draws with it when it writes an output's files, the API when it cuts a map out of
a shard, the audit for its suspects' pictures: each picture has one definition. Each picture
comes with its `Colorbar`, the values its colours stand for, which the job page prints.
docs/engine.md ("Rendering") gives each method's default and its paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.media import render
from shared.results.records import finite_or_none
from shared.spec.job import DEFAULT_OVERLAY_OPACITY, AttributionSpec
from shared.spec.methods import CAM, HEATMAP, SIGNED

# What outputs stored before `render` existed were drawn with (and jobs stored before
# `overlay_opacity` existed: `shared.spec.job.V1_OVERLAY_OPACITY`).
V1_RENDER = HEATMAP
# A CAM is drawn over the photo half and half, as Grad-CAM's figures are.
CAM_PHOTO_WEIGHT = 0.5
PICTURES: tuple[str, ...] = ("png", "overlay", "signed")


@dataclass(frozen=True)
class Colorbar:
    """What a picture's colours mean: `colormap` ("inferno", or "signed": each channel from
    black to white) runs from `low` to `high`; values beyond them saturate."""

    colormap: str
    low: float
    high: float

    def to_json(self) -> dict[str, Any]:
        return {"colormap": self.colormap, "low": finite_or_none(self.low),
                "high": finite_or_none(self.high)}


@dataclass(frozen=True)
class Rendering:
    """How one output's pictures are drawn (by default as a new job draws a heatmap method's).

    `grid` is the layer grid (h, w) a CAM was upsampled from, which `cam` smooths over; None
    for maps computed at the input's resolution.
    """

    render: str = HEATMAP
    reduce: str = "max_abs"
    overlay_opacity: float = DEFAULT_OVERLAY_OPACITY
    grid: tuple[int, int] | None = None

    @classmethod
    def of(cls, work: AttributionSpec, params: Mapping[str, Any] | None,
           grid: Any = None) -> Rendering:
        """An output's rendering from its job's spec and its `params`; an output stored
        before `render` existed is drawn as it was then."""
        return cls(render=(params or {}).get("render", V1_RENDER), reduce=work.reduce,
                   overlay_opacity=work.overlay_opacity, grid=tuple(grid) if grid else None)

    def needs_photo(self, kind: str) -> bool:
        """Whether the picture of `kind` is drawn over the input's photo."""
        return kind == "overlay" or (kind == "png" and self.render == CAM)

    def colorbars(self, kinds: tuple[str, ...], values: np.ndarray) -> dict[str, Colorbar]:
        """The colour bars of the pictures of `kinds`, without drawing them; each bound is
        computed once (a heatmap's png and overlay share theirs)."""
        signed = inferno = None
        bars: dict[str, Colorbar] = {}
        for kind in kinds:
            if self._signed(kind):
                if signed is None:
                    bound = render.signed_bound(values)
                    signed = Colorbar("signed", -bound, bound)
                bars[kind] = signed
            else:
                if inferno is None:
                    inferno = Colorbar("inferno", 0.0, self._display(values)[1])
                bars[kind] = inferno
        return bars

    def draw(self, kind: str, values: np.ndarray, photo: np.ndarray | None = None
             ) -> tuple[bytes, Colorbar]:
        """The PNG of `kind` for a C×H×W map, and its colour bar; `photo` (uint8 H×W×3) when
        `needs_photo(kind)`."""
        if kind == "png" and self.render == HEATMAP:
            map2d, top = self._display(values)
            return (render.encode_png(render.color_indices(render.scaled(map2d, top)),
                                      palette=render.INFERNO), Colorbar("inferno", 0.0, top))
        pixels, colorbar = self.pixels(kind, values, photo)
        return render.encode_png(pixels), colorbar

    def pixels(self, kind: str, values: np.ndarray, photo: np.ndarray | None = None
               ) -> tuple[np.ndarray, Colorbar]:
        """The picture of `kind` as uint8 H×W×3 RGB (a heatmap `png` in inferno's colours)."""
        if kind not in PICTURES:
            raise ValueError(f"no picture of kind {kind!r}; pictures are {list(PICTURES)}")
        if self._signed(kind):
            bound = render.signed_bound(values)
            return render.signed_rgb(values), Colorbar("signed", -bound, bound)
        map2d, top = self._display(values)
        unit = render.scaled(map2d, top)
        colorbar = Colorbar("inferno", 0.0, top)
        if kind == "png" and self.render == HEATMAP:
            return render.colorize(unit), colorbar
        if photo is None:
            raise ValueError(f"the {kind} picture is drawn over the input's photo; pass it")
        weight = CAM_PHOTO_WEIGHT if kind == "png" else self.overlay_opacity * unit
        return render.blend(photo, unit, weight), colorbar

    def _signed(self, kind: str) -> bool:
        return kind == "signed" or (kind == "png" and self.render == SIGNED)

    def _display(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """The 2-D map that heatmaps and overlays colour, and the value their colours top out
        at: the 99.5th percentile, or for a CAM (smoothed first) its maximum."""
        map2d = render.reduce_channels(values, self.reduce)
        if self.render == CAM:
            map2d = render.smooth_cam(map2d, self.grid)
            return map2d, render.clip_bound(map2d, 100.0)
        return map2d, render.clip_bound(map2d)

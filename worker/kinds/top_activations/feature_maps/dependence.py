"""Projections that barely depend on their images: the audits' input-dependence check
(`worker.kinds.attribution.audit.dependence`) applied to one channel's top-k.

The audits measure whether a method's maps depend on the input by the cosine between maps of
one target on different images. Here the target is a unit (the channel at a position): the
first `PROBES` units of the top-k are projected again, each on the image of the next unit,
and compared with their own projections. A median cosine of at least `ALIKE_AT` earns the
warning. DeconvNet's projections on a path without max-pooling are the same picture on every
image (cosine 1); guided backpropagation's and the gradient's follow each image's rectifier
masks, and differ.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from worker.kinds.attribution.audit.dependence import ALIKE_AT, input_dependence
from worker.kinds.top_activations.feature_maps.projections import Projection
from worker.kinds.top_activations.feature_maps.topk import TopActivation

PROBES = 3  # units projected again per channel, as the audits' structural probe uses 3 images


def probe_units(units: Sequence[tuple[int, TopActivation]]) -> list[tuple[int, TopActivation]]:
    """The units to project again: each of the first `PROBES` at its own position, on the
    image of the unit after it (none when there is one image only)."""
    if len(units) < 2:
        return []
    return [(channel, TopActivation(units[(r + 1) % len(units)][1].index, top.activation,
                                    top.position))
            for r, (channel, top) in enumerate(units[:PROBES])]


def alike_warning(own: Sequence[Projection], probes: Sequence[Projection], method: str,
                  why: str = "") -> str | None:
    """The warning when the probes' projections by `method` (`probe_units`, in order) match
    the same units' on their own images (`own`, the top-k in order), else None; `why`, if
    given, ends it. A unit whose projection is zero on either image is left out."""
    cosines = [found.median_cosine for found in (
        input_dependence([mine.maps[method], probe.maps[method]], [0, 0], method)
        for mine, probe in zip(own, probes, strict=False)) if found.median_cosine is not None]
    if not cosines or (median := statistics.median(cosines)) < ALIKE_AT:
        return None
    channel, units = own[0].channel, f"{len(cosines)} unit{'s' * (len(cosines) != 1)}"
    return (f"{method}: projected again on another of the top images, channel {channel}'s "
            f"units give the same picture (median cosine {median:.3f} over {units}, "
            f"measured): its projections barely depend on their images{why}")

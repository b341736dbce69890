"""Occlusion: the drop of the target score when a patch of the image is hidden."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from shared.errors import SpecError
from worker.engine import baselines
from worker.engine.methods.base import BackwardRule, Computed, Maps, Method, Params

if TYPE_CHECKING:
    from worker.engine.call import Call


def windows(side: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Patch extents along one side: starts k·stride, as many as reach the end (Captum's)."""
    count = math.ceil((side - patch) / stride) + 1
    return [(k * stride, min(k * stride + patch, side)) for k in range(count)]


class Occlusion(Method):
    """Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks" (the
    occlusion experiments).

    A `patch`×`patch` square, over all channels, slides by `stride`; each pixel gets the
    mean, over the positions whose patch covers it, of f(x) − f(x with the patch filled) —
    Captum's `Occlusion` with window (C, patch, patch) and strides (C, stride, stride). The
    fill is `zero` (pixel 0, black), `mean` (normalized 0) or `blur` (the blurred image,
    `worker.engine.baselines`). No gradients: every position is one row of forward-only passes;
    f(x) comes from the call's forward pass.
    """

    name = "occlusion"
    shares_forward = False
    backward = False

    def rule(self, params: Params) -> BackwardRule | None:
        return None

    def check(self, params: Params, call: Call, position: int) -> None:
        side = min(call.x.shape[-2:])
        if params["patch"] > side:
            raise SpecError(f"methods[{position}].patch",
                            f"{params['patch']} is larger than the input's side ({side})")
        if params["stride"] > params["patch"]:
            raise SpecError(f"methods[{position}].stride",
                            f"{params['stride']} would leave pixels no patch covers; use at "
                            f"most the patch ({params['patch']})")

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        x, ranks = call.x, call.ranks
        height, width = x.shape[-2:]
        fill = {"zero": call.norm.black, "mean": torch.zeros_like,
                "blur": baselines.blurred}[params["fill"]](x)
        boxes = [(y0, y1, x0, x1) for y0, y1 in windows(height, params["patch"], params["stride"])
                 for x0, x1 in windows(width, params["patch"], params["stride"])]
        per_image = len(boxes)
        covered = torch.zeros((height, width), device=call.device)
        for y0, y1, x0, x1 in boxes:
            covered[y0:y1, x0:x1] += 1
        drops = torch.zeros((ranks, len(x), height, width), device=call.device)

        def build(start: int, stop: int) -> torch.Tensor:
            rows = x[[row // per_image for row in range(start, stop)]]  # a copy
            for j, row in enumerate(range(start, stop)):
                i, k = divmod(row, per_image)
                y0, y1, x0, x1 = boxes[k]
                rows[j, :, y0:y1, x0:x1] = fill[i, :, y0:y1, x0:x1]
            return rows

        def compute(rows: torch.Tensor, start: int, stop: int) -> None:
            images = [row // per_image for row in range(start, stop)]
            done = call.run_pass(rows, images, grad=False)
            scores = torch.stack([done.scores(rank) for rank in range(ranks)])
            drop = call.scores[:, images] - scores
            for j, row in enumerate(range(start, stop)):
                i, k = divmod(row, per_image)
                y0, y1, x0, x1 = boxes[k]
                drops[:, i, y0:y1, x0:x1] += drop[:, j, None, None]

        call.in_micro_batches(len(x) * per_image, build, compute, grad=False)
        values = (drops / covered).unsqueeze(2).expand(-1, -1, x.shape[1], -1, -1)
        return [{rank: Computed(values[rank, i]) for rank in range(len(chosen))}
                for i, chosen in enumerate(call.selections)]

"""Grad-CAM and Guided Grad-CAM: a layer's activations weighted by their gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from shared.errors import SpecError
from shared.spec.methods import GATED_RULE
from worker.engine.layouts import as_nchw
from worker.engine.methods.base import BackwardRule, Computed, Maps, Method, Params
from worker.engine.methods.modified_relu import GuidedBackprop

if TYPE_CHECKING:
    from worker.engine.call import Call

GUIDED = GuidedBackprop()
ZERO_CAM = ("{name}: the map is zero everywhere: at layer {layer!r} the gradient-weighted sum "
            "of the activations is negative or zero at every position, which Grad-CAM's ReLU "
            "clips (the layer holds evidence against the target there); try another layer")


def zero_cam_warnings(name: str, layer: str, cam: torch.Tensor) -> list[str]:
    """The warning of an output whose Grad-CAM factor `cam` is zero everywhere, else none."""
    return [ZERO_CAM.format(name=name, layer=layer)] if not bool(cam.any()) else []


class GradCam(Method):
    """Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization".

    At a layer with activations A (C×h×w): α_c = mean over h, w of d score / d A_c, map =
    ReLU(Σ_c α_c A_c), upsampled bilinearly (align_corners=False) to the input: 1×H×W, as
    Captum's `LayerGradCam` followed by `LayerAttribution.interpolate(..., "bilinear")`.
    A layer of channels-last or token layout is read on its grid (`worker.engine.layouts.as_nchw`:
    prefix tokens dropped, the patch tokens as an h×w grid of C channels), as
    pytorch-grad-cam does with a reshape transform. The layer defaults to the one
    `worker.engine.layers` chooses for the model's family.
    Each map reports its layer grid (h, w) as `grid`, which its `cam` picture smooths over.
    """

    name = "gradcam"

    def rule(self, params: Params) -> BackwardRule | None:
        return None

    def layers(self, params: Params, call: Call) -> tuple[str, ...]:
        return (call.layer(params["layer"]),)

    def check(self, params: Params, call: Call, position: int) -> None:
        field, layer = f"methods[{position}].layer", params["layer"]
        if layer is None:
            call.engine.default_layer(call.x[:1], field)  # refuses a model without one
            return
        call.engine.taps.check([layer], field)
        problem = call.engine.layers(call.x[:1]).layout_problem(layer)
        if problem is not None:
            raise SpecError(field, problem)

    def cams(self, call: Call, params: Params
             ) -> list[tuple[torch.Tensor, tuple[int, int]] | None]:
        """Per rank, every image's upsampled map (N×1×H×W) and the layer grid (h, w) it was
        upsampled from, from the shared pass."""
        assert call.shared is not None
        layer = call.layer(params["layer"])
        layout = call.engine.layers(call.x[:1]).layout(layer)
        assert layout is not None  # `check` refused a layer without one
        cams: list[tuple[torch.Tensor, tuple[int, int]] | None] = []
        for rank in range(call.ranks):
            found = call.shared.layer_grads(layer, rank)
            if found is None:
                cams.append(None)
                continue
            act, grad = (as_nchw(layout, t) for t in found)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * act).sum(dim=1, keepdim=True))
            cams.append((F.interpolate(cam, size=tuple(call.x.shape[-2:]), mode="bilinear",
                                       align_corners=False), (act.shape[2], act.shape[3])))
        return cams

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        layer = call.layer(params["layer"])
        maps: Maps = [{} for _ in call.selections]
        for rank, found in enumerate(self.cams(call, params)):
            for i, chosen in enumerate(call.selections):
                if found is not None and rank < len(chosen):
                    cam, grid = found
                    maps[i][rank] = Computed(cam[i], extras={"grid": grid},
                                             warnings=zero_cam_warnings(self.name, layer,
                                                                        cam[i]))
        return maps


class GuidedGradCam(GradCam):
    """Selvaraju et al. 2017: guided backpropagation (Springenberg et al. 2015) times the
    upsampled Grad-CAM map, channel by channel, from the same forward pass (C×H×W).

    As Captum's `GuidedGradCam`, with bilinear upsampling; the guided backward pass is the
    one `guided_backprop` takes in the same call, so asking for both costs one backward.
    `"rule": "gated"` takes guided backpropagation's gated rule, with its warning.
    """

    name = "guided_gradcam"

    def rule(self, params: Params) -> BackwardRule | None:
        return GUIDED.rule(params)

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        assert call.shared is not None
        rule = GUIDED.rule(params)
        warnings = rule.gated_warnings(self.name, call) if params["rule"] == GATED_RULE else []
        layer = call.layer(params["layer"])
        maps: Maps = [{} for _ in call.selections]
        for rank, found in enumerate(self.cams(call, params)):
            guided = call.shared.input_grads(rule, rank)
            for i, chosen in enumerate(call.selections):
                if found is not None and guided is not None and rank < len(chosen):
                    cam = found[0][i]
                    maps[i][rank] = Computed(guided[i] * cam, warnings=[
                        *warnings, *zero_cam_warnings(self.name, layer, cam)])
        return maps

"""The attribution methods a job may name, their parameters with defaults, and validation.

Pure Python: the API validates `methods` with it, `/v1/methods` lists it, and the worker's
registry (`worker.engine.methods`) must implement exactly these names. A method is named either
plainly (`"gradient"`) or as an object with parameters (`{"name": "smoothgrad", "samples":
50}`); either way the job echoes it as given, with defaults filled in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import SpecError
from shared.spec.inputs import InputRef, parse_input_ref


@dataclass(frozen=True)
class Param:
    """One parameter of a method: its type, default and bounds, documented for `/v1/methods`.

    `kind` is `int`, `float`, `choice` (one of `choices`), `layer` (a module name, or null
    for the method's own default) or `input_or_choice` (one of `choices`, or an input
    reference `{"uri"}`, `{"upload"}` or `{"item"}`).
    """

    name: str
    kind: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: Any, where: str) -> Any:
        if self.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise SpecError(where, f"must be an integer, got {raw!r}")
            return self._bounded(raw, where)
        if self.kind == "float":
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(
                raw
            ):
                raise SpecError(where, f"must be a finite number, got {raw!r}")
            return self._bounded(float(raw), where)
        if self.kind == "choice":
            if raw not in self.choices:
                raise SpecError(where, f"must be one of {list(self.choices)}, got {raw!r}")
            return raw
        if self.kind == "layer":
            if raw is not None and (not isinstance(raw, str) or not raw or len(raw) > 256):
                raise SpecError(where, "must be a module name from named_modules(), or null")
            return raw
        if self.kind == "input_or_choice":
            if isinstance(raw, str):
                if raw not in self.choices:
                    raise SpecError(
                        where, f"must be one of {list(self.choices)} or an input reference"
                    )
                return raw
            return parse_input_ref(raw, where)
        raise AssertionError(f"unknown parameter kind {self.kind!r}")

    def _bounded(self, value: float, where: str) -> Any:
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise SpecError(where, f"must be between {self.minimum} and {self.maximum}, "
                                   f"got {value}")
        return value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "default": self.default,
                               "description": self.description}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True)
class MethodInfo:
    """A method's public name, its one-paragraph description (with the paper) and parameters."""

    name: str
    description: str
    params: tuple[Param, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "params": [p.to_json() for p in self.params]}


#: The values of the `rule` of guided backprop, DeconvNet and Guided Grad-CAM.
PAPER_RULE = "relu"
GATED_RULE = "gated"
RULE = Param(
    "rule", "choice", PAPER_RULE,
    "relu: the paper's rule, defined at ReLU and ReLU6 (a model with other non-linearities is "
    "refused); gated: also at the gated units y = x·s(x) (GELU, SiLU, Hardswish, Mish, "
    "QuickGELU), this service's generalisation and not the paper's, and every output says so "
    "in a warning", choices=(PAPER_RULE, GATED_RULE),
)

#: How a method's `png` draws its map (`shared.media.renderings`): each method's default is the
#: picture of its paper; `heatmap` is the rendering every method had before this parameter.
HEATMAP, SIGNED, CAM = "heatmap", "signed", "cam"
RENDERS: tuple[str, ...] = (HEATMAP, SIGNED, CAM)


def render_param(default: str) -> Param:
    """The `render` parameter with the method's own default."""
    return Param(
        "render", "choice", default,
        "how the png draws the map: heatmap (the map reduced over channels, values above the "
        "99.5th percentile saturated, in inferno), signed (the raw map as RGB around grey: "
        "zero grey, both signs on one scale) or cam (the map smoothed and laid over the "
        "photo in inferno); the default is the method's paper's picture, see docs/engine.md",
        choices=RENDERS,
    )


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo(
            "gradient",
            "Vanilla backprop saliency (Simonyan et al. 2014): d(target)/d(input).",
            (render_param(HEATMAP),),
        ),
        MethodInfo(
            "guided_backprop",
            "Guided backpropagation (Springenberg et al. 2015): at each ReLU keep gradients "
            "that are positive where the forward input was positive.",
            (RULE, render_param(SIGNED)),
        ),
        MethodInfo(
            "deconvnet",
            "DeconvNet (Zeiler & Fergus 2014): at each ReLU keep positive gradients, whatever "
            "the forward input; max-pool switches from the forward pass.",
            (RULE, render_param(SIGNED)),
        ),
        MethodInfo(
            "smoothgrad",
            "SmoothGrad (Smilkov et al. 2017): the base method's map averaged over noisy copies "
            "of the image (Gaussian noise, seeded per item).",
            (
                Param("samples", "int", 25, "noisy copies of each image", 1, 1000),
                Param("noise", "float", 0.15,
                      "noise standard deviation as a fraction of the image's (max - min)", 0.0,
                      10.0),
                Param("base", "choice", "gradient", "the method applied to each noisy copy",
                      choices=("gradient", "guided_backprop")),
                Param("variant", "choice", "mean",
                      "mean of the maps (SmoothGrad), mean of their squares (SmoothGrad-Squared) "
                      "or their variance (VarGrad)", choices=("mean", "squared", "vargrad")),
                render_param(HEATMAP),
            ),
        ),
        MethodInfo(
            "integrated_gradients",
            "Integrated Gradients (Sundararajan et al. 2017): (x - baseline) times the gradient "
            "integrated along the straight path from the baseline to the image; each map "
            "reports its completeness error as `convergence_delta`.",
            (
                Param("baseline", "input_or_choice", "black",
                      "black (pixel 0), blurred (the image blurred), uniform (seeded uniform "
                      "pixels) or an input reference", choices=("black", "blurred", "uniform")),
                Param("steps", "int", 50, "points of the path integral", 2, 1000),
                Param("rule", "choice", "gausslegendre", "quadrature rule of the path integral",
                      choices=("gausslegendre", "riemann_trapezoid")),
                render_param(HEATMAP),
            ),
        ),
        MethodInfo(
            "gradcam",
            "Grad-CAM (Selvaraju et al. 2017): a layer's activations weighted by their "
            "spatially averaged gradients, summed over channels, rectified and upsampled "
            "bilinearly to the input (one channel).",
            (
                Param("layer", "layer", None,
                      "module name; null: the last convolutional block before global pooling"),
                render_param(CAM),
            ),
        ),
        MethodInfo(
            "guided_gradcam",
            "Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times the "
            "upsampled Grad-CAM map.",
            (
                Param("layer", "layer", None,
                      "module name; null: the last convolutional block before global pooling"),
                RULE,
                render_param(SIGNED),
            ),
        ),
        MethodInfo(
            "attention_rollout",
            "Attention rollout (Abnar & Zuidema 2020): per block the head-averaged attention "
            "probabilities, half of them plus half the identity, rows renormalised, multiplied "
            "through the blocks; the class token's row over the patch tokens, upsampled "
            "bilinearly to the input (one channel). Class-agnostic: every target gets the same "
            "map. Vision transformers with global self-attention only.",
            (render_param(CAM),),
        ),
        MethodInfo(
            "attention_gradcam",
            "Attention Grad-CAM (Chefer, Gur & Wolf 2021, without LRP): per block the "
            "head-averaged positive part of the attention probabilities times the target's "
            "gradient with respect to them, accumulated as R ← R + Ā·R from R = I; the class "
            "token's row over the patch tokens, upsampled bilinearly to the input (one "
            "channel). Vision transformers with global self-attention only.",
            (render_param(CAM),),
        ),
        MethodInfo(
            "occlusion",
            "Occlusion (Zeiler & Fergus 2014): slide a patch over the image; each pixel gets "
            "the mean drop of the target score over the patch positions that cover it.",
            (
                Param("patch", "int", 16, "side of the square patch, in input pixels", 1, 4096),
                Param("stride", "int", 8, "step between patch positions (at most the patch)", 1,
                      4096),
                Param("fill", "choice", "mean",
                      "what the patch shows: zero (pixel 0, black), mean (normalized 0, the "
                      "normalization's mean colour) or blur (the image blurred)",
                      choices=("zero", "mean", "blur")),
                render_param(HEATMAP),
            ),
        ),
    )
}
DEFAULT_METHODS: tuple[str, ...] = ("gradient",)
MAX_METHODS = 16


@dataclass(frozen=True)
class MethodSpec:
    """One entry of a job's `methods`: a name and its parameters, defaults filled in.

    `as_object` records whether it was given as an object, so the job echoes it the same way.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    as_object: bool = False

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def with_params(self, **changes: Any) -> MethodSpec:
        """A copy with some parameters replaced (e.g. a resolved baseline tensor)."""
        return MethodSpec(self.name, {**self.params, **changes}, self.as_object)

    def without(self, name: str) -> MethodSpec:
        """A copy without one parameter (a kind that has no use for it)."""
        return MethodSpec(self.name, {k: v for k, v in self.params.items() if k != name},
                          self.as_object)

    def to_json(self) -> str | dict[str, Any]:
        if not self.as_object and not self.params:
            return self.name
        params = {k: v.to_json() if isinstance(v, InputRef) else v
                  for k, v in self.params.items()}
        return {"name": self.name, **params}


def method_spec(name: str, **params: Any) -> MethodSpec:
    """A validated spec of method `name` with `params` (defaults filled in)."""
    return parse_method({"name": name, **params} if params else name, "method")


def parse_method(raw: Any, where: str) -> MethodSpec:
    """A method given by name (`"gradient"`) or as an object (`{"name": ..., params}`)."""
    if isinstance(raw, str):
        name, given, as_object = raw, {}, False
    elif isinstance(raw, dict) and isinstance(raw.get("name"), str):
        name, as_object = raw["name"], True
        given = {k: v for k, v in raw.items() if k != "name"}
    else:
        raise SpecError(where, 'must be a method name or an object {"name": ..., parameters}')
    info = METHODS.get(name)
    if info is None:
        raise SpecError(where, f"unknown method {name!r}; known: {sorted(METHODS)}")
    known = {p.name: p for p in info.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        hint = f"its parameters are {sorted(known)}" if known else "it takes no parameters"
        raise SpecError(f"{where}.{unknown[0]}", f"is not a parameter of {name!r}; {hint}")
    params = {
        p.name: p.parse(given[p.name], f"{where}.{p.name}") if p.name in given else p.default
        for p in info.params
    }
    return MethodSpec(name, params, as_object)


def parse_methods(raw: Any, field_name: str = "methods") -> tuple[MethodSpec, ...]:
    """A non-empty list of methods; a plain name given twice is kept once, order kept."""
    if raw is None:
        return tuple(parse_method(name, field_name) for name in DEFAULT_METHODS)
    if not isinstance(raw, list) or not raw:
        raise SpecError(field_name, f"must be a non-empty list of {sorted(METHODS)}")
    if len(raw) > MAX_METHODS:
        raise SpecError(field_name, f"at most {MAX_METHODS} methods per job, got {len(raw)}")
    specs: list[MethodSpec] = []
    for i, entry in enumerate(raw):
        spec = parse_method(entry, f"{field_name}[{i}]")
        if spec not in specs:
            specs.append(spec)
    return tuple(specs)

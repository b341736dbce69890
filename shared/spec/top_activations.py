"""The fields of a `top_activations` job (the Zeiler–Fergus top-k figure) and their validation.

Pure Python (no torch, no Flask): the API validates a submission with it, and checks the
layer and channels there when the model's layer shapes are already known (recorded at the
model's first load); the worker checks them again against the loaded model, which also
settles the projection cap of `"channels": "all"`.

**The default projection** is resolved at submission from the model's record (`for_model`)
and echoed in the job's `methods`, with the reason in `methods_reason`: DeconvNet where a
max-pooling precedes the layer (its switches are what ties a DeconvNet projection to its
image), guided backpropagation where none does; DeconvNet, as before, where the record does
not say. Methods given explicitly are kept as given, with no reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import SpecError
from shared.settings import Settings
from shared.spec.layers import ModelLayers
from shared.spec.methods import PAPER_RULE, MethodSpec, parse_methods

TOP_ACTIVATIONS_FIELDS: tuple[str, ...] = ("layer", "channels", "k", "methods")
# Written by the service into a job's echo (read back from a stored spec, refused in a
# submission): why it chose the projection methods.
METHODS_REASON = "methods_reason"
ALL_CHANNELS = "all"
DEFAULT_K = 9
MAX_K = 64
PROJECTION_METHODS: tuple[str, ...] = ("deconvnet", "guided_backprop", "gradient")
DEFAULT_PROJECTION_METHODS: tuple[str, ...] = ("deconvnet",)
MAX_LAYER_CHARS = 256
DEFAULT_MAX_PROJECTIONS = Settings.max_projections

LayerShapes = Mapping[str, tuple[int, int, int]]

NOT_RECORDED = (
    "deconvnet: the default where the model's record does not say whether a max-pooling "
    "precedes the layer (the model was still being validated when the job was submitted, or "
    "was validated before that was recorded); without max-pooling a DeconvNet projection "
    "barely depends on its image: ask for guided_backprop if the model has none"
)


def default_projection(layers: ModelLayers, layer: str) -> tuple[str, str]:
    """The default projection method for `layer` of a model with these layers, and why."""
    found = layers.layers.get(layer)
    pooled = None if found is None else found.max_pool_before
    if pooled is None:
        return "deconvnet", NOT_RECORDED
    if pooled:
        return "deconvnet", (
            f"deconvnet: the default, as a max-pooling precedes layer {layer!r}: its switches "
            "make each projection follow its own image (Zeiler & Fergus 2014)")
    return "guided_backprop", (
        f"guided_backprop: the default, as no max-pooling precedes layer {layer!r}: without "
        "max-pooling switches a DeconvNet projection barely depends on its image (every "
        "image gives the same picture), so guided backpropagation (Springenberg et al. 2015) "
        'projects instead; ask for "methods": ["deconvnet"] to get DeconvNet')


def nearest_names(name: str, names: Iterable[str], n: int = 5) -> list[str]:
    """The `n` names most like `name`, closest first: the hint for a mistyped layer."""
    return difflib.get_close_matches(name, list(names), n=n, cutoff=0.0)


def nearest_hint(name: str, names: Iterable[str]) -> str:
    """`nearest: a, b, c`, the names most like `name`, for an error message."""
    near = nearest_names(name, names)
    return f"nearest: {', '.join(near)}" if near else "the model has none"


def unknown_layer_problem(layer: str, layer_shapes: LayerShapes) -> str:
    """Why `layer` cannot be scanned, listing the nearest feature-map layers."""
    return (f"no module named {layer!r} outputs a grid of channels (N×C×H×W, N×H×W×C or "
            f"tokens) in this model; {nearest_hint(layer, layer_shapes)}")


@dataclass(frozen=True)
class TopActivationsSpec:
    """Which feature maps to explain, how many top images each, and the projection methods.

    `channels` is a tuple of channel indices, or `"all"` (every channel of the layer).
    `methods_reason` says why the service chose `methods` (None: they were given).
    """

    layer: str
    channels: tuple[int, ...] | str = ALL_CHANNELS
    k: int = DEFAULT_K
    methods: tuple[MethodSpec, ...] = tuple(
        m.without("render") for m in parse_methods(list(DEFAULT_PROJECTION_METHODS)))
    methods_reason: str | None = None

    def for_model(self, layers: ModelLayers) -> TopActivationsSpec:
        """This spec with its default projection chosen for the model's layers (methods
        that were given are kept)."""
        if self.methods_reason is None:
            return self
        method, reason = default_projection(layers, self.layer)
        return replace(self, methods=_parse_projection_methods([method]), methods_reason=reason)

    def channel_list(self, num_channels: int) -> tuple[int, ...]:
        """The channels to scan on a layer of `num_channels` channels."""
        if self.channels == ALL_CHANNELS:
            return tuple(range(num_channels))
        return tuple(self.channels)

    def projections(self, num_channels: int) -> int:
        """How many projections the job makes: channels × k × methods."""
        return len(self.channel_list(num_channels)) * self.k * len(self.methods)

    def check_shapes(
        self, layer_shapes: LayerShapes, max_projections: int | None = DEFAULT_MAX_PROJECTIONS
    ) -> None:
        """Refuse a layer the model lacks, a channel out of range, or (unless the cap is None)
        too many projections."""
        shape = layer_shapes.get(self.layer)
        if shape is None:
            raise SpecError("layer", unknown_layer_problem(self.layer, layer_shapes))
        num_channels = shape[0]
        if self.channels != ALL_CHANNELS:
            for i, channel in enumerate(self.channels):
                if channel >= num_channels:
                    raise SpecError(
                        f"channels[{i}]",
                        f"{channel} is out of range; layer {self.layer!r} has {num_channels} "
                        f"channels (0..{num_channels - 1})",
                    )
        if max_projections is not None:
            _check_cap(self.projections(num_channels), self, max_projections)

    def to_json(self) -> dict[str, Any]:
        channels = self.channels if self.channels == ALL_CHANNELS else list(self.channels)
        out = {"layer": self.layer, "channels": channels, "k": self.k,
               "methods": [m.to_json() for m in self.methods]}
        if self.methods_reason is not None:
            out[METHODS_REASON] = self.methods_reason
        return out


def _check_cap(projections: int, spec: TopActivationsSpec, max_projections: int) -> None:
    if projections > max_projections:
        raise SpecError(
            "channels",
            f"{projections} projections (channels × k {spec.k} × methods "
            f"{len(spec.methods)}) exceed the limit of {max_projections} "
            "(SALIENCY_MAX_PROJECTIONS); ask for fewer channels, a smaller k or fewer methods",
        )


def _parse_layer(raw: Any) -> str:
    if raw is None:
        raise SpecError("layer", "is required: a module name from named_modules()")
    if not isinstance(raw, str) or not raw or len(raw) > MAX_LAYER_CHARS:
        raise SpecError(
            "layer", f"must be a module name from named_modules() (<= {MAX_LAYER_CHARS} chars)"
        )
    return raw


def _parse_channels(raw: Any) -> tuple[int, ...] | str:
    if raw is None:
        raise SpecError("channels", 'is required: a list of channel indices, or "all"')
    if raw == ALL_CHANNELS:
        return ALL_CHANNELS
    if not isinstance(raw, list) or not raw:
        raise SpecError("channels", 'must be a non-empty list of channel indices, or "all"')
    channels: dict[int, None] = {}
    for i, channel in enumerate(raw):
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
            raise SpecError(f"channels[{i}]", f"must be a channel index >= 0, got {channel!r}")
        channels[channel] = None
    return tuple(channels)


def _parse_k(raw: Any) -> int:
    if raw is None:
        return DEFAULT_K
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_K:
        raise SpecError("k", f"must be an integer between 1 and {MAX_K}, got {raw!r}")
    return raw


def _parse_projection_methods(raw: Any) -> tuple[MethodSpec, ...]:
    methods = parse_methods(list(DEFAULT_PROJECTION_METHODS) if raw is None else raw)
    for i, method in enumerate(methods):
        if method.name not in PROJECTION_METHODS:
            raise SpecError(
                f"methods[{i}]",
                f"{method.name!r} cannot project a single activation; use one of "
                f"{list(PROJECTION_METHODS)}",
            )
        if method.params.get("rule", PAPER_RULE) != PAPER_RULE:
            raise SpecError(
                f"methods[{i}].rule",
                f"projections take the papers' rule ({PAPER_RULE!r}) only: a projection "
                "carries no warnings to say it used the service's own; use the gated rule in "
                "an attribution job",
            )
    for i, entry in enumerate(raw or ()):
        if isinstance(entry, dict) and "render" in entry:
            raise SpecError(f"methods[{i}].render",
                            "projections are drawn as the papers' signed pictures, cropped to "
                            "their patches; `render` is for attribution jobs")
    return tuple(method.without("render") for method in methods)


def _parse_reason(raw: Mapping[str, Any]) -> str | None:
    """Why the methods are what they are: a stored spec says; methods left out are the
    default until `for_model` chooses for the model; methods given need none."""
    reason = raw.get(METHODS_REASON)
    if reason is not None and not isinstance(reason, str):
        raise SpecError(METHODS_REASON, "must be a string (the service writes it)")
    if reason is None and raw.get("methods") is None:
        return NOT_RECORDED
    return reason


def parse_top_activations(
    raw: Mapping[str, Any],
    *,
    max_projections: int | None = DEFAULT_MAX_PROJECTIONS,
    layer_shapes: LayerShapes | None = None,
) -> TopActivationsSpec:
    """The `top_activations` fields of a job (other keys are the job parser's business).

    The projection cap (None: not checked) is checked here when the channels are listed;
    with `layer_shapes` (the model's feature-map layers and their C×H×W), the layer, the
    channels and the cap of `"all"` are checked too.
    """
    if not isinstance(raw, Mapping):
        raise SpecError("spec", "must be a JSON object")
    spec = TopActivationsSpec(
        layer=_parse_layer(raw.get("layer")),
        channels=_parse_channels(raw.get("channels")),
        k=_parse_k(raw.get("k")),
        methods=_parse_projection_methods(raw.get("methods")),
        methods_reason=_parse_reason(raw),
    )
    if spec.channels != ALL_CHANNELS and max_projections is not None:
        _check_cap(len(spec.channels) * spec.k * len(spec.methods), spec, max_projections)
    if layer_shapes is not None:
        spec.check_shapes(layer_shapes, max_projections)
    return spec


def top_activations_from_json(raw: Mapping[str, Any]) -> TopActivationsSpec:
    """Read back what `TopActivationsSpec.to_json` wrote (the cap was checked at submission)."""
    return parse_top_activations(raw, max_projections=None)

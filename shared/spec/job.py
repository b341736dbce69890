"""Job specs: the JSON both the API and the worker speak, and its validation.

Pure Python (no torch, no Flask): the API validates with it before anything is stored, the
worker parses the same JSON back. A job has a `kind` — `attribution` (the default),
`top_activations` or `visualize` — fields every kind shares (the model, the seed, the
retention, the completion webhook), and its kind's own fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import SpecError
from shared.jsonio import integer
from shared.results.records import InputSource
from shared.settings import Settings
from shared.spec.datasets import DatasetSpec, parse_dataset
from shared.spec.methods import MethodSpec, parse_methods
from shared.spec.model import MODEL_NAME_RE, ModelSpec
from shared.spec.targets import (
    PREDICTED,
    ClassTarget,
    LayerTarget,
    Target,
    TopKTarget,
    parse_target,
)
from shared.spec.top_activations import (
    METHODS_REASON,
    TOP_ACTIVATIONS_FIELDS,
    TopActivationsSpec,
    parse_top_activations,
    top_activations_from_json,
)
from shared.spec.visualize import VISUALIZE_FIELDS, VisualizeSpec, parse_visualize_spec

KINDS: tuple[str, ...] = ("attribution", "top_activations", "visualize")
REDUCTIONS: tuple[str, ...] = ("max_abs", "sum_abs", "l2", "positive")
OUTPUTS: tuple[str, ...] = ("npy", "png", "overlay", "signed")
# `signed` (the papers' signed RGB picture, zero as grey) is asked for explicitly.
DEFAULT_OUTPUTS: tuple[str, ...] = ("npy", "png", "overlay")
MAP_DTYPES: tuple[str, ...] = ("float16", "float32")
# The overlay's colour at a pixel is weighted by `overlay_opacity` × the normalized value: at 1
# a lone hot pixel shows at full colour; 0.6 draws the overlays of v1, and of every job stored
# before `overlay_opacity` existed (`job_spec_from_json`).
DEFAULT_OVERLAY_OPACITY = 1.0
V1_OVERLAY_OPACITY = 0.6
MAX_SEED = 2**63 - 1
MAX_RETENTION_S = 365 * 24 * 3600
MAX_SANITY_SAMPLE = 256
# Fields of every kind; `inputs`, `dataset` and uploaded `images` are read by the API.
COMMON_FIELDS: tuple[str, ...] = ("kind", "model", "seed", "retention_s", "notify")


def parse_reduce(raw: Any, field_name: str = "reduce") -> str:
    if raw is None:
        return REDUCTIONS[0]
    if raw not in REDUCTIONS:
        raise SpecError(field_name, f"must be one of {list(REDUCTIONS)}, got {raw!r}")
    return raw


def parse_overlay_opacity(raw: Any) -> float:
    if raw is None:
        return DEFAULT_OVERLAY_OPACITY
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw <= 1:
        raise SpecError("overlay_opacity", f"must be a number in (0, 1], got {raw!r}")
    return float(raw)


def parse_outputs(raw: Any, field_name: str = "outputs") -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_OUTPUTS
    if not isinstance(raw, list) or not raw or any(
        not isinstance(o, str) or o not in OUTPUTS for o in raw
    ):
        raise SpecError(field_name, f"must be a non-empty subset of {list(OUTPUTS)}")
    return tuple(dict.fromkeys(raw))


@dataclass(frozen=True)
class AttributionSpec:
    """What to compute for every input of an attribution job."""

    methods: tuple[MethodSpec, ...] = (MethodSpec("gradient"),)
    target: Target = PREDICTED
    reduce: str = REDUCTIONS[0]
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    overlay_opacity: float = DEFAULT_OVERLAY_OPACITY
    map_dtype: str = "float16"  # of the maps of a data-set job's shards
    write: tuple[str, ...] = ()  # per-item files a data-set job's worker writes
    sanity_sample: int | None = None  # `"audit": {"sanity": {"sample": n}}`

    FIELDS = ("methods", "target", "reduce", "outputs", "overlay_opacity", "map_dtype", "write",
              "audit")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "methods": [m.to_json() for m in self.methods],
            "target": self.target.to_json(),
            "reduce": self.reduce,
            "outputs": list(self.outputs),
            "overlay_opacity": self.overlay_opacity,
            "map_dtype": self.map_dtype,
        }
        if self.write:
            out["write"] = list(self.write)
        if self.sanity_sample is not None:
            out["audit"] = {"sanity": {"sample": self.sanity_sample}}
        return out

    def check_model(self, model: ModelSpec,
                    layer_shapes: dict[str, tuple[int, int, int]] | None = None) -> None:
        """Reject targets the model cannot have (layers, when their shapes are known)."""
        target = self.target
        if isinstance(target, ClassTarget) and target.index >= model.num_classes:
            raise SpecError(
                "target.class",
                f"must be below {model.num_classes}, the classes of model {model.name!r}",
            )
        if isinstance(target, TopKTarget) and target.k > model.num_classes:
            raise SpecError(
                "target.topk", f"must be at most {model.num_classes}, the classes of {model.name!r}"
            )
        if isinstance(target, LayerTarget) and layer_shapes:
            check_layer(target.layer, target.channel, layer_shapes, "target")


def check_layer(layer: str, channel: int | None, shapes: dict[str, tuple[int, int, int]],
                field_name: str) -> None:
    """A layer of known output shape, and a channel within it; errors name the nearest layers."""
    import difflib

    if layer not in shapes:
        near = difflib.get_close_matches(layer, list(shapes), n=5, cutoff=0.3)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        raise SpecError(f"{field_name}.layer",
                        f"no layer {layer[:80]!r} whose output is a grid of channels (N×C×H×W, "
                        f"N×H×W×C or tokens) in this model{hint}")
    if channel is not None and not 0 <= channel < shapes[layer][0]:
        raise SpecError(f"{field_name}.channel",
                        f"{channel} is out of range; layer {layer!r} has {shapes[layer][0]} "
                        "channels")


def _parse_audit(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"sanity"}:
        raise SpecError("audit", 'must be {"sanity": {"sample": n}}')
    sanity = raw.get("sanity")
    if sanity is None:
        return None
    if not isinstance(sanity, dict) or set(sanity) - {"sample"}:
        raise SpecError("audit.sanity", 'must be {"sample": n}')
    return integer(sanity.get("sample", 16), "audit.sanity.sample", 1, MAX_SANITY_SAMPLE)


def parse_attribution(raw: dict[str, Any]) -> AttributionSpec:
    """The attribution fields of a job spec."""
    map_dtype = raw.get("map_dtype", "float16")
    if map_dtype not in MAP_DTYPES:
        raise SpecError("map_dtype", f"must be one of {list(MAP_DTYPES)}")
    return AttributionSpec(
        methods=parse_methods(raw.get("methods")),
        target=parse_target(raw.get("target")),
        reduce=parse_reduce(raw.get("reduce")),
        outputs=parse_outputs(raw.get("outputs")),
        overlay_opacity=parse_overlay_opacity(raw.get("overlay_opacity")),
        map_dtype=map_dtype,
        write=parse_outputs(raw["write"], "write") if raw.get("write") else (),
        sanity_sample=_parse_audit(raw.get("audit")),
    )


LayerShapes = dict[str, tuple[int, int, int]]


@dataclass(frozen=True)
class KindPlan:
    """The items and chunks of a job of given inputs: `ranges` None cuts the items into
    chunks of `SALIENCY_CHUNK_SIZE`; `steps` is what a kind that counts steps counts."""

    total: int
    ranges: list[tuple[int, int]] | None = None
    steps: int | None = None


def _one_item_per_input(work: Any, model: ModelSpec, inputs: int) -> KindPlan:
    return KindPlan(inputs)


def _as_given(work: Any, layers: Any) -> Any:
    return work


@dataclass(frozen=True)
class KindSpec:
    """How one kind's fields are named and parsed, checked against the model, and planned.

    `check(work, model, layer_shapes, settings)` raises a `SpecError` (layer shapes are those
    recorded when the model was validated; empty while it is `validating`). `with_layers(work,
    layers)` fills in what the kind chooses from the model's recorded layers at submission.
    `echoed` fields are written by the service into a job's spec: read back from a stored
    spec, refused in a submission. `plan(work, model, inputs)` gives the items and chunks of a
    job that is not a data set's; `item_names(work, start, stop)` names a kind's items where
    they are not its inputs. `no_dataset` says why a kind takes no data set;
    `inputs_optional`, that a job of the kind may name no input."""

    fields: tuple[str, ...]
    parse: Callable[[dict[str, Any]], Any]
    check: Callable[[Any, ModelSpec, LayerShapes, Settings], None]
    echoed: tuple[str, ...] = ()
    with_layers: Callable[[Any, Any], Any] = _as_given
    plan: Callable[[Any, ModelSpec, int], KindPlan] = _one_item_per_input
    item_names: Callable[[Any, int, int], list[InputSource]] | None = None
    no_dataset: str | None = None
    inputs_optional: bool = False
    reads_annotations: bool = False


def _check_attribution(work: AttributionSpec, model: ModelSpec, shapes: LayerShapes,
                       settings: Settings) -> None:
    work.check_model(model, shapes)


def _check_top_activations(work: TopActivationsSpec, model: ModelSpec, shapes: LayerShapes,
                           settings: Settings) -> None:
    if shapes:
        work.check_shapes(shapes, settings.max_projections)
    else:  # the model's layers are not known yet: the cap of listed channels is
        parse_top_activations(work.to_json(), max_projections=settings.max_projections)


# What a stored visualize spec may hold: the settings' cap is checked at submission.
STORED_MAX_STEPS = 10**6


def _parse_visualize(raw: dict[str, Any]) -> VisualizeSpec:
    return parse_visualize_spec(raw, max_steps=STORED_MAX_STEPS,
                                extra_fields=tuple(set(COMMON_FIELDS) - {"kind", "model", "seed"}))


def _check_visualize(work: VisualizeSpec, model: ModelSpec, shapes: LayerShapes,
                     settings: Settings) -> None:
    if work.steps > settings.max_visualize_steps:
        raise SpecError("steps", f"must be at most {settings.max_visualize_steps} "
                                 "(SALIENCY_MAX_VISUALIZE_STEPS)")
    work.for_model(model)
    for k, objective in enumerate(work.objectives):
        layer = getattr(objective, "layer", None)
        if layer is not None and shapes:
            check_layer(layer, getattr(objective, "channel", None), shapes,
                        work.objective_field(k))


def _plan_visualize(work: VisualizeSpec, model: ModelSpec, inputs: int) -> KindPlan:
    """Items are objective × start, a chunk one batch of them; `progress` counts steps."""
    work = work.for_model(model)
    return KindPlan(len(work.items()), [(b[0].index, b[-1].index + 1) for b in work.batches()],
                    work.total_steps)


def _objectives(work: VisualizeSpec, start: int, stop: int) -> list[InputSource]:
    """Each item's objective, as `/items` and the results file name a visualization's
    input."""
    return [InputSource(name=json.dumps(item.objective.to_json()))
            for item in work.items()[start:stop]]


KIND_SPECS: dict[str, KindSpec] = {
    "attribution": KindSpec(AttributionSpec.FIELDS, parse_attribution, _check_attribution,
                            reads_annotations=True),
    "top_activations": KindSpec(TOP_ACTIVATIONS_FIELDS, top_activations_from_json,
                                _check_top_activations, echoed=(METHODS_REASON,),
                                with_layers=lambda work, layers: work.for_model(layers)),
    "visualize": KindSpec(
        VISUALIZE_FIELDS, _parse_visualize, _check_visualize, plan=_plan_visualize,
        item_names=_objectives,
        no_dataset="a visualize job takes inputs or uploads (for its inversion and DeepDream "
                   "objectives), not a data set",
        inputs_optional=True),
}


WorkSpec = AttributionSpec | TopActivationsSpec | VisualizeSpec


@dataclass(frozen=True)
class JobSpec:
    """A whole job spec: the common fields, the kind's own (`work`), and the data set a
    data-set job reads (validated by the API with the request, stored with the spec)."""

    kind: str
    model: str
    work: WorkSpec
    seed: int = 0
    retention_s: int | None = None
    notify: dict[str, Any] | None = None
    dataset: DatasetSpec | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "model": self.model, "seed": self.seed,
                               **self.work.to_json()}
        if self.retention_s is not None:
            out["retention_s"] = self.retention_s
        if self.notify is not None:
            out["notify"] = self.notify
        if self.dataset is not None:
            out["dataset"] = self.dataset.to_json()
        return out


def parse_job_spec(raw: Any, *, extra_fields: tuple[str, ...] = (),
                   parse_notify: Callable[[Any], dict[str, Any]] | None = None,
                   stored: bool = False) -> JobSpec:
    """Validate a job spec; `extra_fields` are keys the caller handles itself (e.g. `inputs`).

    `parse_notify` validates a completion webhook (the API passes its SSRF-checking parser);
    without one, `notify` is kept as stored. A `stored` spec (the service's echo) may hold
    the kind's `echoed` fields.
    """
    if not isinstance(raw, dict):
        raise SpecError("spec", "must be a JSON object")
    kind = raw.get("kind", "attribution")
    if not isinstance(kind, str) or kind not in KIND_SPECS:
        raise SpecError("kind", f"must be one of {list(KINDS)}, got {str(kind)[:40]!r}")
    kind_spec = KIND_SPECS[kind]
    allowed = set(COMMON_FIELDS) | set(kind_spec.fields) | set(extra_fields)
    if stored:
        allowed |= set(kind_spec.echoed)
    unknown = set(raw) - allowed
    if unknown:
        raise SpecError(sorted(map(str, unknown))[0][:80],
                        f"is not a field of {kind} jobs; known: {sorted(allowed)}")
    model = raw.get("model")
    if model is None:
        raise SpecError("model", "is required: the name of a registered model")
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise SpecError("model", "must be a registered model's name")
    retention = raw.get("retention_s")
    notify = raw.get("notify")
    if notify is not None and parse_notify is not None:
        notify = parse_notify(notify)
    return JobSpec(
        kind=kind,
        model=model,
        work=kind_spec.parse(raw),
        seed=integer(raw.get("seed", 0), "seed", 0, MAX_SEED),
        retention_s=None if retention is None else integer(retention, "retention_s", 1,
                                                           MAX_RETENTION_S),
        notify=notify,
    )


def job_spec_from_json(raw: dict[str, Any]) -> JobSpec:
    """Read back a job's stored spec (`JobSpec.to_json`, with the data set it names), as the
    API read it. An attribution job stored before `overlay_opacity` existed keeps the overlays
    it was drawn with."""
    spec = parse_job_spec(raw, extra_fields=("dataset",), stored=True)
    if isinstance(spec.work, AttributionSpec) and "overlay_opacity" not in raw:
        spec = replace(spec, work=replace(spec.work, overlay_opacity=V1_OVERLAY_OPACITY))
    dataset = raw.get("dataset")
    return replace(spec, dataset=parse_dataset(dataset)) if dataset else spec

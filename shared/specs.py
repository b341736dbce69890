"""Job and model specs: the JSON both the API and the worker speak, and its validation.

Pure Python (no torch, no Flask): the API validates with it before anything is stored,
the worker parses the same JSON back into these objects.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import SpecError
from shared.methods import MethodSpec, parse_methods

REDUCTIONS: tuple[str, ...] = ("max_abs", "sum_abs", "l2", "positive")
OUTPUTS: tuple[str, ...] = ("npy", "png", "overlay", "signed")
# `signed` (the papers' signed RGB picture, zero as grey) is asked for explicitly.
DEFAULT_OUTPUTS: tuple[str, ...] = ("npy", "png", "overlay")
MAX_TOPK = 20
MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class PredictedTarget:
    """The class the model predicts for each image."""

    def to_json(self) -> Any:
        return "predicted"


@dataclass(frozen=True)
class ClassTarget:
    """One given class index."""

    index: int

    def to_json(self) -> Any:
        return {"class": self.index}


@dataclass(frozen=True)
class TopKTarget:
    """The k highest-scoring classes of each image: one map per class."""

    k: int

    def to_json(self) -> Any:
        return {"topk": self.k}


@dataclass(frozen=True)
class LayerTarget:
    """A feature map (or one neuron of it) of a named module: the sum of its activations."""

    layer: str
    channel: int
    position: tuple[int, ...] | None = None

    def to_json(self) -> Any:
        out: dict[str, Any] = {"layer": self.layer, "channel": self.channel}
        if self.position is not None:
            out["position"] = list(self.position)
        return out


Target = PredictedTarget | ClassTarget | TopKTarget | LayerTarget
PREDICTED = PredictedTarget()


def _int(value: Any, field_name: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field_name, f"must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(field_name, f"must be {bound}, got {value}")
    return value


def parse_target(raw: Any, field_name: str = "target") -> Target:
    """Parse `"predicted"`, `{"class": k}`, `{"topk": k}` or `{"layer", "channel"[, ...]}`."""
    if raw is None or raw == "predicted":
        return PREDICTED
    if not isinstance(raw, dict):
        raise SpecError(
            field_name,
            'must be "predicted", {"class": k}, {"topk": k} or {"layer": name, "channel": c}',
        )
    keys = set(raw)
    if keys == {"class"}:
        return ClassTarget(_int(raw["class"], f"{field_name}.class"))
    if keys == {"topk"}:
        return TopKTarget(_int(raw["topk"], f"{field_name}.topk", 1, MAX_TOPK))
    if keys in ({"layer", "channel"}, {"layer", "channel", "position"}):
        layer = raw["layer"]
        if not isinstance(layer, str) or not layer:
            raise SpecError(f"{field_name}.layer", "must be a module name from named_modules()")
        position = raw.get("position")
        if position is not None:
            if not isinstance(position, list) or not position:
                raise SpecError(f"{field_name}.position", "must be a list of indices, e.g. [y, x]")
            position = tuple(_int(p, f"{field_name}.position") for p in position)
        return LayerTarget(layer, _int(raw["channel"], f"{field_name}.channel"), position)
    raise SpecError(field_name, f"has unknown keys {sorted(keys)}")


def parse_reduce(raw: Any, field_name: str = "reduce") -> str:
    if raw is None:
        return REDUCTIONS[0]
    if raw not in REDUCTIONS:
        raise SpecError(field_name, f"must be one of {list(REDUCTIONS)}, got {raw!r}")
    return raw


def parse_outputs(raw: Any, field_name: str = "outputs") -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_OUTPUTS
    if not isinstance(raw, list) or not raw or any(o not in OUTPUTS for o in raw):
        raise SpecError(field_name, f"must be a non-empty subset of {list(OUTPUTS)}")
    return tuple(dict.fromkeys(raw))


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded image becomes the model's input tensor."""

    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: architecture (or an exported program), classes, preprocessing."""

    name: str
    num_classes: int
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    architecture: str | None = None  # torchvision name, or "timm:<name>"; None for a .pt2 program
    class_names: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("preprocessing"))
        return out

    def class_name(self, index: int) -> str | None:
        if self.class_names is None or not 0 <= index < len(self.class_names):
            return None
        return self.class_names[index]


def _floats3(raw: Any, field_name: str) -> tuple[float, float, float]:
    if (
        not isinstance(raw, (list, tuple))
        or len(raw) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    ):
        raise SpecError(field_name, "must be a list of 3 numbers (one per RGB channel)")
    return (float(raw[0]), float(raw[1]), float(raw[2]))


def parse_model_spec(raw: Any, *, needs_architecture: bool = True) -> ModelSpec:
    """Validate a model registration spec; `needs_architecture` is False for a `.pt2` program."""
    if not isinstance(raw, dict):
        raise SpecError("spec", "must be a JSON object")
    allowed = {"name", "architecture", "num_classes", "input_size", "resize", "mean", "std",
               "class_names"}
    unknown = set(raw) - allowed
    if unknown:
        raise SpecError(sorted(unknown)[0], f"is not a model spec field; known: {sorted(allowed)}")
    name = raw.get("name")
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        raise SpecError("name", "must match [a-z0-9][a-z0-9_.-]{0,63}")
    architecture = raw.get("architecture")
    if needs_architecture:
        if not isinstance(architecture, str) or not architecture:
            raise SpecError(
                "architecture", "is required: a torchvision model name or 'timm:<name>'"
            )
    elif architecture is not None:
        raise SpecError("architecture", "must be absent for an exported program (.pt2)")
    num_classes = _int(raw.get("num_classes"), "num_classes", 1, 100_000)
    defaults = Preprocessing()
    input_size = _int(raw.get("input_size", defaults.input_size), "input_size", 8, 4096)
    resize = _int(raw.get("resize", input_size), "resize", input_size, 8192)
    mean = _floats3(raw.get("mean", list(defaults.mean)), "mean")
    std = _floats3(raw.get("std", list(defaults.std)), "std")
    if any(s <= 0 for s in std):
        raise SpecError("std", "must be positive")
    class_names = raw.get("class_names")
    if class_names is not None:
        if not isinstance(class_names, (list, tuple)) or not all(
            isinstance(c, str) for c in class_names
        ):
            raise SpecError("class_names", "must be a list of strings")
        if len(class_names) != num_classes:
            raise SpecError(
                "class_names", f"has {len(class_names)} names but num_classes is {num_classes}"
            )
        class_names = tuple(class_names)
    return ModelSpec(
        name=name,
        num_classes=num_classes,
        preprocessing=Preprocessing(input_size, resize, mean, std),
        architecture=architecture,
        class_names=class_names,
    )


def model_spec_from_json(raw: dict[str, Any]) -> ModelSpec:
    """Read back a spec that `ModelSpec.to_json` wrote (already validated when registered)."""
    return parse_model_spec(
        {k: v for k, v in raw.items() if v is not None},
        needs_architecture=raw.get("architecture") is not None,
    )


JOB_SPEC_FIELDS: tuple[str, ...] = ("model", "methods", "target", "reduce", "outputs")


@dataclass(frozen=True)
class JobSpec:
    """What to compute for every input of a job."""

    model: str
    methods: tuple[MethodSpec, ...] = (MethodSpec("gradient"),)
    target: Target = PREDICTED
    reduce: str = REDUCTIONS[0]
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "methods": [m.to_json() for m in self.methods],
            "target": self.target.to_json(),
            "reduce": self.reduce,
            "outputs": list(self.outputs),
        }

    def check_model(self, model: ModelSpec) -> None:
        """Reject targets the model cannot have (layer names are checked by the worker)."""
        if isinstance(self.target, ClassTarget) and self.target.index >= model.num_classes:
            raise SpecError(
                "target.class",
                f"must be below {model.num_classes}, the classes of model {model.name!r}",
            )
        if isinstance(self.target, TopKTarget) and self.target.k > model.num_classes:
            raise SpecError(
                "target.topk", f"must be at most {model.num_classes}, the classes of {model.name!r}"
            )


def parse_job_spec(raw: Any, *, extra_fields: tuple[str, ...] = ()) -> JobSpec:
    """Validate a job spec; `extra_fields` are keys the caller handles itself (e.g. `inputs`)."""
    if not isinstance(raw, dict):
        raise SpecError("spec", "must be a JSON object")
    unknown = set(raw) - set(JOB_SPEC_FIELDS) - set(extra_fields)
    if unknown:
        known = sorted(JOB_SPEC_FIELDS + extra_fields)
        raise SpecError(sorted(unknown)[0], f"is not a job spec field; known: {known}")
    model = raw.get("model")
    if model is None:
        raise SpecError("model", "is required: the name of a registered model")
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise SpecError("model", "must be a registered model's name")
    return JobSpec(
        model=model,
        methods=parse_methods(raw.get("methods")),
        target=parse_target(raw.get("target")),
        reduce=parse_reduce(raw.get("reduce")),
        outputs=parse_outputs(raw.get("outputs")),
    )


def job_spec_from_json(raw: dict[str, Any]) -> JobSpec:
    """Read back a spec that `JobSpec.to_json` wrote."""
    return parse_job_spec(raw)


def parse_input_uris(raw: Any, field_name: str = "inputs") -> tuple[str, ...]:
    """The `inputs` of a JSON job: a non-empty list of `{"uri": str}`; returns the URIs."""
    if not isinstance(raw, list) or not raw:
        raise SpecError(field_name, 'must be a non-empty list of {"uri": ...} objects')
    uris = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or set(entry) != {"uri"}:
            raise SpecError(f"{field_name}[{i}]", 'must be an object {"uri": ...}')
        uri = entry["uri"]
        if not isinstance(uri, str) or not uri or len(uri) > 1024:
            raise SpecError(f"{field_name}[{i}].uri", "must be a non-empty string (<= 1024 chars)")
        uris.append(uri)
    return tuple(uris)

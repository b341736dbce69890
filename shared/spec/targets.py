"""What a map is the gradient of: the predicted class, a given class, the top-k classes, the
item's own label, or a feature map (or one neuron) of a named layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import SpecError
from shared.jsonio import integer

MAX_TOPK = 20


@dataclass(frozen=True)
class PredictedTarget:
    """The class the model predicts for each image."""

    def to_json(self) -> Any:
        return "predicted"


@dataclass(frozen=True)
class LabelTarget:
    """Each item's own label (data sets and inputs that carry one); resolved per item."""

    def to_json(self) -> Any:
        return "label"


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


Target = PredictedTarget | LabelTarget | ClassTarget | TopKTarget | LayerTarget
PREDICTED = PredictedTarget()
LABEL = LabelTarget()


def parse_target(raw: Any, field_name: str = "target") -> Target:
    """Parse `"predicted"`, `"label"`, `{"class": k}`, `{"topk": k}` or `{"layer", "channel"}`."""
    if raw is None or raw == "predicted":
        return PREDICTED
    if raw == "label":
        return LABEL
    if not isinstance(raw, dict):
        raise SpecError(
            field_name,
            'must be "predicted", "label", {"class": k}, {"topk": k} or '
            '{"layer": name, "channel": c}',
        )
    keys = set(raw)
    if keys == {"class"}:
        return ClassTarget(integer(raw["class"], f"{field_name}.class"))
    if keys == {"topk"}:
        return TopKTarget(integer(raw["topk"], f"{field_name}.topk", 1, MAX_TOPK))
    if keys in ({"layer", "channel"}, {"layer", "channel", "position"}):
        layer = raw["layer"]
        if not isinstance(layer, str) or not layer or len(layer) > 256:
            raise SpecError(f"{field_name}.layer", "must be a module name from named_modules()")
        position = raw.get("position")
        if position is not None:
            if not isinstance(position, list) or not 1 <= len(position) <= 3:
                raise SpecError(f"{field_name}.position", "must be a list of indices, e.g. [y, x]")
            position = tuple(integer(p, f"{field_name}.position") for p in position)
        return LayerTarget(layer, integer(raw["channel"], f"{field_name}.channel"), position)
    raise SpecError(field_name, f"has unknown keys {sorted(map(str, keys))}")

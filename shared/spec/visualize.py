"""The spec of a `visualize` job: objectives, regularizers, the optimization's settings, and
the job's items (one per objective × start).

Pure Python (no torch, no Flask): the API validates a submitted job with it and echoes
`to_json()`; the worker reads that echo back with `parse_visualize_spec`. Every error is a
`SpecError` naming the field (`objective[1].channel`, `regularizers.blur.sigma`, ...), and
non-finite numbers are refused everywhere. What a job leaves out takes the defaults of its
objectives' kind (`defaults_for`): feature visualization, inversion or DeepDream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from shared.errors import SpecError
from shared.jsonio import integer
from shared.spec.inputs import InputRef, parse_input_ref
from shared.spec.model import MODEL_NAME_RE, ModelSpec

KIND = "visualize"
PARAMETRIZATIONS: tuple[str, ...] = ("pixel", "fourier")
MIN_SIZE, MAX_SIZE = 16, 512
MAX_OBJECTIVES = 64
MAX_STARTS = 64
MAX_ITEMS = 256
MAX_BATCH = 64
MAX_SNAPSHOTS = 100  # per item
MAX_SEED = 2**63 - 1
DEFAULT_STEPS = 512
DEFAULT_LR = 0.05
DEFAULT_BATCH = 8
DEFAULT_SNAPSHOT_EVERY = 64


@dataclass(frozen=True)
class ClassObjective:
    """Class model visualization (Simonyan et al. 2014): maximize the class's logit."""

    index: int

    def to_json(self) -> dict[str, Any]:
        return {"class": self.index}


@dataclass(frozen=True)
class ChannelObjective:
    """Activation maximization (Erhan et al. 2009; Yosinski et al. 2015): the mean of one
    channel of a layer, or with `position` ([y, x] on the layer's grid) one neuron."""

    layer: str
    channel: int
    position: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "channel": self.channel}
        if self.position is not None:
            out["position"] = list(self.position)
        return out


@dataclass(frozen=True)
class InvertObjective:
    """Inversion (Mahendran & Vedaldi 2015): an image whose representation at `layer`
    matches the given input's."""

    input: InputRef
    layer: str

    def to_json(self) -> dict[str, Any]:
        return {"invert": self.input.to_json(), "layer": self.layer}


@dataclass(frozen=True)
class DreamObjective:
    """DeepDream (Mordvintsev, Olah & Tyka 2015): amplify what `layer` sees in the given
    input, from the smallest of `octaves` scales (each `octave_scale` times the next) up."""

    input: InputRef
    layer: str
    octaves: int = 3
    octave_scale: float = 1.4

    def to_json(self) -> dict[str, Any]:
        return {"dream": self.input.to_json(), "layer": self.layer, "octaves": self.octaves,
                "octave_scale": self.octave_scale}


Objective = ClassObjective | ChannelObjective | InvertObjective | DreamObjective


def minimizes(objective: Objective) -> bool:
    """Whether the optimization lowers the objective (an inversion's distance) rather than
    raising it (every other kind)."""
    return isinstance(objective, InvertObjective)


@dataclass(frozen=True)
class Blur:
    """Yosinski et al. 2015: a Gaussian blur of width `sigma` pixels every `every` steps."""

    every: int = 4
    sigma: float = 0.5


@dataclass(frozen=True)
class TotalVariation:
    """Mahendran & Vedaldi 2015: the penalty weight · mean of (Δx² + Δy²)^(β/2)."""

    beta: float = 2.0
    weight: float = 0.05


@dataclass(frozen=True)
class AlphaNorm:
    """Mahendran & Vedaldi 2015: the penalty weight · mean of |x|^α."""

    alpha: float = 6.0
    weight: float = 1e-5


@dataclass(frozen=True)
class Regularizers:
    """The job's regularizers, each off at 0 or None unless it is one of the defaults.

    `l2` is a decay x ← (1 − l2)·x after every step; `clip_norm` and `clip_contribution` are
    percentiles (0–100) of pixels set to the mean colour after every step; `jitter` is in
    pixels, `scale` a [low, high] range, `rotate` in degrees. Penalties and operations act
    in normalized space.
    """

    l2: float = 0.0
    blur: Blur | None = None
    clip_norm: float = 0.0
    clip_contribution: float = 0.0
    tv: TotalVariation | None = None
    alpha_norm: AlphaNorm | None = None
    jitter: int = 32
    scale: tuple[float, float] = (0.75, 1.25)
    rotate: float = 15.0
    parametrization: str = "fourier"

    def to_json(self) -> dict[str, Any]:
        return {
            "l2": self.l2,
            "blur": None if self.blur is None else {"every": self.blur.every,
                                                    "sigma": self.blur.sigma},
            "clip_norm": self.clip_norm,
            "clip_contribution": self.clip_contribution,
            "tv": None if self.tv is None else {"beta": self.tv.beta, "weight": self.tv.weight},
            "alpha_norm": None if self.alpha_norm is None else {
                "alpha": self.alpha_norm.alpha, "weight": self.alpha_norm.weight},
            "jitter": self.jitter,
            "scale": list(self.scale),
            "rotate": self.rotate,
            "parametrization": self.parametrization,
        }


@dataclass(frozen=True)
class Defaults:
    """What a job leaves out: the regularizers (key by key), `steps` and `lr`."""

    regularizers: Regularizers
    steps: int
    lr: float


# Feature visualization (Olah et al. 2017): Fourier parametrization and transformation
# robustness, no penalty.
FEATURE_DEFAULTS = Defaults(Regularizers(), DEFAULT_STEPS, DEFAULT_LR)
# Inversion (Mahendran & Vedaldi 2015): the image priors, and no transformation, which would
# misalign the representation with the target's.
INVERT_DEFAULTS = Defaults(
    Regularizers(tv=TotalVariation(), alpha_norm=AlphaNorm(), jitter=0, scale=(1.0, 1.0),
                 rotate=0.0),
    DEFAULT_STEPS, DEFAULT_LR)
# DeepDream (Mordvintsev et al. 2015): small steps on the photo's own pixels, with jitter.
DREAM_DEFAULTS = Defaults(
    Regularizers(jitter=16, scale=(1.0, 1.0), rotate=0.0, parametrization="pixel"), 96, 0.02)
DEFAULTS: dict[type, Defaults] = {ClassObjective: FEATURE_DEFAULTS,
                                  ChannelObjective: FEATURE_DEFAULTS,
                                  InvertObjective: INVERT_DEFAULTS,
                                  DreamObjective: DREAM_DEFAULTS}


def defaults_for(objectives: tuple[Objective, ...]) -> Defaults:
    """The defaults of the objectives' kind, or feature visualization's for a mix of kinds."""
    kinds = {DEFAULTS[type(o)] for o in objectives}
    return kinds.pop() if len(kinds) == 1 else FEATURE_DEFAULTS


@dataclass(frozen=True)
class VisualizeItem:
    """One item of the job: `start` (0-based) of objective number `objective_index`."""

    index: int
    objective_index: int
    start: int
    objective: Objective

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "objective": self.objective.to_json(),
                "objective_index": self.objective_index, "start": self.start}


@dataclass(frozen=True)
class VisualizeSpec:
    """A validated `visualize` job. `size` None means the model's input size (`for_model`)."""

    model: str
    objectives: tuple[Objective, ...]
    regularizers: Regularizers = field(default_factory=Regularizers)
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    seed: int = 0
    size: int | None = None
    starts: int = 1
    batch: int = DEFAULT_BATCH
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    objective_as_list: bool = False  # echo `objective` the way it was given

    def items(self) -> tuple[VisualizeItem, ...]:
        """The job's items, objective-major: item i is start i % starts of objective
        i // starts."""
        return tuple(
            VisualizeItem(k * self.starts + s, k, s, objective)
            for k, objective in enumerate(self.objectives)
            for s in range(self.starts)
        )

    def batches(self) -> tuple[tuple[VisualizeItem, ...], ...]:
        """The items in consecutive groups of at most `batch`, each optimized together."""
        items = self.items()
        return tuple(items[i:i + self.batch] for i in range(0, len(items), self.batch))

    @property
    def total_steps(self) -> int:
        """`progress.total`: steps × items."""
        return self.steps * len(self.objectives) * self.starts

    def for_model(self, model: ModelSpec) -> VisualizeSpec:
        """This spec checked against the model's classes, `size` filled in if it was not given
        (the model's input size, brought into [MIN_SIZE, MAX_SIZE])."""
        for k, objective in enumerate(self.objectives):
            if isinstance(objective, ClassObjective) and objective.index >= model.num_classes:
                raise SpecError(f"{self.objective_field(k)}.class",
                                f"must be below {model.num_classes}, the classes of "
                                f"model {model.name!r}")
        size = self.size if self.size is not None else model.preprocessing.input_size
        size = min(max(size, MIN_SIZE), MAX_SIZE)
        _check_octaves(self.objectives, size, self.objective_as_list)
        return replace(self, size=size)

    def objective_field(self, k: int) -> str:
        """How errors name objective number `k`: `objective[k]`, or `objective` if single."""
        return f"objective[{k}]" if self.objective_as_list else "objective"

    def to_json(self) -> dict[str, Any]:
        objectives = [o.to_json() for o in self.objectives]
        return {
            "kind": KIND,
            "model": self.model,
            "objective": objectives if self.objective_as_list else objectives[0],
            "regularizers": self.regularizers.to_json(),
            "steps": self.steps,
            "lr": self.lr,
            "seed": self.seed,
            "size": self.size,
            "starts": self.starts,
            "batch": self.batch,
            "snapshot_every": self.snapshot_every,
        }


VISUALIZE_FIELDS: tuple[str, ...] = ("kind", "model", "objective", "regularizers", "steps",
                                     "lr", "seed", "size", "starts", "batch", "snapshot_every")


def parse_visualize_spec(
    raw: Any, *, max_steps: int, extra_fields: tuple[str, ...] = ()
) -> VisualizeSpec:
    """Validate a `visualize` job; `max_steps` is `SALIENCY_MAX_VISUALIZE_STEPS`, and
    `extra_fields` are keys the caller handles itself (e.g. `inputs`)."""
    if not isinstance(raw, dict):
        raise SpecError("spec", "must be a JSON object")
    unknown = set(raw) - set(VISUALIZE_FIELDS) - set(extra_fields)
    if unknown:
        known = sorted(VISUALIZE_FIELDS + extra_fields)
        raise SpecError(sorted(unknown)[0], f"is not a visualize job field; known: {known}")
    if raw.get("kind", KIND) != KIND:
        raise SpecError("kind", f"must be {KIND!r} for these fields, got {raw['kind']!r}")
    model = raw.get("model")
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise SpecError("model", "is required: the name of a registered model")
    objectives, as_list = _parse_objectives(raw.get("objective"))
    defaults = defaults_for(objectives)
    steps = integer(raw.get("steps", min(defaults.steps, max_steps)), "steps", 1, max_steps)
    starts = integer(raw.get("starts", 1), "starts", 1, MAX_STARTS)
    if len(objectives) * starts > MAX_ITEMS:
        raise SpecError("starts", f"objectives × starts must be at most {MAX_ITEMS}, "
                                  f"got {len(objectives)} × {starts}")
    size = raw.get("size")
    if size is not None:
        size = integer(size, "size", MIN_SIZE, MAX_SIZE)
        _check_octaves(objectives, size, as_list)
    snapshot_every = integer(raw.get("snapshot_every", DEFAULT_SNAPSHOT_EVERY), "snapshot_every", 0)
    if snapshot_every and steps // snapshot_every > MAX_SNAPSHOTS:
        raise SpecError("snapshot_every", f"makes {steps // snapshot_every} snapshots per item; "
                                          f"at most {MAX_SNAPSHOTS} (use at least "
                                          f"{math.ceil(steps / MAX_SNAPSHOTS)}, or 0 for none)")
    return VisualizeSpec(
        model=model,
        objectives=objectives,
        regularizers=parse_regularizers(raw.get("regularizers"), defaults.regularizers),
        steps=steps,
        lr=_float(raw.get("lr", defaults.lr), "lr", 0.0, 10.0, open_low=True),
        seed=integer(raw.get("seed", 0), "seed", 0, MAX_SEED),
        size=size,
        starts=starts,
        batch=integer(raw.get("batch", DEFAULT_BATCH), "batch", 1, MAX_BATCH),
        snapshot_every=snapshot_every,
        objective_as_list=as_list,
    )


def _parse_objectives(raw: Any) -> tuple[tuple[Objective, ...], bool]:
    if raw is None:
        raise SpecError("objective", 'is required: {"class": k}, {"layer", "channel"}, '
                                     '{"invert", "layer"} or {"dream", "layer"}, or a list')
    if not isinstance(raw, list):
        return (parse_objective(raw, "objective"),), False
    if not raw or len(raw) > MAX_OBJECTIVES:
        raise SpecError("objective", f"must be a list of 1 to {MAX_OBJECTIVES} objectives")
    return tuple(parse_objective(o, f"objective[{k}]") for k, o in enumerate(raw)), True


def parse_objective(raw: Any, where: str) -> Objective:
    """One objective: `{"class"}`, `{"layer", "channel"[, "position"]}`, `{"invert", "layer"}`
    or `{"dream", "layer"[, "octaves", "octave_scale"]}`."""
    if not isinstance(raw, dict):
        raise SpecError(where, "must be an object")
    keys = set(raw)
    if "class" in keys:
        _only(keys, {"class"}, set(), where)
        return ClassObjective(integer(raw["class"], f"{where}.class", 0))
    if "invert" in keys:
        _only(keys, {"invert", "layer"}, set(), where)
        return InvertObjective(parse_input_ref(raw["invert"], f"{where}.invert"),
                               _layer(raw["layer"], f"{where}.layer"))
    if "dream" in keys:
        _only(keys, {"dream", "layer"}, {"octaves", "octave_scale"}, where)
        defaults = DreamObjective(InputRef("item", 0), "")
        octaves = integer(raw.get("octaves", defaults.octaves), f"{where}.octaves", 1, 8)
        scale = _float(raw.get("octave_scale", defaults.octave_scale), f"{where}.octave_scale",
                       1.0, 4.0)
        return DreamObjective(parse_input_ref(raw["dream"], f"{where}.dream"),
                              _layer(raw["layer"], f"{where}.layer"), octaves, scale)
    if "channel" in keys or "layer" in keys:
        _only(keys, {"layer", "channel"}, {"position"}, where)
        position = raw.get("position")
        if position is not None:
            if not isinstance(position, list) or len(position) != 2:
                raise SpecError(f"{where}.position", "must be [y, x] on the layer's grid")
            position = (integer(position[0], f"{where}.position[0]", 0),
                        integer(position[1], f"{where}.position[1]", 0))
        return ChannelObjective(_layer(raw["layer"], f"{where}.layer"),
                                integer(raw["channel"], f"{where}.channel", 0), position)
    raise SpecError(where, 'must be {"class": k}, {"layer": name, "channel": c}, '
                           '{"invert": input, "layer": name} or {"dream": input, "layer": name}')


REGULARIZERS: tuple[str, ...] = tuple(Regularizers().to_json())


def parse_regularizers(raw: Any, defaults: Regularizers = FEATURE_DEFAULTS.regularizers,
                       where: str = "regularizers") -> Regularizers:
    """The `regularizers` object; a key left out takes its default, null turns one off."""
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        raise SpecError(where, f"must be an object with some of {list(REGULARIZERS)}")
    unknown = sorted(set(raw) - set(REGULARIZERS))
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}", f"is not a regularizer; known: "
                                                 f"{list(REGULARIZERS)}")
    d = defaults
    return Regularizers(
        l2=_off_or(raw, "l2", d.l2, where, lambda v, w: _float(v, w, 0.0, 1.0, open_high=True)),
        blur=_sub(raw, "blur", d.blur, where, _parse_blur),
        clip_norm=_off_or(raw, "clip_norm", d.clip_norm, where,
                          lambda v, w: _float(v, w, 0.0, 100.0)),
        clip_contribution=_off_or(raw, "clip_contribution", d.clip_contribution, where,
                                  lambda v, w: _float(v, w, 0.0, 100.0)),
        tv=_sub(raw, "tv", d.tv, where, _parse_tv),
        alpha_norm=_sub(raw, "alpha_norm", d.alpha_norm, where, _parse_alpha_norm),
        jitter=_off_or(raw, "jitter", d.jitter, where, lambda v, w: integer(v, w, 0, MAX_SIZE // 4),
                       off=0),
        scale=_off_or(raw, "scale", d.scale, where, _parse_scale, off=(1.0, 1.0)),
        rotate=_off_or(raw, "rotate", d.rotate, where, lambda v, w: _float(v, w, 0.0, 180.0),
                       off=0.0),
        parametrization=_parametrization(raw.get("parametrization", d.parametrization),
                                         f"{where}.parametrization"),
    )


def _off_or(raw: dict, key: str, default: Any, where: str, parse, off: Any = 0.0) -> Any:
    """A regularizer's value: its default when absent, `off` when null."""
    if key not in raw:
        return default
    if raw[key] is None:
        return off
    return parse(raw[key], f"{where}.{key}")


def _sub(raw: dict, key: str, default: Any, where: str, parse) -> Any:
    """A regularizer with parameters: an object (missing parameters take their defaults), or
    null for off."""
    if key not in raw:
        return default
    if raw[key] is None:
        return None
    if not isinstance(raw[key], dict):
        raise SpecError(f"{where}.{key}", "must be an object of its parameters, or null for off")
    return parse(raw[key], f"{where}.{key}")


def _parse_blur(raw: dict, where: str) -> Blur:
    _only(set(raw), set(), {"every", "sigma"}, where)
    d = Blur()
    return Blur(integer(raw.get("every", d.every), f"{where}.every", 1),
                _float(raw.get("sigma", d.sigma), f"{where}.sigma", 0.0, 16.0, open_low=True))


def _parse_tv(raw: dict, where: str) -> TotalVariation:
    _only(set(raw), set(), {"beta", "weight"}, where)
    d = TotalVariation()
    return TotalVariation(_float(raw.get("beta", d.beta), f"{where}.beta", 1.0, 8.0),
                          _float(raw.get("weight", d.weight), f"{where}.weight", 0.0, 1e6))


def _parse_alpha_norm(raw: dict, where: str) -> AlphaNorm:
    _only(set(raw), set(), {"alpha", "weight"}, where)
    d = AlphaNorm()
    return AlphaNorm(_float(raw.get("alpha", d.alpha), f"{where}.alpha", 1.0, 16.0),
                     _float(raw.get("weight", d.weight), f"{where}.weight", 0.0, 1e6))


def _parse_scale(raw: Any, where: str) -> tuple[float, float]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise SpecError(where, "must be a range [low, high], e.g. [0.9, 1.1]")
    low = _float(raw[0], f"{where}[0]", 0.25, 4.0)
    high = _float(raw[1], f"{where}[1]", 0.25, 4.0)
    if low > high:
        raise SpecError(where, f"low must not exceed high, got [{low}, {high}]")
    return (low, high)


def _parametrization(raw: Any, where: str) -> str:
    if raw not in PARAMETRIZATIONS:
        raise SpecError(where, f"must be one of {list(PARAMETRIZATIONS)}, got {raw!r}")
    return raw


def _check_octaves(objectives: tuple[Objective, ...], size: int, as_list: bool) -> None:
    """Each DeepDream octave must be at least MIN_SIZE pixels."""
    for k, objective in enumerate(objectives):
        if isinstance(objective, DreamObjective):
            smallest = size / objective.octave_scale ** (objective.octaves - 1)
            if round(smallest) < MIN_SIZE:
                where = f"objective[{k}]" if as_list else "objective"
                raise SpecError(f"{where}.octaves",
                                f"the smallest octave would be {smallest:.1f} px for size "
                                f"{size}; use fewer octaves or a smaller octave_scale "
                                f"(at least {MIN_SIZE} px)")


def _only(keys: set[str], required: set[str], optional: set[str], where: str) -> None:
    missing = sorted(required - keys)
    if missing:
        raise SpecError(f"{where}.{missing[0]}", "is required")
    unknown = sorted(keys - required - optional)
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}",
                        f"is not a field here; known: {sorted(required | optional)}")


def _layer(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 256:
        raise SpecError(where, "must be a module name from named_modules()")
    return raw


def _float(raw: Any, where: str, minimum: float, maximum: float, *, open_low: bool = False,
           open_high: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise SpecError(where, f"must be a finite number, got {raw!r}")
    value = float(raw)
    if (value <= minimum if open_low else value < minimum) or (
        value >= maximum if open_high else value > maximum
    ):
        low, high = "(" if open_low else "[", ")" if open_high else "]"
        raise SpecError(where, f"must be in {low}{minimum}, {maximum}{high}, got {value}")
    return value

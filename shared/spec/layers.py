"""A model's layers as one forward pass saw them: each module's output shape and layout, and
the default Grad-CAM layer. Torch-free: the worker reads it from the pass (`worker.engine.layers`),
the model's record keeps it, and the API checks layer targets against it.

A layer's output is read as a grid of feature vectors in one of three layouts:

- `NCHW`: N×C×H×W, a convolutional feature map;
- `NHWC`: N×H×W×C, channels last (timm's channels-last blocks, Swin);
- `tokens`: N×(P + H·W)×C, P prefix tokens (class, distillation, register tokens) then the
  H·W patch tokens in raster order.

`position` is `[y, x]` on the layer's grid, prefix tokens excluded; a channel is one of C.
Any other output (a vector, an attention tensor, windows, a tuple) has no layout, and the
record says why. Each layer also records whether a max-pooling precedes it (its output
depends on a max-pool's switches: `worker.engine.max_pooling`), which sets the default projection
of a `top_activations` job; None where that was not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from shared.errors import UnsupportedModelError

NCHW, NHWC, TOKENS = "NCHW", "NHWC", "tokens"
_LISTED = 5  # layers an error lists
_PASS_ON = ("Identity", "Dropout", "DropPath", "Pad")  # what passes its input on, by class


@dataclass(frozen=True)
class Layout:
    """Where a layer's output holds its channels and its H×W grid (and P prefix tokens)."""

    kind: str
    channels: int
    grid: tuple[int, int]
    prefix: int = 0

    @property
    def chw(self) -> tuple[int, int, int]:
        """(C, H, W): the output read as a feature map."""
        return self.channels, self.grid[0], self.grid[1]

    @property
    def cells(self) -> int:
        return self.grid[0] * self.grid[1]

    def describe(self) -> str:
        c, (h, w) = self.channels, self.grid
        if self.kind == NCHW:
            return f"N×{c}×{h}×{w}"
        if self.kind == NHWC:
            return f"N×{h}×{w}×{c} (channels last)"
        return f"N×({self.prefix} + {h}·{w})×{c} (tokens, {self.prefix} prefix)"

    def to_json(self) -> dict[str, Any]:
        return {"layout": self.kind, "channels": self.channels, "grid": list(self.grid),
                "prefix": self.prefix}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Layout:
        return cls(raw["layout"], int(raw["channels"]), (int(raw["grid"][0]),
                                                         int(raw["grid"][1])),
                   int(raw.get("prefix", 0)))


@dataclass(frozen=True)
class Layer:
    """One module in a forward pass: its class name, its output's shape (batch excluded;
    None when it does not output one tensor or did not run), how often it ran, its layout
    or why none, and whether a max-pooling precedes it (None: not recorded)."""

    module: str
    shape: tuple[int, ...] | None
    runs: int = 1
    layout: Layout | None = None
    problem: str | None = None
    max_pool_before: bool | None = None

    @property
    def has_grid(self) -> bool:
        return self.layout is not None and self.layout.cells > 1

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"module": self.module, "runs": self.runs,
                               "shape": None if self.shape is None else list(self.shape)}
        if self.layout is not None:
            out.update(self.layout.to_json())
        if self.problem is not None:
            out["problem"] = self.problem
        if self.max_pool_before is not None:
            out["max_pool_before"] = self.max_pool_before
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Layer:
        shape = raw.get("shape")
        pooled = raw.get("max_pool_before")
        return cls(raw.get("module", ""), None if shape is None else tuple(int(s) for s in shape),
                   int(raw.get("runs", 1)),
                   Layout.from_json(raw) if "layout" in raw else None, raw.get("problem"),
                   None if pooled is None else bool(pooled))


@dataclass(frozen=True)
class ModelLayers:
    """Every module of a model at one input size, in the order they first returned (those
    that did not run last), with the default Grad-CAM layer or why there is none."""

    layers: dict[str, Layer] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    default: str | None = None
    problem: str | None = None

    @property
    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of every layer with a layout, in order: the layers a job may name."""
        return {name: layer.layout.chw for name, layer in self.layers.items()
                if layer.layout is not None}

    def layout(self, name: str) -> Layout | None:
        layer = self.layers.get(name)
        return None if layer is None else layer.layout

    def layout_problem(self, name: str) -> str | None:
        """Why module `name`'s output cannot be read as a grid of channels (None if it can,
        or if the module is unknown here: the caller checks names)."""
        layer = self.layers.get(name)
        if layer is None or layer.layout is not None:
            return None
        if layer.runs == 0:
            return f"module {name!r} did not run in the forward pass"
        if layer.shape is None:
            return f"module {name!r} does not output a single tensor"
        shape = ", ".join(["N", *map(str, layer.shape)])
        why = f": {layer.problem}" if layer.problem else ""
        return (f"module {name!r} outputs shape [{shape}], which is not read as a grid of "
                f"channels (N×C×H×W, N×H×W×C or N×(P + H·W)×C tokens){why}; {self.hint()}")

    def default_layer(self, field: str) -> str:
        """The default layer; an `UnsupportedModelError` naming `field` if there is none."""
        if self.default is None:
            raise UnsupportedModelError(f"{field}: {self.problem}")
        return self.default

    def candidates(self) -> list[str]:
        """Layers with a grid of more than one cell, the last first, but those that pass
        their input on (`Identity`, dropout, padding)."""
        return [name for name in reversed(self.layers) if self.layers[name].has_grid
                and not any(kind in self.layers[name].module for kind in _PASS_ON)]

    def hint(self) -> str:
        """The candidate layers, the last first, for an error message."""
        names = [repr(n) for n in self.candidates()]
        if not names:
            return "the model has no layer whose output is a grid of more than one cell"
        more = ", ..." if len(names) > _LISTED else ""
        return f"layers with a grid, the last first: {', '.join(names[:_LISTED])}{more}"

    def with_max_pooling(self, before: dict[str, bool]) -> ModelLayers:
        """These layers with `max_pool_before` set from `before` (a module it lacks, one
        that did not run, keeps None)."""
        return replace(self, layers={
            name: replace(layer, max_pool_before=before.get(name, layer.max_pool_before))
            for name, layer in self.layers.items()})

    @property
    def known(self) -> bool:
        """Whether the layers were recorded (a model's first load records them)."""
        return bool(self.layers)

    @property
    def max_pooling_recorded(self) -> bool:
        """Whether `max_pool_before` was recorded (records of older validations lack it)."""
        return any(layer.max_pool_before is not None for layer in self.layers.values())

    def api_json(self) -> dict[str, Any]:
        """The API's listing (`GET /v1/models/{name}/layers`): every module in order, each
        marked `usable` (a job may name it: its output has a layout) and `default` (the
        default Grad-CAM layer)."""
        listed = []
        for name, layer in self.layers.items():
            entry = {"name": name, "module": layer.module, "runs": layer.runs,
                     "shape": None if layer.shape is None else list(layer.shape),
                     "layout": None, "channels": None, "grid": None, "prefix": None,
                     "usable": layer.layout is not None, "default": name == self.default,
                     "max_pool_before": layer.max_pool_before, "problem": layer.problem}
            if layer.layout is not None:
                entry.update(layer.layout.to_json())
            listed.append(entry)
        return {"input_size": None if self.input_size is None else list(self.input_size),
                "default": self.default, "default_problem": self.problem,
                "max_pooling_recorded": self.max_pooling_recorded, "layers": listed}

    def to_json(self) -> dict[str, Any]:
        return {"input_size": None if self.input_size is None else list(self.input_size),
                "default": self.default, "problem": self.problem,
                "modules": {name: layer.to_json() for name, layer in self.layers.items()}}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelLayers:
        size = raw.get("input_size")
        return cls({name: Layer.from_json(layer) for name, layer in raw["modules"].items()},
                   None if size is None else (int(size[0]), int(size[1])),
                   raw.get("default"), raw.get("problem"))

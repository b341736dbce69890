"""The fields of the other job kinds from command-line words: a `top_activations` job's
channels, and a `visualize` job's objective and settings.

    parse_channels("0-15")            # [0, 1, ..., 15]
    parse_channels("1,4,9")           # [1, 4, 9]; "0-3,8" mixes both; "all" stays "all"
    objective(layer="layer4", channel=3, position="2,5")
                                      # {"layer": "layer4", "channel": 3, "position": [2, 5]}

Pure functions shared by the SDK and the CLI; the service validates the rest (ranges, the
layer's name and channel count).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

TOP_ACTIVATIONS = "top_activations"
VISUALIZE = "visualize"
ALL_CHANNELS = "all"
CHANNELS_HELP = "0-15, 1,4,9 (or a mix: 0-3,8) or all"
PARAMETRIZATIONS = ("fourier", "pixel")
KINDS_WITHOUT_INPUTS = (VISUALIZE,)  # a visualize job may start from noise alone


def whole_number(text: str, what: str) -> int:
    """A whole number in ASCII digits (`int` would also take `"٣"`, `"1_0"` or `"+1"`)."""
    text = text.strip()
    if not (text.isascii() and text.isdecimal()):
        raise ValueError(f"{what}: {text!r} is not a whole number >= 0")
    return int(text)


def parse_channels(channels: Any) -> list[int] | str:
    """`"all"`, or the channel indices of `"0-15"`, `"1,4,9"`, `"0-3,8"`, an int or a list
    of ints, in the order given and each once."""
    if isinstance(channels, str) and channels.strip() == ALL_CHANNELS:
        return ALL_CHANNELS
    if isinstance(channels, bool):
        raise ValueError(f"channels must be {CHANNELS_HELP}, got {channels!r}")
    if isinstance(channels, int):
        channels = [channels]
    if not isinstance(channels, str):
        if not isinstance(channels, Iterable):
            raise ValueError(f"channels must be {CHANNELS_HELP}, got {channels!r}")
        return _unique(_list_index(c, "channels") for c in channels)
    found: list[int] = []
    for part in channels.split(","):
        if not part.strip():
            raise ValueError(f"channels must be {CHANNELS_HELP}, got {channels!r}")
        low, dash, high = part.partition("-")
        first = whole_number(low, "channels")
        last = whole_number(high, "channels") if dash else first
        if last < first:
            raise ValueError(f"channels: the range {part.strip()!r} runs backwards")
        found.extend(range(first, last + 1))
    return _unique(found)


def _list_index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: {value!r} is not a whole number >= 0")
    return value


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))


def parse_position(position: Any) -> list[int]:
    """`[y, x]` on a layer's grid from `"Y,X"` or a pair."""
    if isinstance(position, str):
        parts = position.split(",")
        if len(parts) == 2:
            return [whole_number(p, "position") for p in parts]
    elif isinstance(position, (list, tuple)) and len(position) == 2:
        return [_list_index(p, "position") for p in position]
    raise ValueError(f"position must be Y,X on the layer's grid, got {position!r}")


def top_activations_fields(layer: str, channels: Any, k: int | None = None) -> dict[str, Any]:
    """The fields of a `top_activations` job (its `methods` are the job's methods)."""
    if not isinstance(layer, str) or not layer:
        raise ValueError("a top_activations job needs a layer: a module name of the model")
    return {"kind": TOP_ACTIVATIONS, "layer": layer, "channels": parse_channels(channels),
            "k": k}


def objective(class_index: int | None = None, layer: str | None = None,
              channel: int | None = None, position: Any = None) -> dict[str, Any]:
    """A visualize objective: a class (`{"class": k}`), or a layer's channel (with
    `position`, one neuron of it)."""
    if class_index is not None:
        if layer is not None or channel is not None or position is not None:
            raise ValueError("an objective is a class, or a layer's channel: not both")
        return {"class": class_index}
    if layer is None or channel is None:
        raise ValueError("an objective needs a class, or a layer and a channel")
    out: dict[str, Any] = {"layer": layer, "channel": channel}
    if position is not None:
        out["position"] = parse_position(position)
    return out


def visualize_fields(objectives: list[dict[str, Any]] | dict[str, Any], *,
                     steps: int | None = None, size: int | None = None,
                     parametrization: str | None = None, lr: float | None = None,
                     starts: int | None = None,
                     regularizers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields of a `visualize` job: one objective, or a list (one item per objective ×
    start). Regularizers left out take the service's defaults, key by key."""
    if isinstance(objectives, list) and len(objectives) == 1:
        objectives = objectives[0]
    if not objectives:
        raise ValueError("a visualize job needs an objective")
    if parametrization is not None and parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, "
                         f"got {parametrization!r}")
    regs = dict(regularizers or {})
    if parametrization is not None:
        regs["parametrization"] = parametrization
    return {"kind": VISUALIZE, "objective": objectives, "steps": steps, "size": size,
            "lr": lr, "starts": starts, "regularizers": regs or None}

"""One forward pass of a blank image through a hooked copy of a model: what its layers output.

The copy is of the module tree only: it shares the model's parameters and buffers, so it
costs no memory for weights, and hooks go on the copy, never on the model (which may be an
engine's, shared by threads). `model_layers` lists every module with its output's shape
and layout (`worker.engine.layers`), and the default Grad-CAM layer: what a model's record keeps.
`layer_shapes` lists the (C, H, W) of the modules whose output is read as a grid of
channels, which the API checks a job's layer and channels against.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import torch
from torch import nn

from shared.errors import TargetError
from shared.spec.layers import ModelLayers
from shared.spec.top_activations import nearest_hint
from worker.engine.core import Engine
from worker.engine.layers import read_layers
from worker.engine.layouts import Finished, LayoutTrace

InputSize = int | tuple[int, int]


def model_of(engine_or_model: Engine | nn.Module) -> nn.Module:
    """The module to probe: an engine's private copy, or the model itself."""
    return engine_or_model.model if isinstance(engine_or_model, Engine) else engine_or_model


def grid_size(input_size: InputSize) -> tuple[int, int]:
    """`(height, width)` of a square `int` or an explicit pair."""
    if isinstance(input_size, int):
        return input_size, input_size
    height, width = input_size
    return int(height), int(width)


def structural_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the module tree that shares the model's tensors (no weights copied)."""
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, shared).eval()


def blank_input(model: nn.Module, input_size: InputSize, in_channels: int = 3,
                rows: int = 1) -> torch.Tensor:
    """A rows×C×H×W zero batch on the model's device: shapes and structure do not need
    pixels."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    return torch.zeros(rows, in_channels, *grid_size(input_size), device=device)


def run_hooked(
    model: nn.Module,
    x: torch.Tensor,
    hooks: dict[str, Callable[[Finished], None]],
    context: AbstractContextManager[Any] | None = None,
) -> None:
    """Run a structural copy of `model` on `x` (no gradients) inside `context`, calling
    `hooks[name]` with the call (`Finished`) each time the module `name` returns."""
    probe = structural_copy(model)
    modules = dict(probe.named_modules())
    unknown = [name for name in hooks if not name or name not in modules]
    if unknown:
        raise TargetError(
            f"layer: no module named {unknown[0]!r} in this model; "
            f"{nearest_hint(unknown[0], [n for n in modules if n])}"
        )
    with ExitStack() as stack:
        for name, hook in hooks.items():
            handle = modules[name].register_forward_hook(
                lambda module, args, output, name=name, hook=hook: hook(
                    Finished(name, module, args[0] if args else None, output))
            )
            stack.callback(handle.remove)
        with torch.no_grad(), context or nullcontext():
            probe(x)


def model_layers(
    engine_or_model: Engine | nn.Module, input_size: InputSize, in_channels: int = 3
) -> ModelLayers:
    """Every module's output shape and layout, and the default Grad-CAM layer, at this
    input size (an engine's are read once, and kept)."""
    if isinstance(engine_or_model, Engine):
        return engine_or_model.layers(blank_input(engine_or_model.model, input_size,
                                                  in_channels))
    x = blank_input(engine_or_model, input_size, in_channels, rows=2)  # see Engine.layers
    trace = LayoutTrace(x)
    run_hooked(engine_or_model, x, {name: trace.finished for name, _
                                    in engine_or_model.named_modules() if name}, trace)
    return read_layers(trace, engine_or_model)


def layer_shapes(
    engine_or_model: Engine | nn.Module, input_size: InputSize, in_channels: int = 3
) -> dict[str, tuple[int, int, int]]:
    """`{name: (C, H, W)}` of every module that runs once and outputs a grid of channels.

    Only outputs whose layout is established (`worker.engine.layers`): N×C×H×W, N×H×W×C or
    tokens, read on their grid; an attention tensor is not one. A module that runs more
    than once per forward pass (one ReLU reused) has no single output, and is left out; so
    are modules that do not run.
    """
    return model_layers(engine_or_model, input_size, in_channels).shapes

"""Which layers of a model have a max-pooling on their path, read from the autograd graph.

DeconvNet passes a signal back through each rectifier whatever the image was (max(g, 0)):
its projection of a unit follows the image through max-pooling's switches (Zeiler & Fergus
2014, §2.1), and, without them, barely or not at all. So a `top_activations` job projects by
DeconvNet by default only where a max-pooling precedes the layer. "Precedes" is read as
coverage reads rectifiers (`worker.engine.overrides`): from the autograd graph one forward pass
records, any max-pool node the layer's output depends on, whether a module made it, a
functional call (`F.max_pool2d`, `F.adaptive_max_pool2d`, `F.max_pool1d`) or an op (`amax`,
`max` over a dimension, a global `max`), whatever the module tree says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from worker.engine.probe import InputSize, blank_input, structural_copy

# Autograd's nodes of max-pooling: MaxPool2DWithIndicesBackward0, MaxPool3DWithIndices…,
# AdaptiveMaxPool2DBackward0, FractionalMaxPool2DBackward0, AmaxBackward0, MaxBackward0/1.
_MAX_POOL = re.compile(r"(\w*MaxPool\w*|Amax|Max)Backward\d*")


def is_max_pool(node: Any) -> bool:
    """Whether an autograd node is a max-pooling (module, functional call or op)."""
    return _MAX_POOL.fullmatch(type(node).__name__) is not None


def pooled_nodes(roots: Iterable[Any]) -> dict[Any, bool]:
    """For every node of the graph behind `roots`, whether a max-pool node is at or behind it.

    One depth-first walk (iterative: graphs are deeper than Python's recursion), each node
    settled once, after its inputs.
    """
    settled: dict[Any, bool] = {}
    opened: set[Any] = set()
    stack: list[tuple[Any, bool]] = [(root, False) for root in roots if root is not None]
    while stack:
        node, inputs_settled = stack.pop()
        inputs = [fn for fn, _ in node.next_functions if fn is not None]
        if inputs_settled:
            settled[node] = is_max_pool(node) or any(settled[fn] for fn in inputs)
            continue
        if node in opened:
            continue
        opened.add(node)
        stack.append((node, True))
        stack.extend((fn, False) for fn in inputs if fn not in opened)
    return settled


def max_pool_before(model: nn.Module, input_size: InputSize, in_channels: int = 3
                    ) -> dict[str, bool]:
    """`{name: whether its output depends on a max-pooling}` for every module that runs in a
    forward pass of a blank input (with gradients, through a structural copy, so the model
    is never hooked). A module that runs several times counts if any of its runs does."""
    probe = structural_copy(model)
    roots: dict[str, list[Any]] = {}

    def hook(name: str):
        def keep(module: nn.Module, args: Any, output: Any) -> None:
            # The node now: an in-place operation later gives the tensor another one.
            roots.setdefault(name, []).extend(
                leaf.grad_fn for leaf in tree_leaves(output)
                if isinstance(leaf, torch.Tensor) and leaf.grad_fn is not None)
        return keep

    x = blank_input(model, input_size, in_channels).requires_grad_(True)
    with ExitStack() as stack:
        for name, module in probe.named_modules():
            if name:
                stack.callback(module.register_forward_hook(hook(name)).remove)
        with torch.enable_grad():
            probe(x)
    pooled = pooled_nodes(node for nodes in roots.values() for node in nodes)
    return {name: any(pooled[node] for node in nodes) for name, nodes in roots.items()}

"""Walking the autograd graph behind a pass's outputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def nodes_behind(outputs: list[torch.Tensor]) -> Iterator[Any]:
    """Each autograd node the `outputs` depend on, once (depth first)."""
    seen: set[Any] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(fn for fn, _ in node.next_functions if fn is not None and fn not in seen)

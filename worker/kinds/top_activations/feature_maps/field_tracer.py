"""Following a forward pass at the aten level: which input pixels each tensor depends on.

`FieldTracer` is a dispatch mode that sees every aten operation of one forward pass. For
each tensor whose last two dimensions are a spatial grid it keeps, per grid row, the input
rows `[lo, hi)` the row depends on, and per grid column the input columns (the receptive
fields of convolutional networks are boxes, so rows and columns can be followed apart).
Convolutions and poolings take the union over their windows, with the padding excluded (so
a box is clipped to the image); element-wise operations take the union over their operands;
a reduction over the grid depends on all of it. An operation without a rule that yields a
spatial tensor marks it unknown (`Field.problem`), and so everything computed from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten
_NONE = np.array([[2**62, -(2**62)]])  # the empty interval: neutral for the union


@dataclass(frozen=True)
class Field:
    """Per grid row and column the input interval `[lo, hi)` it depends on (L×2 arrays).

    Tensors that are not spatial (fewer than 3 dims) keep one interval per axis: the hull of
    all they depend on. `problem` names why the field is unknown, if it is.
    """

    rows: np.ndarray
    cols: np.ndarray
    problem: str | None = None


def _hull(field: Field) -> Field:
    def one(lohi: np.ndarray) -> np.ndarray:
        return np.array([[lohi[:, 0].min(), lohi[:, 1].max()]])

    return Field(one(field.rows), one(field.cols), field.problem)


def _unknown(problem: str) -> Field:
    return Field(_NONE, _NONE, problem)


def _axis_union(arrays: Sequence[np.ndarray], length: int) -> np.ndarray:
    """The union of interval arrays along one axis of `length` (length-1 arrays broadcast)."""
    stacked = np.stack([np.broadcast_to(a, (length, 2)) for a in arrays])
    return np.stack([stacked[..., 0].min(axis=0), stacked[..., 1].max(axis=0)], axis=1)


def _union(fields: Sequence[Field], height: int, width: int) -> Field:
    """The element-wise union of fields broadcast to one grid (length-1 axes broadcast)."""
    problems = [f.problem for f in fields if f.problem]
    if problems:
        return _unknown(problems[0])
    return Field(_axis_union([f.rows for f in fields], height),
                 _axis_union([f.cols for f in fields], width))


def _pixels(length: int) -> np.ndarray:
    """The input's own field along one axis: position i depends on pixel i."""
    return np.stack([np.arange(length), np.arange(length) + 1], axis=1)


def _gather(lohi: np.ndarray, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per output position, the union of the input intervals at `index[o][valid[o]]`."""
    safe = np.clip(index, 0, len(lohi) - 1)
    lo = np.where(valid, lohi[safe, 0], _NONE[0, 0]).min(axis=1)
    hi = np.where(valid, lohi[safe, 1], _NONE[0, 1]).max(axis=1)
    return np.stack([lo, hi], axis=1)


def _window(lohi: np.ndarray, out_len: int, kernel: int, stride: int, padding: int,
            dilation: int) -> np.ndarray:
    """A convolution or pooling along one axis: padded positions depend on nothing."""
    index = (np.arange(out_len)[:, None] * stride - padding
             + np.arange(kernel)[None, :] * dilation)
    return _gather(lohi, index, (index >= 0) & (index < len(lohi)))


def _adaptive(lohi: np.ndarray, out_len: int) -> np.ndarray:
    """Adaptive pooling along one axis: bin o covers [floor(o·L/n), ceil((o+1)·L/n))."""
    length = len(lohi)
    starts = (np.arange(out_len) * length) // out_len
    ends = -((-(np.arange(out_len) + 1) * length) // out_len)
    index = starts[:, None] + np.arange(int((ends - starts).max()))[None, :]
    return _gather(lohi, index, index < ends[:, None])


def _pair(value: Any, default: Sequence[int] | None = None) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = list(value) or list(default or ())
    return (int(value[0]), int(value[-1])) if value else (0, 0)


def _bind(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The op's arguments by name, defaults filled in from its schema."""
    bound: dict[str, Any] = {}
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
    return bound


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in an op's arguments or results (tensors, lists, tuples, dicts of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _spatial(tensor: torch.Tensor) -> bool:
    return tensor.dim() >= 3


def _grid_dims(dims: Any, ndim: int) -> set[int]:
    """Which of the last two (grid) dims a `dim` argument names; None or [] means all."""
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        return {0, 1}
    dims = [dims] if isinstance(dims, int) else list(dims)
    return {d % ndim - (ndim - 2) for d in dims} & {0, 1}


def _mix(field: Field, axes: set[int]) -> Field:
    """Every position along `axes` (0: rows, 1: columns) depends on the whole axis."""
    hull = _hull(field)
    rows = np.broadcast_to(hull.rows, field.rows.shape) if 0 in axes else field.rows
    cols = np.broadcast_to(hull.cols, field.cols.shape) if 1 in axes else field.cols
    return Field(rows, cols, field.problem)


_POOLS = {aten.max_pool2d_with_indices.default, aten.max_pool2d.default,
          aten.avg_pool2d.default}
_ADAPTIVE = {aten._adaptive_avg_pool2d.default, aten.adaptive_max_pool2d.default,
             aten.adaptive_avg_pool2d.default}
# Reshapes that keep the elements' row-major order: equal trailing sizes keep the grid.
_RESHAPES = {"view", "_unsafe_view", "reshape", "_reshape_alias", "unsqueeze", "squeeze",
             "flatten", "unflatten", "alias", "detach", "lift_fresh", "view_copy", "expand",
             "contiguous", "clone", "_to_copy", "dropout", "native_dropout", "lift_fresh_copy"}
# Per-channel normalizations (each device has its own batch norm op) and the activations
# whose aten ops carry no `pointwise` tag.
_PER_POSITION = {"native_batch_norm", "_native_batch_norm_legit_no_training",
                 "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
                 "_batch_norm_no_update", "_batch_norm_with_update", "cudnn_batch_norm",
                 "miopen_batch_norm", "hardswish", "hardswish_"}
_MIXING = {"native_group_norm", "native_layer_norm", "_softmax", "_log_softmax", "softmax",
           "log_softmax", "cumsum"}


def _is_pointwise(func: Any) -> bool:
    if torch.Tag.pointwise in func.tags:
        return True
    name = func.overloadpacket.__name__
    if torch.Tag.inplace in func.tags and name.endswith("_"):  # relu_: ask relu
        twin = getattr(aten, name[:-1], None)
        overload = getattr(twin, func._overloadname, None) if twin is not None else None
        return overload is not None and torch.Tag.pointwise in overload.tags
    return False


class FieldTracer(TorchDispatchMode):
    """Follows one forward pass and keeps the receptive field of every tensor it derives
    from the traced input (tensors made from the weights alone have none)."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.fields[x] = Field(_pixels(x.shape[-2]), _pixels(x.shape[-1]))

    def field(self, tensor: torch.Tensor) -> Field | None:
        return self.fields.get(tensor)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        operands = [t for t in _tensors((args, kwargs)) if t in self.fields]
        if not operands:
            return out
        outputs = _tensors(out)
        mutated = [a for a, arg in zip(args, func._schema.arguments, strict=False)
                   if isinstance(a, torch.Tensor) and arg.alias_info is not None
                   and arg.alias_info.is_write]
        for tensor in mutated:
            if tensor._is_view() and tensor._base in self.fields:
                self.fields[tensor._base] = _unknown(
                    f"{func} writes into a view of a tensor, which is not followed"
                )
        for tensor in {id(t): t for t in [*outputs, *mutated]}.values():
            self.fields[tensor] = self._fit(self._rule(func, args, kwargs, tensor, operands),
                                            tensor, func)
        return out

    def _fit(self, field: Field, tensor: torch.Tensor, func: Any) -> Field:
        """The field as the tensor's shape holds it, or unknown if the rule does not fit."""
        if field.problem:
            return field
        if not _spatial(tensor):
            return _hull(field)
        height, width = tensor.shape[-2:]
        if field.rows.shape == (height, 2) and field.cols.shape == (width, 2):
            return field
        if height == width == 1:  # a 1×1 grid depends on everything its operands do
            return _hull(field)
        return _unknown(f"no rule carries the grid through {func} "
                        f"(output shape {list(tensor.shape)})")

    def _rule(self, func: Any, args: tuple, kwargs: dict, out: torch.Tensor,
              operands: list[torch.Tensor]) -> Field:
        """The field of `out`, an output of `func` on tensors of which `operands` have one."""
        fields = [self.fields[t] for t in operands]
        name = func.overloadpacket.__name__
        if not _spatial(out) or out.shape[-2:] == (1, 1):
            return _union([_hull(f) for f in fields], 1, 1)
        height, width = out.shape[-2:]
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if func is aten.convolution.default:
            return self._convolution(_bind(func, args, kwargs), out)
        if func in _POOLS:
            return self._pool(_bind(func, args, kwargs), out)
        if func in _ADAPTIVE:
            field = self.fields[args[0]]
            return Field(_adaptive(field.rows, height), _adaptive(field.cols, width),
                         field.problem)
        if name == "constant_pad_nd":
            return self._pad(self.fields[args[0]], _bind(func, args, kwargs)["pad"], out)
        if name == "cat":
            return self._cat(_bind(func, args, kwargs), out)
        if name in ("permute", "transpose", "t", "slice", "select"):
            return self._index(name, _bind(func, args, kwargs), out)
        if name == "expand" and source is not None and source in self.fields:
            return _union([self.fields[source]], height, width)
        if name in _RESHAPES and source is not None and source in self.fields:
            if _spatial(source) and source.shape[-2:] == out.shape[-2:]:
                return self.fields[source]
            return _unknown(f"{func} reshapes {list(source.shape)} into {list(out.shape)}")
        if name in _MIXING or torch.Tag.reduction in func.tags:
            return self._reduction(func, args, kwargs, out, fields)
        if _is_pointwise(func) or name in _PER_POSITION or name == "copy_":
            return _union(fields, height, width)
        return _unknown(f"{func} has no receptive-field rule")

    def _convolution(self, bound: dict[str, Any], out: torch.Tensor) -> Field:
        field = self.fields[bound["input"]]
        if bound["transposed"] or bound["input"].dim() != 4:
            return _unknown("only 2-D, non-transposed convolutions are followed")
        kernel = bound["weight"].shape[-2:]
        stride, padding = _pair(bound["stride"]), _pair(bound["padding"])
        dilation = _pair(bound["dilation"])
        return Field(
            _window(field.rows, out.shape[-2], kernel[0], stride[0], padding[0], dilation[0]),
            _window(field.cols, out.shape[-1], kernel[1], stride[1], padding[1], dilation[1]),
            field.problem,
        )

    def _pool(self, bound: dict[str, Any], out: torch.Tensor) -> Field:
        field = self.fields[bound["self"]]
        kernel = _pair(bound["kernel_size"])
        stride = _pair(bound["stride"], default=kernel)
        padding, dilation = _pair(bound["padding"]), _pair(bound.get("dilation", 1))
        return Field(
            _window(field.rows, out.shape[-2], kernel[0], stride[0], padding[0], dilation[0]),
            _window(field.cols, out.shape[-1], kernel[1], stride[1], padding[1], dilation[1]),
            field.problem,
        )

    def _pad(self, field: Field, pad: Sequence[int], out: torch.Tensor) -> Field:
        """`F.pad`: `pad` is (left, right, top, bottom, …) from the last dim; negative crops."""
        pad = list(pad) + [0] * (4 - len(pad))

        def axis(lohi: np.ndarray, before: int, after: int) -> np.ndarray:
            index = np.arange(len(lohi) + before + after) - before
            return _gather(lohi, index[:, None], ((index >= 0) & (index < len(lohi)))[:, None])

        return Field(axis(field.rows, pad[2], pad[3]), axis(field.cols, pad[0], pad[1]),
                     field.problem)

    def _cat(self, bound: dict[str, Any], out: torch.Tensor) -> Field:
        tensors = bound["tensors"]
        height, width = out.shape[-2:]
        grid = _grid_dims(bound["dim"], out.dim())
        if not grid:  # along batch or channels: every position unites its inputs'
            return _union([self.fields[t] for t in tensors if t in self.fields], height, width)
        # Along a grid axis: that axis is the inputs' axes end to end (an input with no
        # field depends on nothing), the other axis unites them.
        parts = [self.fields.get(t) or Field(np.repeat(_NONE, t.shape[-2], 0),
                                             np.repeat(_NONE, t.shape[-1], 0))
                 for t in tensors]
        problems = [p.problem for p in parts if p.problem]
        if problems:
            return _unknown(problems[0])
        if 0 in grid:
            return Field(np.concatenate([p.rows for p in parts]),
                         _axis_union([p.cols for p in parts], width))
        return Field(_axis_union([p.rows for p in parts], height),
                     np.concatenate([p.cols for p in parts]))

    def _index(self, name: str, bound: dict[str, Any], out: torch.Tensor) -> Field:
        """Permutes, transposes, slices and selections: followed when the grid stays last."""
        source = bound["self"]
        field = self.fields[source]
        ndim = source.dim()
        if name == "slice":
            grid = _grid_dims(bound["dim"], ndim)
            if not grid:
                return field
            step = bound["step"]
            start = 0 if bound["start"] is None else bound["start"]
            end = source.shape[bound["dim"]] if bound["end"] is None else bound["end"]
            pick = slice(*slice(start, end, step).indices(source.shape[bound["dim"]]))
            if 0 in grid:
                return Field(field.rows[pick], field.cols, field.problem)
            return Field(field.rows, field.cols[pick], field.problem)
        if name == "select":
            if _grid_dims(bound["dim"], ndim):
                return _unknown(f"selecting along a grid dim of {list(source.shape)}")
            return field if out.shape[-2:] == source.shape[-2:] else _unknown(
                f"select leaves no grid in {list(out.shape)}")
        if name == "t":
            return _unknown("t() of a spatial tensor")
        dims = (list(bound["dims"]) if name == "permute"
                else self._swap(ndim, bound["dim0"], bound["dim1"]))
        if [d % ndim for d in dims[-2:]] == [ndim - 2, ndim - 1]:
            return field
        # Rows stand for input rows: a grid turned on its side (or moved) is not followed.
        return _unknown(f"{name} moves the grid of {list(source.shape)} off the last two dims")

    @staticmethod
    def _swap(ndim: int, dim0: int, dim1: int) -> list[int]:
        dims = list(range(ndim))
        dims[dim0 % ndim], dims[dim1 % ndim] = dims[dim1 % ndim], dims[dim0 % ndim]
        return dims

    def _reduction(self, func: Any, args: tuple, kwargs: dict, out: torch.Tensor,
                   fields: list[Field]) -> Field:
        """Reductions and normalizations: positions along a reduced grid axis see it all."""
        bound = _bind(func, args, kwargs)
        source = args[0]
        name = func.overloadpacket.__name__
        if name == "native_group_norm":
            axes = {0, 1}
        elif name == "native_layer_norm":
            axes = _grid_dims(list(range(-len(bound["normalized_shape"]), 0)), source.dim())
        else:
            axes = _grid_dims(bound.get("dim"), source.dim())
        if source.shape[-2:] != out.shape[-2:]:
            return _unknown(f"{func} reduces {list(source.shape)} to {list(out.shape)}")
        return _mix(_union(fields, *out.shape[-2:]), axes)

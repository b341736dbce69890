"""A model's layers, their layouts and its default Grad-CAM layer, read from one forward pass.

A `worker.engine.layouts.LayoutTrace` of a forward pass lists every named module in the order it
returned, and which outputs are established N×C×H×W maps; `read_layers` reads each output's
layout (`shared.spec.layers`): N×C×H×W when established; N×H×W×C when its second and third
dimensions are a grid of the input (⌊H/r⌋×⌊W/r⌋ or ⌈H/r⌉×⌈W/r⌉ for a stride r) and its
second and fourth are not; tokens when its second dimension is a token sequence of the model
(`worker.engine.tokens`: prefix tokens and a grid, declared or inferred). Anything else has no
layout, with the reason: a layer is never read in a layout it was not found in.

**The default Grad-CAM layer.** In a classifier the path to the logits ends in a head: a
global pooling (or the class token's selection) and what follows it, with no grid left.
Modules return in order, so the last output that still has a grid is the last one before
that head. When it is an N×C×H×W map (the model's last stage is convolutional), the default
is the last such map returned by a module that runs once, not a pooling module's output (the
block, not the pooling after it), and not an `Identity`, dropout or padding passing its
input on.
Otherwise the last stage is a transformer: the default is the input of its last attention,
the output of the normalization its last attention block applies before the attention
(`blocks.<last>.norm1`), the layer pytorch-grad-cam documents for ViT and Swin: after the
last attention the patch tokens no longer reach a class token, so later layers would give a
map of zeros. Without such a normalization (LeViT), or without attention (MLP-Mixer), the
last output read in a layout is the default. The stem or patch embedding (what runs before
the model's first block) is never chosen: when nothing else qualifies there is no default,
and the error lists the layers one may name. Per family, at 64 px:

- ResNet, ResNeXt, Wide ResNet: `layer4`;
- VGG: the last ReLU of `features` (`features.19` for vgg11), before the last max-pool;
- torchvision MobileNet-v2/v3, DenseNet, EfficientNet: `features`;
- timm EfficientNet-Lite and MobileNet-v2 (the built-in model): `bn2` (the head
  convolution's BatchNorm and ReLU6);
- timm MobileNet-v3/v4 and GhostNet: `blocks` (their head convolution runs after the pooling);
- timm ConvNeXt, ConvNeXt-V2, PoolFormer, CAFormer: `stages`;
- timm ViT, DeiT, BEiT, EVA: `blocks.<last>.norm1`; Swin: `layers.<last>.blocks.<last>.norm1`;
- transformers ViT, DeiT, BEiT: `<model>.layers.<last>.layernorm_before`;
- LeViT: its last stage with a grid (`stages.1` at 64 px).

A last stage of 1×1 (resnet18's `layer4` at 32 px) has no grid, and the stage before it is
chosen.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from shared.errors import UnsupportedModelError
from shared.spec.layers import NCHW, NHWC, TOKENS, Layer, Layout, ModelLayers
from worker.engine.layouts import Finished, LayoutTrace, is_pooling
from worker.engine.tokens import declared_grid, declared_prefix, input_grids, token_grid

_PADDING = nn.modules.padding
_PASS_ON = (nn.Identity, nn.modules.dropout._DropoutNd, _PADDING._ConstantPadNd,
            _PADDING._ReflectionPadNd, _PADDING._ReplicationPadNd, _PADDING._CircularPadNd)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_BLOCK_LEAVES = 3  # a block has at least this many submodules with weights of their own


def _is_grid(size: tuple[int, int], shape: tuple[int, int]) -> bool:
    return shape in input_grids(size, shape[0] * shape[1])


def _layout(out: torch.Tensor, trace: LayoutTrace, model: nn.Module
            ) -> tuple[Layout | None, str | None]:
    """The layout of one module output, or None and why not."""
    shape = tuple(out.shape)
    if trace.is_nchw(out):
        return Layout(NCHW, shape[1], (shape[2], shape[3])), None
    if out.dim() not in (3, 4):
        return None, f"a {out.dim()}-D output has no grid"
    if shape[0] != trace.batch:
        return None, (f"its first dimension ({shape[0]}) is not the batch ({trace.batch}): "
                      "windows or heads, not one grid per image")
    size = trace.size
    if out.dim() == 4:
        h, w, c = shape[1:]
        if _is_grid(size, (h, w)) and c not in (h, w) and not _is_grid(size, shape[2:]):
            return Layout(NHWC, c, (h, w)), None
        return None, ("neither established as N×C×H×W nor N×H×W×C over a grid of the "
                      f"{size[0]}×{size[1]} input (an attention tensor or windows)")
    tokens, channels = shape[1:]
    grid = declared_grid(model, size)
    sequences = () if grid is None else (grid[0] * grid[1],
                                         declared_prefix(model) + grid[0] * grid[1])
    # N×C×tokens when the last dimension is a token sequence of the model and the second is
    # not one too: a width that happens to equal the patch count (64 channels over an 8×8
    # grid) leaves N×(P + H·W)×C read as tokens.
    if channels in sequences and (tokens not in sequences or tokens == channels):
        return None, ("its last dimension is the token sequence (N×C×tokens): a "
                      "token-mixing layer, not tokens")
    try:
        found = token_grid(model, size, tokens)
    except UnsupportedModelError as e:
        return None, e.message
    if found.grid[0] * found.grid[1] < 2:
        return None, "a single token has no grid"
    return Layout(TOKENS, channels, found.grid, found.prefix), None


def _first_block(model: nn.Module) -> str | None:
    """The first block of the model's body: the first child, of the class most repeated, of
    the first container holding two blocks (modules with weights in several submodules) of
    one class; None if there is none."""
    def is_block(module: nn.Module) -> bool:
        return sum(1 for m in module.modules()
                   if any(True for _ in m.parameters(recurse=False))) >= _BLOCK_LEAVES

    for name, module in model.named_modules():
        if not isinstance(module, _CONTAINERS):
            continue
        children = [(n, type(c)) for n, c in module.named_children() if is_block(c)]
        counts = Counter(cls for _, cls in children)
        if counts and max(counts.values()) >= 2:
            most = counts.most_common(1)[0][0]
            first = next(n for n, cls in children if cls is most)
            return f"{name}.{first}" if name else first
    return None


def _inside(name: str, parent: str) -> bool:
    return name == parent or name.startswith(parent + ".") or not parent


def _ancestors(name: str) -> list[str]:
    """`name` and the modules it is inside, innermost first (the model itself excluded)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _is_norm(module: nn.Module) -> bool:
    kind = type(module).__name__
    return (isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm))
            or "LayerNorm" in kind or "RmsNorm" in kind or "RMSNorm" in kind)


def _is_attention(module: nn.Module) -> bool:
    kind = type(module).__name__
    return ("Attention" in kind or "Attn" in kind) and not is_pooling(module)


class _Reader:
    """The calls of one traced pass, with each module's layer, for the default layer's rules."""

    def __init__(self, trace: LayoutTrace, model: nn.Module) -> None:
        self.calls = trace.calls
        self.runs = Counter(call.name for call in self.calls)
        self.modules = dict(model.named_modules())
        self.layers: dict[str, Layer] = {}
        for call in self.calls:
            if call.name not in self.layers:
                self.layers[call.name] = self._layer(call, trace, model)
        for name, _ in model.named_modules():
            if name and name not in self.layers:
                self.layers[name] = Layer(type(self.modules[name]).__name__, None, 0,
                                          problem="it does not run")
        self.items = {f"{name}.{child}" if name else child
                      for name, module in model.named_modules()
                      if isinstance(module, _CONTAINERS) for child, _ in module.named_children()}
        block = _first_block(model)
        self.body = next((i for i, call in enumerate(self.calls)
                          if block is not None and _inside(call.name, block)), 0)

    def _layer(self, call: Finished, trace: LayoutTrace, model: nn.Module) -> Layer:
        out, runs, kind = call.output, self.runs[call.name], type(call.module).__name__
        if not isinstance(out, torch.Tensor):
            return Layer(kind, None, runs, problem="it does not output one tensor")
        shape = tuple(out.shape[1:])
        if runs > 1:
            return Layer(kind, shape, runs, problem=f"it runs {runs} times in a forward pass, "
                                                    "so it has no single output")
        layout, problem = _layout(out, trace, model)
        return Layer(kind, shape, runs, layout, problem)

    def eligible(self, i: int) -> bool:
        """Whether call `i` may be the default: once-run, with a grid, past the stem, and
        not a pooling, an `Identity`, a dropout or a padding passing its input on."""
        call = self.calls[i]
        return (i >= self.body and self.layers[call.name].has_grid
                and not is_pooling(call.module) and not isinstance(call.module, _PASS_ON))

    def in_attention(self, i: int) -> bool:
        """Whether call `i` is of a module inside an attention (its projections)."""
        return any(_is_attention(self.modules[name])
                   for name in _ancestors(self.calls[i].name)[1:])

    def before_last_attention(self) -> int | None:
        """The call of the normalization the block of the last attention applies before
        the attention, or None. The attention is the innermost module named so (timm's
        `ClassAttn` inside CaiT's `LayerScaleBlockClassAttn`); its block is its ancestor
        that is an item of a container (`blocks.11`, `layers.3.blocks.1`)."""
        attentions = [i for i, call in enumerate(self.calls) if _is_attention(call.module)]
        if not attentions:
            return None
        last = attentions[-1]
        inner = [i for i in attentions if i < last
                 and _inside(self.calls[i].name, self.calls[last].name)]
        while inner:
            last = inner[-1]
            inner = [i for i in inner if i < last
                     and _inside(self.calls[i].name, self.calls[last].name)]
        attention = self.calls[last].name
        block = next((name for name in _ancestors(attention) if name in self.items),
                     attention.rpartition(".")[0])
        start = next(i for i, call in enumerate(self.calls) if _inside(call.name, attention))
        for i in range(start - 1, -1, -1):
            call = self.calls[i]
            if _inside(call.name, block) and _is_norm(call.module) and self.eligible(i):
                return i
        return None


def _grid(out: torch.Tensor, layout: Layout | None) -> bool:
    """Whether an output still carries the image's grid: a layout with more than one cell,
    or (no layout) two dimensions besides the batch longer than one."""
    if layout is not None:
        return layout.cells > 1
    return out.dim() >= 3 and sum(size > 1 for size in out.shape[1:]) >= 2


def read_layers(trace: LayoutTrace, model: nn.Module) -> ModelLayers:
    """Every module's output and layout, and the default Grad-CAM layer, of a traced pass
    of `model` (the model traced, or a copy of it)."""
    reader = _Reader(trace, model)
    calls, layers = reader.calls, reader.layers
    pooled: set[int] = set()  # ids of pooling outputs (alive: `calls` holds them)
    last_map = last_read = None  # the last eligible N×C×H×W map; output of any layout
    last_other = last_unknown = None  # the last grid not N×C×H×W; in no layout at all
    for i, call in enumerate(calls):
        out, layer = call.output, layers[call.name]
        if not isinstance(out, torch.Tensor):
            continue
        if trace.is_nchw(out) and (is_pooling(call.module) or id(out) in pooled):
            pooled.add(id(out))
            continue
        layout = layer.layout if layer.runs == 1 else _layout(out, trace, model)[0]
        if not _grid(out, layout):
            continue
        if layout is None or layout.kind != NCHW:
            last_other = i
        if layout is None:
            last_unknown = i
        if reader.eligible(i) and not reader.in_attention(i):
            last_read = i
            if layout.kind == NCHW:
                last_map = i
    found = ModelLayers(layers, trace.size)
    if last_map is not None and (last_other is None or last_other < last_map):
        return ModelLayers(layers, trace.size, calls[last_map].name)
    chosen = reader.before_last_attention()
    if chosen is None and last_read is not None and (last_unknown is None
                                                     or last_unknown < last_read):
        chosen = last_read
    if chosen is not None:
        return ModelLayers(layers, trace.size, calls[chosen].name)
    if last_unknown is None:
        return ModelLayers(layers, trace.size, problem=(
            "found no layer past the stem whose output has a grid of more than one cell "
            "before the global pooling; name the layer with the method's `layer` parameter "
            f"({found.hint()})"))
    after = calls[last_unknown]
    why = layers[after.name].problem or "it runs more than once"
    return ModelLayers(layers, trace.size, problem=(
        f"no default layer: the layer {after.name!r} (output {list(after.output.shape)}) "
        f"still carries the image's grid but is not read as a grid of channels ({why}); "
        f"name the layer with the method's `layer` parameter ({found.hint()})"))

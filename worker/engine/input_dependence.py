"""Whether DeconvNet's map can depend on the input at all, read from the autograd graph.

DeconvNet's rectifier rule, max(g, 0), ignores the forward pass (so does its gated rule).
Its map can then depend on the input only through some other backward step that reads the
forward pass: max-pooling's switches, a product of two input-dependent tensors
(squeeze-and-excitation, attention), a non-linearity, a normalization computed from the
input. When every node between the target and the input is linear with fixed coefficients —
convolutions and linear layers (weights frozen), eval-mode BatchNorm, sums, average pooling,
reshapes, DeconvNet's own rectifiers and gated units — the backward pass is one fixed linear
map of the target's one-hot seed: every image gets the same map for the same target.
EfficientNet-Lite0 is such a model.

Unknown node types count as input-dependent, so the warning is never given wrongly; at worst
it is missed.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from worker.engine.graph import nodes_behind

NO_INPUT_DEPENDENCE = (
    "deconvnet: this model's backward path has no input-dependent operation (no max-pooling "
    "switches, no multiplicative gating), so DeconvNet's map depends only on the target, not "
    "on the image"
)

# Linear in their one input that depends on the image (weights are frozen constants).
_LINEAR_IN_ONE = {"Convolution", "Addmm", "Mm", "Bmm", "Mv", "Mul", "Div", "Linear"}
# Linear whatever the number of inputs: sums, moves and copies, average pooling, resampling.
_STRUCTURAL = {
    "Add", "Sub", "Neg", "Sum", "Mean", "View", "Reshape", "ReshapeAlias", "UnsafeView",
    "Permute", "Transpose", "T", "Expand", "Squeeze", "Unsqueeze", "Cat", "Stack", "Slice",
    "Select", "Split", "SplitWithSizes", "Unbind", "Clone", "ToCopy", "Alias", "AsStrided",
    "Flip", "Roll", "Repeat", "PixelShuffle", "PixelUnshuffle", "ConstantPadNd",
    "ReflectionPad2D", "ReplicationPad2D", "AvgPool2D", "AvgPool3D", "AdaptiveAvgPool2D",
    "AdaptiveAvgPool3D", "UpsampleNearest2D", "UpsampleNearestExact2D", "UpsampleBilinear2D",
    "AccumulateGrad", "Rectify", "Gate",
}
_BATCH_NORM = {"NativeBatchNorm", "CudnnBatchNorm", "MiopenBatchNorm"}
_SUFFIX = re.compile(r"Backward\d*$")


def _graph_inputs(node: Any) -> int:
    return sum(fn is not None for fn, _ in node.next_functions)


def _is_fixed_linear(node: Any) -> bool:
    kind = _SUFFIX.sub("", type(node).__name__)
    if kind in _STRUCTURAL:
        return True
    if kind in _LINEAR_IN_ONE:
        return _graph_inputs(node) == 1
    if kind in _BATCH_NORM:
        # Eval mode: the running statistics, not the input's. Training mode reads the input.
        return not bool(getattr(node, "_saved_training", True))
    return False


def deconvnet_depends_on_input(outputs: list[torch.Tensor]) -> bool:
    """False when every node of the graph behind `outputs` is linear with fixed coefficients."""
    return not all(_is_fixed_linear(node) for node in nodes_behind(outputs))

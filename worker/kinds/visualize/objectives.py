"""What each visualization optimizes, measured per image on one forward pass.

An objective names the layers it reads and turns the logits and those layers' outputs into
one value per image: a value to maximize, or for inversion a distance to minimize (which
way each kind goes is `shared.spec.visualize.minimizes`).
"""

from __future__ import annotations

import torch

from shared.errors import TargetError
from shared.spec.layers import Layout
from shared.spec.visualize import (
    ChannelObjective,
    ClassObjective,
    DreamObjective,
    InvertObjective,
    Objective,
)
from worker.engine.layouts import as_nchw

Activations = dict[str, torch.Tensor]


class ObjectiveFunction:
    """One item's objective; `where` names its spec field in errors (`objective[2]`)."""

    layers: tuple[str, ...] = ()

    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self, logits: torch.Tensor, acts: Activations) -> torch.Tensor:
        """The objective of each image of the forward pass (a tensor of N values)."""
        raise NotImplementedError

    def _layer(self, acts: Activations, layer: str) -> torch.Tensor:
        act = acts.get(layer)
        if act is None:
            raise TargetError(f"{self.where}.layer: module {layer!r} did not run in the "
                              "forward pass")
        return act.float()


class ClassLogit(ObjectiveFunction):
    """Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks": the class
    score before the softmax, which only the class itself can raise."""

    def __init__(self, index: int, where: str) -> None:
        super().__init__(where)
        self.index = index

    def __call__(self, logits: torch.Tensor, acts: Activations) -> torch.Tensor:
        if self.index >= logits.shape[1]:
            raise TargetError(f"{self.where}.class: {self.index} is out of range; the model "
                              f"has {logits.shape[1]} classes")
        return logits[:, self.index].float()


class ChannelActivation(ObjectiveFunction):
    """Erhan et al. 2009, "Visualizing Higher-Layer Features of a Deep Network"; Yosinski et
    al. 2015: the mean of one channel of a layer over its grid, or one neuron of it.

    The layer is read in its layout (`shared.spec.layers`): a channel of a channels-last or token
    layer is one of its C features, its grid the patch tokens' (prefix tokens excluded)."""

    def __init__(self, layer: str, channel: int, position: tuple[int, int] | None,
                 where: str, layout: Layout) -> None:
        super().__init__(where)
        self.layers = (layer,)
        self.channel = channel
        self.position = position
        self.layout = layout

    def __call__(self, logits: torch.Tensor, acts: Activations) -> torch.Tensor:
        act = self._layer(acts, self.layers[0])
        if self.channel >= self.layout.channels:
            raise TargetError(f"{self.where}.channel: {self.channel} is out of range; layer "
                              f"{self.layers[0]!r} has {self.layout.channels} channels")
        values = as_nchw(self.layout, act)[:, self.channel]
        if self.position is None:
            return values.flatten(1).mean(dim=1)
        grid = self.layout.grid
        if not all(0 <= p < s for p, s in zip(self.position, grid, strict=True)):
            raise TargetError(f"{self.where}.position: {list(self.position)} is not on layer "
                              f"{self.layers[0]!r}'s grid {list(grid)} at this size")
        return values[:, self.position[0], self.position[1]]


class RepresentationDistance(ObjectiveFunction):
    """Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting
    Them": ‖Φ(x) − Φ(x₀)‖² / ‖Φ(x₀)‖², the distance to the input's representation at a
    layer, relative to its size."""

    def __init__(self, layer: str, target: torch.Tensor, where: str) -> None:
        super().__init__(where)
        self.layers = (layer,)
        self.target = target.float()
        self.norm = self.target.square().sum().clamp(min=1e-12)

    def __call__(self, logits: torch.Tensor, acts: Activations) -> torch.Tensor:
        act = self._layer(acts, self.layers[0])
        return (act - self.target).square().flatten(1).sum(dim=1) / self.norm


class LayerEnergy(ObjectiveFunction):
    """Mordvintsev, Olah & Tyka 2015, "Inceptionism" (DeepDream): the mean square of a
    layer's activations, so that whatever the layer sees grows."""

    def __init__(self, layer: str, where: str) -> None:
        super().__init__(where)
        self.layers = (layer,)

    def __call__(self, logits: torch.Tensor, acts: Activations) -> torch.Tensor:
        return self._layer(acts, self.layers[0]).square().flatten(1).mean(dim=1)


def objective_function(objective: Objective, where: str,
                       target: torch.Tensor | None = None,
                       layout: Layout | None = None) -> ObjectiveFunction:
    """The function of a spec objective; inversion needs its input's representation, a
    channel or neuron its layer's layout."""
    if isinstance(objective, ClassObjective):
        return ClassLogit(objective.index, where)
    if isinstance(objective, ChannelObjective):
        if layout is None:
            raise ValueError("a channel objective needs its layer's layout")
        return ChannelActivation(objective.layer, objective.channel, objective.position, where,
                                 layout)
    if isinstance(objective, InvertObjective):
        if target is None:
            raise ValueError("an inversion needs its input's representation")
        return RepresentationDistance(objective.layer, target, where)
    if isinstance(objective, DreamObjective):
        return LayerEnergy(objective.layer, where)
    raise TypeError(f"not an objective: {objective!r}")

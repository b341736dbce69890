"""The model-randomisation sanity check: do a method's maps depend on what the model learned?

Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (NeurIPS): re-initialise the model's
parameterised blocks one after another, from the logits down (a cascade), recompute each
method's maps on a sample after every step, and compare them with the trained model's maps.
Maps that stay alike while the layers that decide the class are random show the image, not
the model's decision.
Everything happens on a private copy: the caller's model is never changed.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.seeds import derive_seed
from shared.spec.methods import MethodSpec
from shared.spec.targets import ClassTarget
from worker.engine.core import BatchResult, Engine
from worker.kinds.attribution.audit.metrics import relevance
from worker.kinds.attribution.audit.similarity import spearman, ssim

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Verdicts read the rank correlation left once the class scores' block is random.
FAILS_AT = 0.85
WEAK_AT = 0.7


@dataclass(frozen=True)
class Verdict:
    """A plain-language reading of one method's curve: `passes`, `weak`, `fails` or `undefined`."""

    status: str
    text: str


@dataclass(frozen=True)
class SanityResult:
    """Per method and cascade step, the median similarity to the trained model's maps."""

    sample: int
    blocks: tuple[str, ...]  # in the order randomised: the logits' block first
    spearman: dict[str, list[float | None]]
    ssim: dict[str, list[float | None]]
    verdicts: dict[str, Verdict]

    def to_json(self) -> dict[str, Any]:
        return {
            "sample": self.sample,
            "blocks": list(self.blocks),
            "methods": [
                {"method": name, "spearman": self.spearman[name], "ssim": self.ssim[name],
                 "verdict": self.verdicts[name].status, "text": self.verdicts[name].text}
                for name in self.spearman
            ],
        }


def parameterised_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The model's top-level blocks that hold parameters, containers opened one level.

    A top-level `Sequential`, `ModuleList` or `ModuleDict` (ResNet's `layer1`, timm's
    `blocks`) stands for its children, so that a deep stack is randomised piece by piece.
    """
    blocks: dict[str, nn.Module] = {}
    for name, child in model.named_children():
        if isinstance(child, CONTAINERS):
            blocks.update({f"{name}.{sub}": m for sub, m in child.named_children()})
        else:
            blocks[name] = child
    return {name: m for name, m in blocks.items() if next(m.parameters(), None) is not None}


def forward_order(model: nn.Module, blocks: dict[str, nn.Module], x: torch.Tensor) -> list[str]:
    """The blocks in the order a forward pass first calls them; blocks never called are left out."""
    order: list[str] = []

    def recorder(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any) -> None:
            if name not in order:
                order.append(name)
        return record

    handles = [m.register_forward_pre_hook(recorder(name)) for name, m in blocks.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return order


@torch.no_grad()
def randomise(block: nn.Module, seed: int) -> None:
    """Re-initialise every parameter of `block` in place, seeded, leaving torch's RNG as it was.

    Modules with `reset_parameters` use their own initialisation (as at construction);
    others get normal noise with the trained parameter's standard deviation.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in block.modules():
            own = list(module.parameters(recurse=False))
            if not own:
                continue
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
                continue
            for p in own:
                std = float(p.std()) if p.numel() > 1 else 1.0
                p.normal_(0.0, std if std > 0 else 1.0)


def _relevances(result: BatchResult, methods: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Each method's relevance maps R, image by image."""
    return {name: [relevance(image.maps[m].values) for image in result.images]
            for m, name in enumerate(methods)}


def _median(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(statistics.median(defined)) if defined else None


def verdict(top: float | None, final: float | None) -> Verdict:
    """A reading of one method's curve, from its first step and its last.

    `top` is the rank correlation once the block that produces the class scores is random.
    A map that explains the class must change then; one that barely does shows the image
    (Adebayo et al.'s finding for guided backprop). How much is left once every block is
    random (`final`) is reported too, but not judged: part of it is the architecture's
    own imprint on the maps (padding, strides), which no weights remove.
    """
    if top is None or final is None:
        return Verdict("undefined", "the maps were constant, so no rank correlation exists")
    if top >= FAILS_AT:
        return Verdict(
            "fails",
            f"maps barely change (rank correlation {top:.2f}) when the layer that produces the "
            f"class scores is randomised, and still correlate {final:.2f} with the trained "
            "model's after every layer is: they show the image, not the model's decision",
        )
    if top >= WEAK_AT:
        return Verdict(
            "weak",
            f"maps change only partly (rank correlation {top:.2f}) when the layer that produces "
            f"the class scores is randomised ({final:.2f} once every layer is): read them as "
            "part image, part decision",
        )
    return Verdict(
        "passes",
        f"maps change as soon as the layer that produces the class scores is randomised (rank "
        f"correlation {top:.2f}, {final:.2f} once every layer is): they depend on what the "
        "model learned",
    )


def sanity_check(
    model: nn.Module,
    images: torch.Tensor,
    methods: Sequence[str | MethodSpec],
    *,
    seed: int = 0,
    targets: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> SanityResult:
    """Cascading randomisation of `model` on preprocessed `images` (N×C×H×W) for `methods`.

    Methods are names or specs with their parameters (a gated rule, SmoothGrad's samples);
    a name given twice is checked once, with its first parameters. Each image keeps one
    target class throughout: `targets`, or the trained model's prediction. Step s
    re-initialises the s-th block from the logits (seeded with `seed` and s) on top of the
    steps before it.
    """
    first_of: dict[str, str | MethodSpec] = {}
    for method in methods:
        first_of.setdefault(method if isinstance(method, str) else method.name, method)
    names, methods = list(first_of), list(first_of.values())
    network = copy.deepcopy(model).cpu().eval()
    x = images.detach().float().cpu()
    blocks = parameterised_blocks(network)
    cascade = list(reversed(forward_order(network, blocks, x[:1])))
    if not cascade:
        raise ValueError("the model has no parameterised block to randomise")

    if targets is None:
        first = Engine(network, device=device).attribute(x, methods=methods)
        chosen = [ClassTarget(image.predicted_class) for image in first.images]
    else:
        chosen = [ClassTarget(int(t)) for t in targets]
        first = Engine(network, device=device).attribute(x, methods=methods, targets=chosen)
    reference = _relevances(first, names)

    rho: dict[str, list[float | None]] = {name: [] for name in names}
    structure: dict[str, list[float | None]] = {name: [] for name in names}
    for step, name in enumerate(cascade):
        randomise(blocks[name], derive_seed(seed, step))
        maps = _relevances(
            Engine(network, device=device).attribute(x, methods=methods, targets=chosen), names
        )
        for method in names:
            pairs = list(zip(reference[method], maps[method], strict=True))
            rho[method].append(_median([spearman(a, b) for a, b in pairs]))
            structure[method].append(_median([ssim(a, b) for a, b in pairs]))
    return SanityResult(
        sample=len(x),
        blocks=tuple(cascade),
        spearman=rho,
        ssim=structure,
        verdicts={name: verdict(rho[name][0], rho[name][-1]) for name in names},
    )

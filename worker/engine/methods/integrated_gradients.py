"""Integrated Gradients: the gradient integrated along the path from a baseline to the image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from shared.errors import InputError, SpecError
from shared.seeds import method_seed
from shared.spec.inputs import InputRef
from worker.engine import baselines
from worker.engine.methods.base import BackwardRule, Computed, Maps, Method, Params, add_rows
from worker.engine.methods.gradient import Gradient

if TYPE_CHECKING:
    from worker.engine.call import Call

GRADIENT = Gradient()


def quadrature(rule: str, steps: int) -> tuple[list[float], list[float]]:
    """Path points α in [0, 1] and their weights.

    Gauss–Legendre is Captum's. The trapezoid rule's points are Captum's (n evenly spaced,
    both ends included) with the trapezoid rule's weights, 1/(n − 1) halved at the ends;
    Captum weighs them 1/n, which sums to (n − 1)/n, so its maps are ours × (n − 1)/n and
    its completeness error carries a bias of (f(x) − f(x'))/n.
    """
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return list(0.5 * (nodes + 1)), list(0.5 * weights)
    if rule == "riemann_trapezoid":
        inner = [1 / (steps - 1)] * (steps - 2)
        return list(np.linspace(0, 1, steps)), [0.5 / (steps - 1), *inner, 0.5 / (steps - 1)]
    raise ValueError(f"unknown quadrature rule {rule!r}")


class IntegratedGradients(Method):
    """Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks".

    IG(x) = (x − x') ⊙ Σ_k w_k ∇f(x' + α_k (x − x')), with the points α_k and weights w_k of
    `rule`: Gauss–Legendre, as Captum's `IntegratedGradients`, or the trapezoid rule (whose
    weights Captum scales by (n − 1)/n, see `quadrature`). Each
    map reports `convergence_delta` = Σ IG(x) − (f(x) − f(x')), f the target's logit, with
    f(x) from the call's forward pass and f(x') from a forward-only pass. The baseline x' is
    `black`, `blurred`, `uniform` (seeded by `method_seed(item seed, position)`) or a C×H×W
    tensor (the pipeline's resolved input reference), see `worker.engine.baselines`.
    """

    name = "integrated_gradients"
    shares_forward = False

    def rule(self, params: Params) -> BackwardRule:
        """The plain gradient's: its passes' coverage is counted as the gradient's is."""
        return GRADIENT

    def check(self, params: Params, call: Call, position: int) -> None:
        baseline = params["baseline"]
        where = f"methods[{position}].baseline"
        if isinstance(baseline, InputRef):
            raise SpecError(where, f"the input reference {baseline.to_json()} must be "
                            "resolved to a tensor before attribution")
        if isinstance(baseline, torch.Tensor) and tuple(baseline.shape) != tuple(
                call.x.shape[1:]):
            raise InputError(f"{where}: shape {list(baseline.shape)} is not the images' "
                             f"{list(call.x.shape[1:])}")

    def baselines(self, call: Call, params: Params, position: int) -> torch.Tensor:
        """Every image's baseline, N×C×H×W, in the model's input space."""
        baseline, x = params["baseline"], call.x
        if isinstance(baseline, torch.Tensor):
            return baseline.to(x.device, x.dtype).expand_as(x)
        if baseline == "black":
            return call.norm.black(x)
        if baseline == "blurred":
            return baselines.blurred(x)
        return torch.stack([
            baselines.uniform(x.shape[1:], torch.Generator(device=call.device).manual_seed(
                method_seed(seed, position)), call.norm, call.device)
            for seed in call.seeds
        ])

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        x, ranks = call.x, call.ranks
        start_points = self.baselines(call, params, position)
        alphas, weights = quadrature(params["rule"], params["steps"])
        steps = len(alphas)
        total = torch.zeros((ranks, *x.shape), device=call.device)
        alpha_of = torch.tensor(alphas, device=call.device, dtype=x.dtype)
        weight_of = torch.tensor(weights, device=call.device, dtype=torch.float32)

        def build(start: int, stop: int) -> torch.Tensor:
            index = torch.arange(start, stop, device=call.device)
            images, k = index // steps, index % steps
            base = start_points[images]
            return base + alpha_of[k].view(-1, 1, 1, 1) * (x[images] - base)

        def compute(rows: torch.Tensor, start: int, stop: int) -> None:
            index = torch.arange(start, stop, device=call.device)
            images, k = index // steps, index % steps
            done = call.run_pass(rows, images.tolist(), grad=True, rule=GRADIENT)
            grads = [done.input_grads(GRADIENT, rank, last=rank == ranks - 1)
                     for rank in range(ranks)]
            for rank, grad in enumerate(grads):
                if grad is not None:
                    add_rows(total[rank], grad * weight_of[k].view(-1, 1, 1, 1), images)
            call.count(position, done, GRADIENT)

        call.in_micro_batches(len(x) * steps, build, compute, grad=True)
        attributions = total * (x - start_points)
        gaps = call.scores - call.target_scores(start_points)
        deltas = attributions.flatten(2).sum(2) - gaps
        return [{rank: Computed(attributions[rank, i],
                                {"convergence_delta": float(deltas[rank, i])})
                 for rank in range(len(chosen))}
                for i, chosen in enumerate(call.selections)]

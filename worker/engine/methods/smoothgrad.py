"""SmoothGrad: the base method's map averaged over noisy copies of the image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from shared.seeds import method_seed
from worker.engine.baselines import value_range
from worker.engine.methods.base import BackwardRule, Computed, Maps, Method, Params, add_rows
from worker.engine.methods.gradient import Gradient
from worker.engine.methods.modified_relu import GuidedBackprop

if TYPE_CHECKING:
    from worker.engine.call import Call

BASES: dict[str, BackwardRule] = {rule.name: rule for rule in (Gradient(), GuidedBackprop())}


class SmoothGrad(Method):
    """Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise"; the variants of
    Hooker et al. 2019 (SmoothGrad-Squared) and Adebayo et al. 2018 (VarGrad).

    For n = `samples` copies x + ε_s, ε_s ~ N(0, σ²) with σ = `noise` · (max x − min x):
    `mean` = (1/n) Σ_s M(x + ε_s), `squared` = (1/n) Σ_s M(x + ε_s)², `vargrad` = squared −
    mean², where M is the base method's map — Captum's `NoiseTunnel` definitions. ε_s is the
    s-th draw of `torch.randn(C, H, W)` from a generator on the engine's device seeded with
    `method_seed(item seed, position)`, so a map depends on nothing but its image and seed.
    """

    name = "smoothgrad"
    shares_forward = False

    def rule(self, params: Params) -> BackwardRule:
        return BASES[params["base"]]

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        rule = self.rule(params)
        samples, x, ranks = params["samples"], call.x, call.ranks
        sigma = params["noise"] * value_range(x)
        generators = [torch.Generator(device=call.device).manual_seed(method_seed(seed, position))
                      for seed in call.seeds]
        sums = torch.zeros((ranks, *x.shape), device=call.device)
        squares = torch.zeros_like(sums)

        def build(start: int, stop: int) -> torch.Tensor:
            rows = []
            for row in range(start, stop):
                i = row // samples
                noise = torch.randn(x.shape[1:], generator=generators[i], device=call.device)
                rows.append(x[i] + sigma[i] * noise)
            return torch.stack(rows)

        def compute(rows: torch.Tensor, start: int, stop: int) -> None:
            images = torch.arange(start, stop, device=call.device) // samples
            done = call.run_pass(rows, images.tolist(), grad=True, rule=rule)
            grads = [done.input_grads(rule, rank, last=rank == ranks - 1)
                     for rank in range(ranks)]
            for rank, grad in enumerate(grads):
                if grad is not None:
                    add_rows(sums[rank], grad, images)
                    add_rows(squares[rank], grad * grad, images)
            call.count(position, done, rule)

        call.in_micro_batches(len(x) * samples, build, compute, grad=True)
        mean, mean_square = sums / samples, squares / samples
        values = {"mean": mean, "squared": mean_square,
                  "vargrad": mean_square - mean * mean}[params["variant"]]
        return [{rank: Computed(values[rank, i]) for rank in range(len(chosen))}
                for i, chosen in enumerate(call.selections)]

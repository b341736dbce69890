"""The attribution engine: one forward pass shared by the methods that can share it, passes of
their own (micro-batched to fit memory) for the methods that sample, integrate or occlude.

`Engine` owns a private, frozen, eval-mode copy of the model it is given, so the caller's
model is never changed and several threads may share one engine. In that copy, QuickGELU
modules that write their arithmetic out are swapped for one the rectifier override sees
(`worker.engine.gated_units`), with the same arithmetic, and attention computes its probabilities
explicitly, for the attention methods to read (`worker.engine.attention`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.errors import TargetError
from shared.seeds import item_seed
from shared.spec.layers import ModelLayers
from shared.spec.methods import MethodSpec
from shared.spec.targets import PREDICTED, LayerTarget, Target, TopKTarget
from worker.engine.attention import explicit_attention
from worker.engine.baselines import Normalization
from worker.engine.call import Call, CoverageCount
from worker.engine.gated_units import catch_written_out_units
from worker.engine.layers import read_layers
from worker.engine.layouts import LayoutTrace
from worker.engine.memory import (
    Footprint,
    budget_bytes,
    in_micro_batches,
    measure_footprint,
    rows_that_fit,
)
from worker.engine.methods import Method, Params, get_method, resolve_method
from worker.engine.methods.base import Computed, Maps
from worker.engine.passes import Pass, model_logits
from worker.engine.targets import LayerTaps, Selection, select

__all__ = ["AttributionMap", "BatchResult", "Coverage", "Engine", "ImageResult", "model_logits"]

PRECISIONS: dict[str, torch.dtype | None] = {
    "float32": None,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True)
class Coverage:
    """Rectifier applications in the forward pass, and how many the method's rule covered."""

    relu_calls: int  # rectifiers and gated units the targets depend on, overridden or not
    overridden: int  # of those, routed through the method's rule
    applied: int  # backward applications of the rule, summed over this method's passes

    @property
    def complete(self) -> bool:
        return self.relu_calls == self.overridden

    def to_json(self) -> dict[str, int]:
        return {"relu_calls": self.relu_calls, "overridden": self.overridden,
                "applied": self.applied}


@dataclass(frozen=True)
class AttributionMap:
    """One map: its method and position in `methods`, target, float32 values, extras, warnings.

    Values are C×H×W, or 1×H×W for Grad-CAM; `extras` holds e.g. `convergence_delta`. `rank`
    is the class's rank among a `TopKTarget`'s (0: the highest score), None for other targets.
    """

    method: str
    position: int
    target: dict[str, Any]
    values: np.ndarray
    extras: dict[str, Any]
    warnings: list[str]
    rank: int | None = None


@dataclass(frozen=True)
class ImageResult:
    """The prediction for one image and its maps (method-major, then target rank)."""

    predicted_class: int
    score: float
    probs: np.ndarray  # float32 softmax over the classes
    maps: list[AttributionMap]


@dataclass(frozen=True)
class BatchResult:
    images: list[ImageResult]
    coverage: dict[int, Coverage | None]  # by method position; None: the method has no rule


@dataclass
class _Request:
    """One `attribute` call's methods, targets and seeds, and the passes' sizes."""

    specs: list[MethodSpec]
    impls: list[Method]
    targets: list[Target]
    seeds: list[int]
    target_layers: tuple[str, ...]
    layers: tuple[str, ...] = ()  # what the shared pass records for its methods
    rows_with_grad: int = 1
    rows_without_grad: int = 1

    @property
    def shared(self) -> list[int]:
        """Positions of the methods computed from the images' one forward pass."""
        return [p for p, impl in enumerate(self.impls) if impl.shares_forward]

    @property
    def shared_grad(self) -> bool:
        """Whether a method of the shared pass takes a backward pass from it."""
        return any(self.impls[p].backward for p in self.shared)

    @property
    def attention(self) -> bool:
        """Whether a method of the shared pass reads its attention probabilities."""
        return any(self.impls[p].attention for p in self.shared)

    def call(self, engine: Engine, chunk: torch.Tensor, start: int, stop: int) -> Call:
        return Call(engine, chunk, [], self.seeds[start:stop], self.rows_with_grad,
                    self.rows_without_grad, self.target_layers)


class Engine:
    """Computes attribution maps for batches of preprocessed images.

    `mean` and `std` are the normalization that made the images (`Preprocessing.mean/std`):
    the `black` and `uniform` baselines and the `zero` occlusion fill are pixels, normalized
    with them. Without them the inputs are taken as pixels. `memory_budget_mb` bounds the
    memory one call may use (see `worker.engine.memory`; default: a share of what is free).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        precision: str = "float32",
        channels_last: bool = False,
        memory_budget_mb: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.channels_last = channels_last
        self.memory_budget_mb = memory_budget_mb
        self.norm = Normalization.of(mean, std)
        model = copy.deepcopy(model).eval().requires_grad_(False).to(self.device)
        catch_written_out_units(model)  # the override then sees QuickGELU as one unit
        explicit_attention(model)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.taps = LayerTaps(model)
        self._footprints: dict[tuple[int, ...], Footprint] = {}
        self._layers: dict[tuple[int, ...], ModelLayers] = {}

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def forward(self, x: torch.Tensor, layers: Sequence[str], *, grad: bool,
                override: bool, attention: bool = False) -> Pass:
        """One forward pass of rows `x` on this engine's model (see `worker.engine.passes.Pass`)."""
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        x = x.to(self.device, torch.float32, memory_format=memory_format)
        return Pass(self.model, self.taps, x, layers, grad=grad, override=override,
                    autocast=self._autocast, model_layers=lambda: self.layers(x[:1]),
                    attention=attention)

    def layers(self, x1: torch.Tensor) -> ModelLayers:
        """The model's layers, their layouts and the default Grad-CAM layer
        (`worker.engine.layers`), read once per input shape from a forward pass of two copies of
        the 1×C×H×W input `x1` (two, so that the batch is told from windows or heads)."""
        shape = tuple(x1.shape[1:])
        if shape not in self._layers:
            x2 = x1[:1].to(self.device, torch.float32).expand(2, *shape).contiguous()
            trace = LayoutTrace(x2)
            with torch.no_grad(), self.taps.order(trace.finished), self._autocast(), trace:
                self.model(x2)
            self._layers[shape] = read_layers(trace, self.model)
        return self._layers[shape]

    def default_layer(self, x1: torch.Tensor, field: str = "layer") -> str:
        """The default Grad-CAM layer; an `UnsupportedModelError` naming `field` if the model
        has none."""
        return self.layers(x1).default_layer(field)

    def resolve_layers(self, methods: Sequence[str | MethodSpec], x1: torch.Tensor
                       ) -> list[MethodSpec]:
        """`methods` with every parameter, each null `layer` set to the default layer, so that
        the layer a map was made at can be recorded with it."""
        specs = [resolve_method(m) for m in methods]
        return [spec.with_params(layer=self.default_layer(x1, f"methods[{p}].layer"))
                if "layer" in spec.params and spec["layer"] is None else spec
                for p, spec in enumerate(specs)]

    def footprint(self, x1: torch.Tensor) -> Footprint:
        """Bytes a row of this input shape needs in a pass, measured once per shape."""
        shape = tuple(x1.shape[1:])
        if shape not in self._footprints:
            self._footprints[shape] = measure_footprint(self.model, x1, self._autocast)
        return self._footprints[shape]

    def attribute(
        self,
        images: torch.Tensor,
        methods: Sequence[str | MethodSpec] = ("gradient",),
        targets: Target | Sequence[Target] = PREDICTED,
        seeds: Sequence[int] | None = None,
    ) -> BatchResult:
        """Maps of `images` (N×C×H×W, preprocessed) for each method and each image's target.

        Maps are in `methods` order (a method given twice, with different parameters, is two
        positions), then by target rank. `seeds` are the images' item seeds
        (`shared.seeds.item_seed`), default `item_seed(0, i)`; a method's randomness on image
        i comes from `method_seed(seeds[i], position)` alone.
        """
        specs = [resolve_method(m) for m in methods]
        if not specs:
            raise ValueError("at least one method is required")
        n = images.shape[0]
        per_image = list(targets) if isinstance(targets, Sequence) else [targets] * n
        if len(per_image) != n:
            raise ValueError(f"{len(per_image)} targets for {n} images; give one or one per image")
        seeds = [item_seed(0, i) for i in range(n)] if seeds is None else [int(s) for s in seeds]
        if len(seeds) != n:
            raise ValueError(f"{len(seeds)} seeds for {n} images; give one per image")
        x = images.detach().to(self.device, torch.float32)
        request = _Request(specs, [get_method(spec.name) for spec in specs], per_image, seeds,
                           tuple(sorted({t.layer for t in per_image
                                         if isinstance(t, LayerTarget)})))
        self.taps.check(request.target_layers)
        for layer in request.target_layers:
            problem = self.layers(x[:1]).layout_problem(layer)
            if problem is not None:
                raise TargetError(f"target.layer: {problem}")
        whole = request.call(self, x, 0, n)
        for p, (impl, spec) in enumerate(zip(request.impls, specs, strict=True)):
            impl.check(spec.params, whole, p)
        request.layers = tuple(dict.fromkeys(
            layer for p in request.shared
            for layer in request.impls[p].layers(specs[p].params, whole)))
        request.rows_with_grad, request.rows_without_grad = self._plan(
            x, per_image, len(specs), backward=any(impl.backward for impl in request.impls))

        done: dict[int, ImageResult] = {}
        coverage: dict[int, CoverageCount] = {}

        def compute(chunk: torch.Tensor, start: int, stop: int) -> None:
            images, counts = self._attribute_chunk(request, chunk, start, stop)
            for p, count in counts.items():  # merged once the whole chunk has succeeded
                coverage.setdefault(p, CoverageCount()).merge(count)
            done.update(zip(range(start, stop), images, strict=True))

        chunk_rows = request.rows_with_grad if request.shared_grad else request.rows_without_grad
        in_micro_batches(n, chunk_rows, lambda a, b: x[a:b], compute, self.device)
        return BatchResult(
            images=[done[i] for i in range(n)],
            coverage={p: self._coverage(impl, spec.params, coverage.get(p))
                      for p, (impl, spec) in enumerate(zip(request.impls, specs, strict=True))},
        )

    def _attribute_chunk(self, request: _Request, chunk: torch.Tensor, start: int, stop: int
                         ) -> tuple[list[ImageResult], dict[int, CoverageCount]]:
        """The results of images start..stop: the shared pass and its methods, then the rest."""
        call = request.call(self, chunk, start, stop)
        rules = [request.impls[p].rule(request.specs[p].params) for p in request.shared]
        first = self.forward(chunk, (*request.target_layers, *request.layers),
                             grad=request.shared_grad, attention=request.attention,
                             override=any(r is not None and r.needs_every_rectifier
                                          for r in rules))
        call.selections = first.selections = select(request.targets[start:stop],
                                                    first.logits.detach())
        probs = first.logits.detach().float().softmax(dim=1).cpu()
        for rule in rules:
            if rule is not None:
                first.check_rule(rule)
        call.shared = first
        call.scores = torch.stack([first.scores(rank) for rank in range(call.ranks)])
        outputs: dict[int, Maps] = {}
        for p, rule in zip(request.shared, rules, strict=True):
            outputs[p] = request.impls[p].compute(call, request.specs[p].params, p)
            call.count(p, first, rule)
        call.shared = first = None  # free the shared graph before the methods' own passes
        for p, (impl, spec) in enumerate(zip(request.impls, request.specs, strict=True)):
            if p not in outputs:
                outputs[p] = impl.compute(call, spec.params, p)
        images = [
            self._image_result(request.specs, probs[j], [outputs[p][j] for p in
                                                         range(len(request.specs))],
                               call.selections[j],
                               isinstance(request.targets[start + j], TopKTarget))
            for j in range(stop - start)
        ]
        return images, call.coverage

    def _plan(self, x: torch.Tensor, per_image: list[Target], methods: int, *, backward: bool
              ) -> tuple[int, int]:
        """Rows a pass may hold with and without a backward pass, from the memory budget.

        The maps the call returns, and the methods' accumulators beside them, come first.
        Passes with a backward are only sized (and refused) when a method takes them.
        """
        footprint = self.footprint(x[:1])
        ranks = max((t.k if isinstance(t, TopKTarget) else 1) for t in per_image)
        results = 3 * len(x) * methods * ranks * footprint.input
        budget = budget_bytes(self.device, self.memory_budget_mb) - results
        without_grad = rows_that_fit(footprint.per_row(grad=False), budget, "the forward pass")
        with_grad = (rows_that_fit(footprint.per_row(grad=True), budget, "a backward pass")
                     if backward else 1)
        return with_grad, without_grad

    @staticmethod
    def _image_result(specs: list[MethodSpec], probs: torch.Tensor, outputs: list[dict[int,
                      Computed]], selections: list[Selection], topk: bool) -> ImageResult:
        maps = [
            AttributionMap(specs[p].name, p, selections[rank].to_json(),
                           computed.values.detach().float().contiguous().cpu().numpy(),
                           computed.extras, computed.warnings, rank if topk else None)
            for p, per_rank in enumerate(outputs)
            for rank, computed in sorted(per_rank.items())
        ]
        predicted = int(probs.argmax())
        return ImageResult(predicted, float(probs[predicted]), probs.numpy(), maps)

    @staticmethod
    def _coverage(impl: Method, params: Params, count: CoverageCount | None
                  ) -> Coverage | None:
        if impl.rule(params) is None:
            return None
        count = count or CoverageCount()
        return Coverage(count.relu_calls, count.overridden or 0, count.applied)

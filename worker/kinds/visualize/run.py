"""The optimization of one batch of a `visualize` job's items: step by step, cancellable
between steps, and checkpointed so that a fresh task continues exactly where one stopped.

Every step draws each image's random transformation, runs the engine's frozen eval-mode
model once per view size (DeepDream's smaller octaves form their own groups), takes the
gradient of the summed objectives and penalties with `torch.autograd.grad`, lets Adam move
the parametrization, then applies the operations between steps. Images are independent:
each has its own generator (seeded from the job seed and the item index) and its own Adam
moments, so its result does not depend on the rest of the batch except through floating-point
rounding of batched kernels.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from shared.errors import TargetError
from shared.seeds import item_seed
from shared.spec.layers import Layout
from shared.spec.model import Preprocessing
from shared.spec.visualize import (
    ChannelObjective,
    DreamObjective,
    InvertObjective,
    VisualizeItem,
    VisualizeSpec,
    minimizes,
)
from worker.engine.core import PRECISIONS, Engine, model_logits
from worker.kinds.visualize.objectives import Activations, ObjectiveFunction, objective_function
from worker.kinds.visualize.parametrizations import PARAMETRIZATIONS, Normalization
from worker.kinds.visualize.regularizers import apply_operations, has_operations, penalty
from worker.kinds.visualize.render import image_npy, image_png
from worker.kinds.visualize.transforms import Affine, draw, resize, warp

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Snapshot:
    """One item's image after `step` steps (normalized C×H×W float32)."""

    item: int
    step: int
    image: np.ndarray
    prep: Preprocessing

    def png(self) -> bytes:
        return image_png(self.image, self.prep)


@dataclass(frozen=True)
class StepReport:
    """What one call of `step` did: `values[s][j]` is item j's objective at its s-th step."""

    values: list[list[float]]
    snapshots: list[Snapshot]
    stopped: bool  # `should_stop` ended the call before its steps were done


@dataclass(frozen=True)
class ItemResult:
    """One item's outcome: the image, its objective curve (one value per step, measured on
    that step's transformed view before the update) and `metrics` (the objective of the
    untransformed image at the start and now)."""

    item: VisualizeItem
    image: np.ndarray
    curve: list[float]
    metrics: dict[str, float]
    prep: Preprocessing

    def png(self) -> bytes:
        return image_png(self.image, self.prep)

    def npy(self) -> bytes:
        return image_npy(self.image)


class VisualizationRun:
    """A batch of items optimized together; create it with `start` or `restore`."""

    def __init__(self, engine: Engine, spec: VisualizeSpec, items: Sequence[VisualizeItem],
                 prep: Preprocessing, inputs: Mapping[int, torch.Tensor] | None) -> None:
        if not items:
            raise ValueError("a run needs at least one item")
        self.engine = engine
        self.spec = spec
        self.items = tuple(items)
        self.prep = prep
        self.size = spec.size or prep.input_size
        self.device = engine.device
        self.norm = Normalization(prep, self.device)
        self.generators = [torch.Generator().manual_seed(item_seed(spec.seed, item.index))
                           for item in self.items]
        self._check_layers()
        self.inputs = self._inputs(inputs or {})
        self.functions = self._functions()
        self.signs = torch.tensor([1.0 if minimizes(item.objective) else -1.0
                                   for item in self.items], device=self.device)
        self.param = PARAMETRIZATIONS[spec.regularizers.parametrization](
            self.generators, self.size, self.norm)
        self.optimizer = torch.optim.Adam([self.param.tensor], lr=spec.lr)
        self.steps_done = 0
        self.curves: list[list[float]] = [[] for _ in self.items]
        self.initial: list[float] = []

    @classmethod
    def start(cls, engine: Engine, spec: VisualizeSpec, items: Sequence[VisualizeItem], *,
              preprocessing: Preprocessing,
              inputs: Mapping[int, torch.Tensor] | None = None) -> VisualizationRun:
        """A new run of `items` (some of `spec.items()`); `inputs` maps the index of each
        invert and dream item to its input, a normalized C×H×W tensor (resized to the run's
        size if it differs)."""
        run = cls(engine, spec, items, preprocessing, inputs)
        dreams = [j for j, item in enumerate(run.items)
                  if isinstance(item.objective, DreamObjective)]
        if dreams:
            run.param.assign(torch.stack([run.inputs[run.items[j].index] for j in dreams]),
                             dreams)
        run.initial = run.evaluate()
        return run

    @classmethod
    def restore(cls, data: bytes, engine: Engine, spec: VisualizeSpec,
                items: Sequence[VisualizeItem], *, preprocessing: Preprocessing,
                inputs: Mapping[int, torch.Tensor] | None = None) -> VisualizationRun:
        """The run a `checkpoint()` saved, continuing exactly as it would have; `spec`,
        `items` and `inputs` are those it was started with."""
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        run = cls(engine, spec, items, preprocessing, inputs)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r} is not "
                             f"{CHECKPOINT_FORMAT}")
        if state["spec"] != run._identity() or state["items"] != [i.index for i in run.items]:
            raise ValueError("the checkpoint is of another job or batch of items")
        with torch.no_grad():
            run.param.tensor.copy_(state["tensor"])
        run.optimizer.load_state_dict(state["optimizer"])
        for generator, rng in zip(run.generators, state["generators"], strict=True):
            generator.set_state(rng)
        run.steps_done = state["steps_done"]
        run.curves = [list(c) for c in state["curves"]]
        run.initial = list(state["initial"])
        return run

    @property
    def done(self) -> bool:
        return self.steps_done >= self.spec.steps

    def step(self, n: int, should_stop: Callable[[], bool] | None = None) -> StepReport:
        """Up to `n` steps, never beyond `spec.steps`; `should_stop` is asked before each."""
        values: list[list[float]] = []
        snapshots: list[Snapshot] = []
        for _ in range(min(n, self.spec.steps - self.steps_done)):
            if should_stop is not None and should_stop():
                return StepReport(values, snapshots, stopped=True)
            values.append(self._step())
            every = self.spec.snapshot_every
            if every and self.steps_done % every == 0:
                snapshots.extend(self._snapshots())
        return StepReport(values, snapshots, stopped=False)

    def checkpoint(self) -> bytes:
        """The run's state: the parametrization's tensor, Adam's state, each item's
        generator, the step count and the curves so far."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "spec": self._identity(),
            "items": [item.index for item in self.items],
            "steps_done": self.steps_done,
            "tensor": self.param.tensor.detach().cpu(),
            "optimizer": self.optimizer.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "curves": self.curves,
            "initial": self.initial,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Each item's objective on its image as it is: untransformed, at full size."""
        n = len(self.items)
        values = self._objective_tensor(self.param.image(), [self.size] * n, [Affine()] * n)
        return values.float().cpu().tolist()

    def images(self) -> np.ndarray:
        """The current N×3×size×size normalized images, float32."""
        with torch.no_grad():
            return self.param.image().float().cpu().numpy()

    def results(self) -> list[ItemResult]:
        """Each item's image, curve and metrics as they are now (final once `done`)."""
        final = self.evaluate()
        images = self.images()
        return [
            ItemResult(item, images[j], list(self.curves[j]),
                       {"initial": self.initial[j], "final": final[j]}, self.prep)
            for j, item in enumerate(self.items)
        ]

    # --- one step -------------------------------------------------------------------------

    def _step(self) -> list[float]:
        reg = self.spec.regularizers
        affines = [draw(g, reg) for g in self.generators]
        sizes = [self._view_size(item, self.steps_done) for item in self.items]
        x = self.param.image()
        values = self._objective_tensor(x, sizes, affines)
        loss = (self.signs * values).sum()
        extra = penalty(x, reg)
        if extra is not None:
            loss = loss + extra.sum()
        wants_x_grad = bool(reg.clip_contribution) and x is not self.param.tensor
        grads = torch.autograd.grad(loss, [self.param.tensor, x] if wants_x_grad
                                    else [self.param.tensor])
        self.param.tensor.grad = grads[0]
        self.optimizer.step()
        self.param.tensor.grad = None
        self.steps_done += 1
        self._operate(grads[-1] if reg.clip_contribution else None)
        row = values.detach().float().cpu().tolist()
        for curve, value in zip(self.curves, row, strict=True):
            curve.append(value)
        return row

    @torch.no_grad()
    def _operate(self, grad: torch.Tensor | None) -> None:
        reg = self.spec.regularizers
        if has_operations(reg, self.steps_done):
            x = apply_operations(self.param.image().detach(), grad, reg, self.steps_done)
            self.param.assign(x)
        else:
            self.param.project()

    def _view_size(self, item: VisualizeItem, step: int) -> int:
        """The size of the image the model sees: DeepDream's octave, else the run's size."""
        objective = item.objective
        if not isinstance(objective, DreamObjective) or objective.octaves == 1:
            return self.size
        octave = min(objective.octaves - 1, step * objective.octaves // self.spec.steps)
        return round(self.size / objective.octave_scale ** (objective.octaves - 1 - octave))

    def _objective_tensor(self, x: torch.Tensor, sizes: list[int],
                          affines: list[Affine]) -> torch.Tensor:
        """Each item's objective on its transformed view, one forward pass per view size."""
        values: list[torch.Tensor | None] = [None] * len(self.items)
        for size in sorted(set(sizes)):
            rows = [j for j, s in enumerate(sizes) if s == size]
            views = x if len(rows) == len(sizes) else x[rows]
            views = warp(resize(views, size), [affines[j] for j in rows])
            layers = sorted({layer for j in rows for layer in self.functions[j].layers})
            logits, acts = self._forward(views, layers)
            for r, j in enumerate(rows):
                mine = {name: act[r:r + 1] for name, act in acts.items()}
                values[j] = self.functions[j](logits[r:r + 1], mine)[0]
        return torch.stack(values)

    def _forward(self, views: torch.Tensor, layers: list[str]
                 ) -> tuple[torch.Tensor, Activations]:
        if self.engine.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        dtype = PRECISIONS[self.engine.precision]
        autocast = (nullcontext() if dtype is None
                    else torch.autocast(device_type=self.device.type, dtype=dtype))
        with self.engine.taps.capture(layers) as recorded, autocast:
            logits = model_logits(self.engine.model(views))
        return logits, {name: act for name, act in recorded.items() if act is not None}

    def _snapshots(self) -> list[Snapshot]:
        images = self.images()
        return [Snapshot(item.index, self.steps_done, images[j], self.prep)
                for j, item in enumerate(self.items)]

    # --- set-up ---------------------------------------------------------------------------

    def _identity(self) -> str:
        return json.dumps(self.spec.to_json(), sort_keys=True)

    def _where(self, item: VisualizeItem) -> str:
        return self.spec.objective_field(item.objective_index)

    def _check_layers(self) -> None:
        known = set(self.engine.taps.names)
        for item in self.items:
            layer = getattr(item.objective, "layer", None)
            if layer is not None and layer not in known:
                hint = ", ".join(self.engine.taps.names[:12])
                raise TargetError(f"{self._where(item)}.layer: no module named {layer!r} in "
                                  f"this model; names come from named_modules(), e.g. {hint}, "
                                  "...")

    def _inputs(self, given: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """The invert and dream items' inputs, on the device at the run's size."""
        inputs: dict[int, torch.Tensor] = {}
        for item in self.items:
            if not isinstance(item.objective, (InvertObjective, DreamObjective)):
                continue
            x = given.get(item.index)
            if x is None:
                raise ValueError(f"item {item.index} ({self._where(item)}) needs its input")
            if x.dim() != 3 or x.shape[0] != 3:
                raise ValueError(f"item {item.index}: expected a 3×H×W input, got "
                                 f"{list(x.shape)}")
            inputs[item.index] = resize(x[None].to(self.device, torch.float32), self.size)[0]
        return inputs

    def _functions(self) -> list[ObjectiveFunction]:
        """Each item's objective; inversions get their input's representation, computed
        once for all of them."""
        targets: dict[int, torch.Tensor] = {}
        inverts = [item for item in self.items if isinstance(item.objective, InvertObjective)]
        if inverts:
            layers = sorted({item.objective.layer for item in inverts})
            with torch.no_grad():
                _, acts = self._forward(torch.stack([self.inputs[i.index] for i in inverts]),
                                        layers)
            for r, item in enumerate(inverts):
                act = acts.get(item.objective.layer)
                if act is None:
                    raise TargetError(f"{self._where(item)}.layer: module "
                                      f"{item.objective.layer!r} did not run in the forward "
                                      "pass")
                targets[item.index] = act[r:r + 1].detach()
        return [objective_function(item.objective, self._where(item), targets.get(item.index),
                                   self._layout(item))
                for item in self.items]

    def _layout(self, item: VisualizeItem) -> Layout | None:
        """A channel objective's layer layout at the run's size (`Engine.layers`)."""
        if not isinstance(item.objective, ChannelObjective):
            return None
        blank = torch.zeros(1, 3, self.size, self.size, device=self.device)
        layers = self.engine.layers(blank)
        layout = layers.layout(item.objective.layer)
        if layout is None:
            raise TargetError(f"{self._where(item)}.layer: "
                              f"{layers.layout_problem(item.objective.layer)}")
        return layout


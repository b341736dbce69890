"""The cells of the coverage table (`bench/coverage.py`): one method or kind on one model,
run under a timeout, its outcome told apart as ok, refused (a clean refusal by the service's
own code, with its reason) or error, and its output checked against silent fallbacks."""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.errors import InputError
from shared.spec.methods import method_spec
from shared.spec.model import Preprocessing
from shared.spec.visualize import parse_visualize_spec
from worker.engine.core import Engine
from worker.engine.methods.gradcam import ZERO_CAM
from worker.kinds.top_activations.feature_maps import scan_batch
from worker.kinds.visualize import VisualizationRun

ROOT = Path(__file__).resolve().parent.parent
SERVICE_CODE = (ROOT / "worker", ROOT / "shared")
VISUALIZE_STEPS = 2
LIVE_CANDIDATES = 8  # channels tried for a visualization that is not dead at its start


class CellTimeout(Exception):
    """A cell ran past its time."""


class SilentFallback(Exception):
    """An output that ran but is not what the method computes (not finite, constant, or
    guided backprop's rule left out)."""


@dataclass(frozen=True)
class Cell:
    status: str  # ok, refused or error
    reason: str | None
    seconds: float
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out = {"status": self.status, "seconds": round(self.seconds, 2)}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def _raised_by_service(exc: BaseException) -> bool:
    """Whether the frame that raised `exc` is in the service's code (worker/, shared/)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    where = Path(frames[-1].filename).resolve()
    return any(where.is_relative_to(root) for root in SERVICE_CODE)


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, reason): refused for the service's own `InputError` with a message, else
    error, with where it was raised."""
    if isinstance(exc, InputError) and exc.message and _raised_by_service(exc):
        return "refused", f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, (SilentFallback, CellTimeout)):
        return "error", f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return "error", f"{type(exc).__name__}: {str(exc)[:400]}{where}"


def _check(maps: list[np.ndarray], *, any_constant: bool, said_zero: bool = False) -> None:
    """Refuse maps that are not finite, or constant: each one when `any_constant`, else all
    (a rectified map, as Grad-CAM's, may be zero for one image), unless every output says
    that its map is zero (`said_zero`: Grad-CAM's ReLU clipped all of it, not a fallback)."""
    for i, values in enumerate(maps):
        if not np.isfinite(values).all():
            raise SilentFallback(f"map {i} is not finite")
    constant = [float(np.ptp(values)) == 0.0 for values in maps]
    zero = said_zero and all(not values.any() for values in maps)
    if (any(constant) if any_constant else all(constant)) and not zero:
        raise SilentFallback(f"map {constant.index(True)} is constant "
                             f"({float(maps[constant.index(True)].flat[0])})")


def _attribute(spec, *, any_constant: bool = True) -> Callable:
    """A method cell: the maps of the batch for the predicted classes, checked."""
    def run(engine: Engine, x: torch.Tensor, context: dict) -> tuple[str, ...]:
        result = engine.attribute(x, [spec])
        maps = [image.maps[0].values for image in result.images]
        zero_cam = ZERO_CAM.split("{layer!r}")[0].format(name=spec.name)
        said = all(any(w.startswith(zero_cam) for w in image.maps[0].warnings)
                   for image in result.images)
        _check(maps, any_constant=any_constant, said_zero=said)
        context[spec.name] = maps
        if spec.name == "guided_backprop":  # its rule must reach every rectifier
            coverage = result.coverage[0]
            if not coverage.complete:
                raise SilentFallback(f"the rule left rectifiers out: {coverage.to_json()}")
            plain = context.get("gradient")
            if plain is not None and all(np.array_equal(a, b) for a, b in zip(maps, plain,
                                                                                strict=True)):
                raise SilentFallback(f"the maps equal the plain gradient's "
                                     f"(coverage {coverage.to_json()})")
        return tuple(result.images[0].maps[0].warnings)
    return run


def _occlusion(engine: Engine, x: torch.Tensor, context: dict) -> tuple[str, ...]:
    side = max(1, x.shape[-1] // 4)  # coarse: 4×4 positions
    return _attribute(method_spec("occlusion", patch=side, stride=side))(engine, x, context)


def _top_activations(engine: Engine, x: torch.Tensor, context: dict) -> tuple[str, ...]:
    """The engine-level scan of the default layer's channels, every one of them."""
    layer = engine.default_layer(x[:1])
    top = scan_batch(engine, x, list(range(len(x))), layer, "all", 2)
    if not np.isfinite(top.values).all():
        raise SilentFallback(f"top activations of {layer!r} are not finite")
    order = np.argsort(-top.values[:, 0], kind="stable")
    context["channels"] = [int(top.channels[i]) for i in order[:LIVE_CANDIDATES]]
    return ()


def _visualize(engine: Engine, x: torch.Tensor, context: dict) -> tuple[str, ...]:
    """Two steps maximising a channel of the default layer from the seeded start, checked to
    move its objective: the channels the scan found most active, largest objective at the
    start first, until one moves (random weights leave some channels dead at the start, or
    constant, a bias the image does not reach, where no gradient can move them)."""
    layer = engine.default_layer(x[:1])
    side = x.shape[-1]
    runs = []
    for channel in context.get("channels", [0]):
        spec = parse_visualize_spec({"model": "coverage", "objective": {
            "layer": layer, "channel": channel}, "size": side, "steps": VISUALIZE_STEPS,
            "snapshot_every": 0}, max_steps=VISUALIZE_STEPS)
        run = VisualizationRun.start(engine, spec, spec.items(),
                                     preprocessing=Preprocessing(input_size=side, resize=side))
        runs.append((abs(run.initial[0]), channel, run))
    tried = []
    for _, channel, run in sorted(runs, key=lambda found: found[:2], reverse=True):
        run.step(VISUALIZE_STEPS)
        (result,) = run.results()
        values = [*result.curve, result.metrics["initial"], result.metrics["final"]]
        if not np.isfinite(values).all() or not np.isfinite(result.image).all():
            raise SilentFallback(f"the objective or image of {layer!r} channel {channel} is "
                                 f"not finite: {values}")
        if result.metrics["final"] != result.metrics["initial"]:
            return ()
        tried.append(f"{channel} ({result.metrics['initial']:.4g})")
    raise SilentFallback(f"two steps left the objective of {layer!r} where it was, for "
                         f"channels {', '.join(tried)}")


CELLS: dict[str, Callable[[Engine, torch.Tensor, dict], tuple[str, ...]]] = {
    "gradient": _attribute(method_spec("gradient")),
    "smoothgrad": _attribute(method_spec("smoothgrad", samples=4)),
    "integrated_gradients": _attribute(method_spec("integrated_gradients", steps=4)),
    "occlusion": _occlusion,
    "gradcam": _attribute(method_spec("gradcam"), any_constant=False),
    "attention_rollout": _attribute(method_spec("attention_rollout"), any_constant=False),
    "attention_gradcam": _attribute(method_spec("attention_gradcam"), any_constant=False),
    "guided_backprop": _attribute(method_spec("guided_backprop", rule="gated")),
    "top_activations": _top_activations,
    "visualize": _visualize,
}


def _alarm(signum, frame):
    raise CellTimeout("past the cell's time limit")


def run_cell(name: str, engine: Engine, x: torch.Tensor, context: dict, timeout: float
             ) -> Cell:
    """Cell `name` on `engine` and the batch `x`, interrupted after `timeout` seconds."""
    started = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        warned = CELLS[name](engine, x, context)
    except Exception as exc:  # noqa: BLE001 — every outcome is the cell's result
        status, reason = classify(exc)
        return Cell(status, reason, time.perf_counter() - started)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Cell("ok", None, time.perf_counter() - started, warned)

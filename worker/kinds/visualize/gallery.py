"""The pictures of docs/visualize.md, made from the built-in EfficientNet-Lite0:

    python -m worker.kinds.visualize.gallery --out docs/visualize/

Each panel is a `visualize` job spec (defaults filled in as a job would get them) run to the
end with `VisualizationRun`. The command writes one PNG per item, a strip of snapshots of the
first class visualization, and `gallery.json`: per item its objective, the objective at the
start and at the end, and what the docs compare it with (the example photos' values of the
same objective; for classes, the model's top-5 on the picture; for inversions, the picture's
correlation with the photo and with the random start).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from shared.examples import EXAMPLES
from shared.media.render import encode_png
from shared.settings import Settings
from shared.spec.model import ModelSpec, parse_model_spec
from shared.spec.visualize import (
    ChannelObjective,
    ClassObjective,
    DreamObjective,
    InvertObjective,
    VisualizeSpec,
    parse_visualize_spec,
)
from worker.engine.core import Engine
from worker.kinds.visualize.run import ItemResult, Snapshot, VisualizationRun
from worker.models.build import display_image, preprocess_image

CLASSES = {281: "tabby", 967: "espresso", 130: "flamingo", 949: "strawberry"}
TABBY_PIXEL = {"parametrization": "pixel", "jitter": None, "scale": None, "rotate": None}
# Panels: a name, and a job spec (with its inputs named as uploads of the example photos).
PANELS: list[tuple[str, dict[str, Any]]] = [
    ("classes", {"objective": [{"class": c} for c in CLASSES], "snapshot_every": 64}),
    ("simonyan", {"objective": {"class": 281}, "regularizers": {**TABBY_PIXEL, "l2": 1e-3}}),
    ("yosinski", {"objective": {"class": 281},
                  "regularizers": {**TABBY_PIXEL, "l2": 1e-3, "blur": {"every": 4, "sigma": 0.5},
                                   "clip_norm": 10, "clip_contribution": 10, "jitter": 8}}),
    ("channels", {"objective": [{"layer": "blocks.3", "channel": 6},
                                {"layer": "blocks.4", "channel": 20},
                                {"layer": "blocks.5", "channel": 30},
                                {"layer": "blocks.5", "channel": 30, "position": [3, 3]}]}),
    ("invert", {"objective": [{"invert": {"upload": "chelsea"}, "layer": layer}
                              for layer in ("blocks.2", "blocks.4", "blocks.6")]}),
    ("dream", {"objective": [{"dream": {"upload": "rocket"}, "layer": "blocks.3"},
                             {"dream": {"upload": "coffee"}, "layer": "blocks.4"}]}),
]


def build(device: str) -> tuple[Engine, ModelSpec]:
    """The built-in model's engine (its weights converted on first use)."""
    from worker.models.build import build_model
    from worker.models.builtin import EFFICIENTNET_LITE0_SPEC, efficientnet_lite0_artifact

    spec = parse_model_spec(EFFICIENTNET_LITE0_SPEC)
    return Engine(build_model(spec, efficientnet_lite0_artifact()), device=device), spec


def photos(model: ModelSpec) -> dict[str, torch.Tensor]:
    """The example photos, preprocessed for the model (3×224×224, normalized)."""
    out = {}
    for name, example in EXAMPLES.items():
        with Image.open(example.path) as image:
            out[name] = preprocess_image(image, model.preprocessing)
    return out


def values_on(engine: Engine, model: ModelSpec, spec: VisualizeSpec, images: torch.Tensor,
              inputs: dict[int, torch.Tensor]) -> list[list[float]]:
    """Each item's objective on each of `images`: the start of a run whose images are set
    to it (the objective of a DeepDream is evaluated on the image it starts from)."""
    out = []
    for image in images:
        run = VisualizationRun.start(engine, spec, spec.items(),
                                     preprocessing=model.preprocessing, inputs=inputs)
        run.param.assign(image.expand(len(spec.items()), -1, -1, -1).to(engine.device))
        out.append(run.evaluate())
    return [list(column) for column in zip(*out, strict=True)]


def top5(engine: Engine, model: ModelSpec, image: np.ndarray) -> list[dict[str, Any]]:
    """The model's five most probable classes on a normalized picture."""
    with torch.no_grad():
        probs = engine.model(torch.from_numpy(image)[None].to(engine.device)).softmax(dim=1)[0]
    top = probs.topk(5)
    return [{"class": int(c), "name": model.class_name(int(c)), "p": round(float(p), 4)}
            for p, c in zip(top.values, top.indices, strict=True)]


def grey_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The correlation of two C×H×W images' grey levels (the mean over channels)."""
    return round(float(np.corrcoef(a.mean(axis=0).ravel(), b.mean(axis=0).ravel())[0, 1]), 4)


def describe(engine: Engine, model: ModelSpec, result: ItemResult, start: np.ndarray,
             photo_values: list[float], inputs: dict[int, torch.Tensor]) -> dict[str, Any]:
    """What the docs say about one picture."""
    objective = result.item.objective
    out: dict[str, Any] = {"objective": objective.to_json(), **{
        k: round(v, 4) for k, v in result.metrics.items()},
        "photos": {name: round(v, 4) for name, v in zip(EXAMPLES, photo_values, strict=True)}}
    if isinstance(objective, ClassObjective):
        out["top5"] = top5(engine, model, result.image)
    if isinstance(objective, InvertObjective):
        original = inputs[result.item.index].numpy()
        out["grey_correlation_with_photo"] = grey_correlation(result.image, original)
        out["grey_correlation_of_start"] = grey_correlation(start, original)
    if isinstance(objective, (ChannelObjective, ClassObjective)):
        out["exceeds_every_photo"] = result.metrics["final"] > max(photo_values)
    return out


def strip(snapshots: list[Snapshot], item: int) -> bytes:
    """One item's snapshots side by side at half size."""
    pictures = [display_image(s.image, s.prep)[::2, ::2] for s in snapshots if s.item == item]
    return encode_png(np.concatenate(pictures, axis=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/visualize"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--panels", default=",".join(name for name, _ in PANELS),
                        help="comma-separated subset of the panels")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    engine, model = build(args.device)
    examples = photos(model)
    summary_path = args.out / "gallery.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name, raw in PANELS:
        if name not in args.panels.split(","):
            continue
        started = time.perf_counter()
        limit = Settings.from_env().max_visualize_steps
        spec = parse_visualize_spec({"model": model.name, **raw}, max_steps=limit).for_model(model)
        inputs = {item.index: examples[item.objective.input.value] for item in spec.items()
                  if isinstance(item.objective, (InvertObjective, DreamObjective))}
        run = VisualizationRun.start(engine, spec, spec.items(),
                                     preprocessing=model.preprocessing, inputs=inputs)
        starts = run.images()
        snapshots = run.step(spec.steps).snapshots
        results = run.results()
        photo_values = values_on(engine, model, spec, torch.stack(list(examples.values())),
                                 inputs)
        panel = []
        for result, start, values in zip(results, starts, photo_values, strict=True):
            (args.out / f"{name}-{result.item.index}.png").write_bytes(result.png())
            panel.append(describe(engine, model, result, start, values, inputs))
        if snapshots:
            (args.out / f"{name}-0-steps.png").write_bytes(strip(snapshots, 0))
        summary[name] = {"spec": spec.to_json(), "items": panel,
                         "seconds": round(time.perf_counter() - started, 1)}
        summary_path.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"{name}: {len(results)} pictures in {summary[name]['seconds']} s", flush=True)


if __name__ == "__main__":
    main()

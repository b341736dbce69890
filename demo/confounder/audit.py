"""The demo's audit, in-process: the manifest through the engine and the audit library.

It does what the service does for a data-set job (metrics per output, thumbnails, SpRAy per
predicted class, input dependence, the report) without the service around it, and measures
the three figures the demo must reach: marked pictures among the top suspects, in a cluster
of their own, and clean pictures' relevance on their object.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from demo.confounder.data import read_split
from demo.confounder.figures import Figures, figures
from shared.media.renderings import Rendering
from shared.settings import Settings
from shared.spec.methods import method_spec
from shared.spec.model import ModelSpec
from worker.engine.core import Engine
from worker.kinds.attribution.audit import (
    MIN_CLASS_ITEMS,
    Report,
    ReportBuilder,
    baseline_metrics,
    box_to_input,
    input_dependence,
    item_metrics,
    spray_clusters,
    suspect_overlay_png,
    thumbnail,
)
from worker.kinds.attribution.audit.spray import Clustering, group_seed, sample_order
from worker.models.build import display_image, preprocess_image

METHODS = ("gradient", "guided_backprop")
BATCH = 64
DEPENDENCE_SAMPLE = 32


@dataclass(frozen=True)
class DemoAudit:
    report: Report
    marked: np.ndarray  # per item index
    figures: Figures


def cluster(entries: list[tuple[int, np.ndarray]], seed: int, cap: int) -> Clustering:
    """One group's (item index, thumbnail) pairs clustered as the service does: a seeded
    sample of at most `cap` maps, the others assigned to their nearest cluster."""
    order, sampled = sample_order(len(entries), cap, seed)
    ids = np.array([entries[i][0] for i in order])
    thumbs = np.stack([entries[i][1] for i in order])
    return spray_clusters(thumbs[:sampled], ids[:sampled], seed=seed,
                          rest=[(ids[sampled:], thumbs[sampled:])])


def audit(manifest: Path, model: nn.Module, spec: ModelSpec, *,
          methods: Sequence[str] = METHODS, seed: int = 0,
          spray_sample: int = Settings.spray_sample) -> DemoAudit:
    """Audit the pictures of `manifest` (ids ending in `marked` carry the watermark);
    `spray_sample` is the service's `SALIENCY_SPRAY_SAMPLE`."""
    items = read_split(manifest)
    prep = spec.preprocessing
    side = prep.input_size
    x = torch.stack([preprocess_image(item["image"], prep) for item in items])
    regions = [box_to_input(item["box"], item["image"].size, prep) for item in items]
    marked = np.array([item["id"].endswith("marked") for item in items])
    engine = Engine(model)
    builder = ReportBuilder(input_size=side, class_names=spec.class_names)
    thumbs: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
    signed: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    maps: dict[tuple[int, int], np.ndarray] = {}
    drawings: dict[int, Rendering] = {}
    energy = np.full(len(items), np.nan)
    baseline = np.full(len(items), np.nan)
    for start in range(0, len(items), BATCH):
        result = engine.attribute(x[start:start + BATCH], methods=methods)
        for offset, image in enumerate(result.images):
            index = start + offset
            item, region = items[index], regions[index]
            base = baseline_metrics(region, side)
            baseline[index] = np.nan if base["energy_in_box"] is None else base["energy_in_box"]
            for position, output in enumerate(image.maps):
                metrics = item_metrics(output.values, region, side)
                builder.add({
                    "index": index, "id": item["id"], "uri": item["uri"],
                    "label": item["label"], "predicted": image.predicted_class,
                    "method": output.method, "position": position,
                    **{k: v for k, v in metrics.items() if k != "reasons"},
                    "baseline_energy_in_box": base["energy_in_box"],
                    "baseline_pointing_hit": base["pointing_hit"],
                })
                thumbs[(position, image.predicted_class)].append(
                    (index, thumbnail(output.values)))
                maps[(index, position)] = output.values
                drawings[position] = Rendering(method_spec(output.method)["render"],
                                               grid=output.extras.get("grid"))
                if position == 0 and metrics["energy_in_box"] is not None:
                    energy[index] = metrics["energy_in_box"]
                if len(signed[position]) < DEPENDENCE_SAMPLE:
                    signed[position].append((image.predicted_class, output.values))

    clusters = {
        (position, cls): cluster(entries, group_seed(seed, position, cls), spray_sample)
        for (position, cls), entries in sorted(thumbs.items())
        if len(entries) >= MIN_CLASS_ITEMS
    }
    dependence = {
        position: input_dependence([m for _, m in sample], [c for c, _ in sample],
                                   methods[position])
        for position, sample in signed.items()
    }

    def overlay(index: int, position: int) -> bytes:
        return suspect_overlay_png(display_image(x[index], prep), maps[(index, position)],
                                   regions[index], drawings[position])

    report = builder.build(clusters=clusters, input_dependence=dependence, overlay=overlay)
    return DemoAudit(report, marked, figures(report.data, marked, energy, baseline))

"""What an attributed item leaves behind: its output files, its metrics, and its record.

Upload and inline jobs write every requested output as a file per item (v1); data-set jobs
put the raw maps into the segment's shard (`shared.storage.shards`) and write per-item files only
for the kinds the job's `write` names. Every output gets the audit metrics of its map
(`worker.kinds.attribution.audit`), computed on float32 before anything is stored, and the colour
bars of its pictures (the API draws a data-set job's on demand, from the same
`shared.media.renderings`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from shared.media.renderings import PICTURES, Rendering
from shared.results.records import ItemRecord, MapRef, OutputRecord, Prediction, finite_or_none
from shared.spec.job import AttributionSpec
from shared.spec.methods import MethodSpec
from shared.spec.model import ModelSpec
from shared.spec.targets import ClassTarget, LabelTarget, LayerTarget, Target
from shared.status import ItemStatus
from shared.storage.interface import Storage
from shared.storage.keys import JobKeys
from worker.jobs.inputs import Loaded
from worker.kinds.attribution.audit import (
    Region,
    baseline_metrics,
    box_to_input,
    item_metrics,
    mask_to_input,
    objects_to_input,
)

CONTENT_TYPES = {"npy": "application/octet-stream", "png": "image/png", "overlay": "image/png",
                 "signed": "image/png"}


def rendering(spec: AttributionSpec, method: MethodSpec, amap: Any) -> Rendering:
    """How the map's pictures are drawn: its method's `render`, the job's `reduce` and
    `overlay_opacity`, and the layer grid a CAM was upsampled from."""
    return Rendering(method["render"], spec.reduce, spec.overlay_opacity,
                     amap.extras.get("grid"))


def write_files(storage: Storage, keys: JobKeys, drawing: Rendering, model: ModelSpec,
                item: Loaded, amap: Any, kinds: tuple[str, ...]
                ) -> tuple[dict[str, str], dict[str, Any]]:
    """Write one map's files of the given kinds; returns kind -> storage key, and the colour
    bars of the pictures among them."""
    from worker.models.build import display_image

    files: dict[str, str] = {}
    bars: dict[str, Any] = {}
    values = amap.values
    photo = display_image(item.x, model.preprocessing) if any(
        drawing.needs_photo(kind) for kind in kinds) else None
    for kind in kinds:
        key = keys.output(item.index, amap.position, amap.method, kind, amap.rank)
        if kind == "npy":
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(values, dtype=np.float32))
            data = buf.getvalue()
        else:
            data, bar = drawing.draw(kind, values, photo)
            bars[kind] = bar.to_json()
        storage.put(key, data, CONTENT_TYPES[kind])
        files[kind] = key
    return files, bars


def colorbars(drawing: Rendering, values: np.ndarray, kinds: tuple[str, ...],
              drawn: dict[str, Any]) -> dict[str, Any]:
    """The colour bars of the job's pictures: those drawn, and those the API draws later."""
    later = tuple(kind for kind in kinds if kind in PICTURES and kind not in drawn)
    computed = {kind: bar.to_json() for kind, bar in drawing.colorbars(later, values).items()}
    return {kind: drawn.get(kind) or computed[kind] for kind in kinds if kind in PICTURES}


def object_class(target: Target, label: int | None, predicted: int) -> tuple[int, str]:
    """The class whose annotated objects are an item's object, and what it is to the item:
    a `{"class": k}` target's class; the label for a `"label"` target (and for a layer
    target, when the item has one); else the predicted class (`"predicted"`, and a top-k
    target's rank 0, the map the audit reads)."""
    if isinstance(target, ClassTarget):
        return target.index, "the target class"
    if isinstance(target, (LabelTarget, LayerTarget)) and label is not None:
        return label, "the label"
    return predicted, "the predicted class"


def region(item: Loaded, model: ModelSpec,
           cls: tuple[int, str] | None = None) -> Region | None:
    """The item's object in the model's input space, if the input gives one: its own box or
    mask, else its annotation's objects of the class `cls` (`object_class`)."""
    prep = model.preprocessing
    if item.mask is not None:
        return mask_to_input(item.mask, prep)
    if item.source.box is not None and item.size is not None:
        return box_to_input(item.source.box, item.size, prep)
    if item.source.objects is not None and cls is not None:
        index, role = cls
        name = model.class_name(index)
        what = f"class {index}" + (f" ({name})" if name else "") + f", {role}"
        return objects_to_input(item.source.objects, index, what, item.size, prep)
    return None


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in metrics.items()}


def baseline(item_region: Region | None, model: ModelSpec) -> dict[str, Any] | None:
    """The centre-Gaussian baseline's figures for the item's object (None: no object)."""
    if item_region is None:
        return None
    return _clean(baseline_metrics(item_region, model.preprocessing.input_size))


def output_record(amap: Any, spec: MethodSpec, coverage: Any, item_region: Region | None,
                  side: int, files: dict[str, str], map_ref: MapRef | None,
                  colorbars: dict[str, Any] | None = None) -> OutputRecord:
    """One map's record: where it is, what it is of, its metrics, warnings and colour bars."""
    metrics = None
    if amap.values.ndim == 3 and amap.values.shape[1:] == (side, side):
        metrics = _clean(item_metrics(amap.values, item_region, side))
    params = spec.to_json() if isinstance(spec.to_json(), dict) else None
    if params is not None:
        params = {k: v for k, v in params.items() if k != "name"}
    return OutputRecord(
        method=amap.method, position=amap.position, target=amap.target, files=files,
        map=map_ref, params=params, coverage=coverage.to_json() if coverage else None,
        metrics=metrics, warnings=tuple(amap.warnings),
        convergence_delta=finite_or_none(amap.extras.get("convergence_delta")), rank=amap.rank,
        colorbars=colorbars or None, grid=amap.extras.get("grid"),
    )


def prediction(model: ModelSpec, result: Any) -> Prediction:
    return Prediction(result.predicted_class, float(result.score),
                      model.class_name(result.predicted_class))


def succeeded(item: Loaded, model: ModelSpec, result: Any, outputs: list[OutputRecord],
              worker: str | None, base: dict[str, Any] | None) -> ItemRecord:
    label_score = None if item.label is None else finite_or_none(float(result.probs[item.label]))
    return ItemRecord(
        index=item.index, status=ItemStatus.SUCCEEDED, input=item.source.name,
        id=item.source.id, prediction=prediction(model, result), outputs=tuple(outputs),
        worker=worker, label=item.label, label_score=label_score, box=item.source.box,
        baseline=base,
    )


def failed(item: Loaded, message: str, worker: str | None) -> ItemRecord:
    return ItemRecord(index=item.index, status=ItemStatus.FAILED, input=item.source.name,
                      id=item.source.id, error=message, worker=worker, label=item.label,
                      box=item.source.box)

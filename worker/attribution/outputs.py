"""What an attributed item leaves behind: its output files, and its record.

Upload and inline jobs write every requested output as a file per item (v1); data-set jobs
put the raw maps into the segment's shard (`shared.shards`) and write per-item files only
for the kinds the job's `write` names. Rendering is `shared.render`, numpy only.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from shared import render
from shared.keys import JobKeys
from shared.modelspec import ModelSpec
from shared.records import ItemRecord, MapRef, OutputRecord, Prediction
from shared.specs import AttributionSpec
from shared.status import ItemStatus
from shared.storage import Storage
from worker.inputs import Loaded

CONTENT_TYPES = {"npy": "application/octet-stream", "png": "image/png", "overlay": "image/png",
                 "signed": "image/png"}


def write_files(storage: Storage, keys: JobKeys, spec: AttributionSpec, model: ModelSpec,
                item: Loaded, position: int, method: str, values: np.ndarray,
                kinds: tuple[str, ...]) -> dict[str, str]:
    """Write one map's files of the given kinds; returns kind -> storage key."""
    from worker.models import display_image

    files: dict[str, str] = {}
    map2d = render.reduce_channels(values, spec.reduce) if {"png", "overlay"} & set(kinds) else None
    for kind in kinds:
        key = keys.output(item.index, position, method, kind)
        if kind == "npy":
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(values, dtype=np.float32))
            data = buf.getvalue()
        elif kind == "png":
            data = render.heatmap_png(map2d)
        elif kind == "overlay":
            data = render.overlay_png(display_image(item.x, model.preprocessing), map2d)
        else:
            data = render.signed_rgb_png(values)
        storage.put(key, data, CONTENT_TYPES[kind])
        files[kind] = key
    return files


def prediction(model: ModelSpec, result: Any) -> Prediction:
    return Prediction(result.predicted_class, float(result.score),
                      model.class_name(result.predicted_class))


def succeeded(item: Loaded, model: ModelSpec, result: Any, outputs: list[OutputRecord],
              worker: str | None, label_score: float | None) -> ItemRecord:
    return ItemRecord(
        index=item.index, status=ItemStatus.SUCCEEDED, input=item.source.name,
        id=item.source.id, prediction=prediction(model, result), outputs=tuple(outputs),
        worker=worker, label=item.label, label_score=label_score, box=item.source.box,
    )


def failed(item: Loaded, message: str, worker: str | None) -> ItemRecord:
    return ItemRecord(index=item.index, status=ItemStatus.FAILED, input=item.source.name,
                      id=item.source.id, error=message, worker=worker, label=item.label,
                      box=item.source.box)


def output_record(amap: Any, position: int, coverage: dict[str, int] | None,
                  files: dict[str, str], map_ref: MapRef | None,
                  params: dict[str, Any] | None) -> OutputRecord:
    return OutputRecord(method=amap.method, position=position, target=amap.target,
                        files=files, map=map_ref, params=params, coverage=coverage)

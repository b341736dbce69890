"""An attribution job's report, in checkpointed steps (`worker.jobs.finalizing`, after the results
file): the audit report (`worker.kinds.attribution.audit.ReportBuilder`, fed the results' rows),
with the clusters and the sanity check of the audit phase, the measured input dependence of each
method (one step each) and the report's pictures (one step each, the suspects' overlays drawn
then). The results file has every output; the report audits each item's leading map per
method (of a top-k target, rank 0: the predicted class).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from shared.media.renderings import Rendering
from shared.results.records import OutputRecord
from shared.results.reports import artifact_ref
from shared.spec.inputs import InputRef
from shared.spec.job import AttributionSpec
from shared.spec.model import ModelSpec
from shared.state.jobs import Job
from shared.storage.keys import JobKeys
from shared.storage.shards import read_map
from worker.jobs.context import WorkerContext
from worker.jobs.finalizing import Finalizing, part_rows
from worker.kinds.attribution.audit_phase import PLAN, SANITY, clusters_name, load_clustering

DEPENDENCE_SAMPLE = 64


def _read_map(ctx: WorkerContext, shard: str | None, position: int, row: int | None,
              npy: str | None) -> np.ndarray | None:
    """An output's raw map, from its shard or its `.npy` file (None if neither was kept)."""
    if shard is not None:
        return read_map(ctx.storage, shard, position, row)
    if npy is not None:
        return np.load(io.BytesIO(ctx.storage.get(npy)))
    return None


def _map(ctx: WorkerContext, output: OutputRecord) -> np.ndarray | None:
    return _read_map(ctx, output.map.shard if output.map else None, output.position,
                     output.map.row if output.map else None, output.files.get("npy"))


class _Audit:
    """The report's inputs, gathered from the results' rows as they stream past."""

    def __init__(self, ctx: WorkerContext, job: Job, model: ModelSpec | None) -> None:
        from worker.kinds.attribution.audit import ReportBuilder

        self.ctx, self.job, self.model = ctx, job, model
        side = model.preprocessing.input_size if model else 0
        self.builder = ReportBuilder(input_size=side,
                                     class_names=model.class_names if model else None)
        self.samples: dict[int, list[dict[str, Any]]] = {}
        self.parts = None  # worker.jobs.inputs.RunParts: the suspects' inputs, read together

    def prefetch(self, indices: list[int]) -> None:
        """Have the inputs of items `indices` (the suspects to draw) read together when the
        first is drawn: those kept in one shard or file are one range read where they lie
        close, not a read each."""
        from worker.jobs.inputs import RunParts
        from worker.jobs.refs import ref_source

        if self.model is not None and indices:
            self.parts = RunParts(self.ctx, self.job, self.model, {
                i: ref_source(self.ctx, self.job, InputRef("item", i)) for i in indices})

    def add(self, row: dict[str, Any]) -> None:
        self.builder.add(row)
        if row["rank"]:
            return  # a lower top-k rank: not the predicted class's map
        if row["method"] is not None and row["predicted"] is not None:
            sample = self.samples.setdefault(row["position"], [])
            if len(sample) < DEPENDENCE_SAMPLE:
                sample.append(row)

    def dependence(self, position: int) -> dict[str, Any] | None:
        """The input dependence of the method at `position`, from its sampled maps."""
        from worker.kinds.attribution.audit import input_dependence

        sample = self.samples[position]
        maps = [(m, row["predicted"]) for row in sample
                if (m := _read_map(self.ctx, row["shard"], position, row["row"], row["npy"]))
                is not None]
        if len(maps) < 2:
            return None
        return input_dependence([m for m, _ in maps], [c for _, c in maps],
                                sample[0]["method"]).to_json()

    def _clusters(self) -> dict[tuple[int, int], Any]:
        keys = JobKeys(self.job.tenant, self.job.id)
        try:
            tasks = json.loads(self.ctx.storage.get(keys.artifact(PLAN)))
        except FileNotFoundError:
            return {}
        out = {}
        for task in tasks:
            if "group" in task:
                position, cls = task["group"]
                try:
                    data = self.ctx.storage.get(keys.artifact(clusters_name(position, cls)))
                except FileNotFoundError:
                    continue  # a cancelled job's group that was not clustered
                out[(position, cls)] = load_clustering(data)
        return out

    def _sanity(self):
        try:
            data = json.loads(self.ctx.storage.get(
                JobKeys(self.job.tenant, self.job.id).artifact(SANITY)))
        except FileNotFoundError:
            return None
        return _Stored(data)

    def _overlay(self, index: int, position: int) -> bytes:
        from worker.jobs.inputs import load_input
        from worker.jobs.refs import ref_source
        from worker.kinds.attribution.audit import suspect_overlay_png
        from worker.kinds.attribution.outputs import object_class, region
        from worker.models.build import display_image

        ctx = self.ctx
        record = ctx.layout(self.job).record(index)
        out = next((o for o in record.outputs if o.position == position and o.leading),
                   None) if record else None
        if out is None:
            raise LookupError(f"item {index}: no output {position}")
        loaded = load_input(self.ctx, self.job.tenant, self.model, index,
                            ref_source(self.ctx, self.job, InputRef("item", index)), self.parts)
        values = _map(self.ctx, out)
        if loaded.error is not None or values is None:
            raise LookupError(f"item {index}: no picture or map to draw")
        rgb = display_image(loaded.x, self.model.preprocessing)
        cls = object_class(self.job.spec.work.target, loaded.label, record.prediction.cls)
        return suspect_overlay_png(rgb, values, region(loaded, self.model, cls),
                                   Rendering.of(self.job.spec.work, out.params, out.grid))

    def overlay(self, index: int, position: int) -> bytes:
        """A suspect's picture: its map over its input (grey where neither can be had)."""
        try:
            return self._overlay(index, position)
        except LookupError:
            from shared.media.render import encode_png

            return encode_png(np.full((8, 8, 3), 128, dtype=np.uint8))

    def build(self, dependence: dict[int, dict[str, Any]]
              ) -> tuple[dict[str, Any], dict[str, bytes], dict[str, tuple[int, int]]]:
        """The report's JSON, its pictures (a suspect's is drawn later: empty here), and each
        suspect picture's (item, method position)."""
        report = self.builder.build(
            clusters=self._clusters(),
            input_dependence={p: _Stored(d) for p, d in dependence.items()},
            sanity=self._sanity(), overlay=(lambda _i, _p: b"") if self.model else None)
        suspects = {s["overlay"]: (s["index"], s["position"])
                    for s in report.data["suspects"] if s["overlay"]}
        return report.data, report.pictures, suspects


class _Stored:
    """A result written by an audit chunk, as JSON (what the report builder asks of it)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data


def _referenced(data: Any, pictures: dict[str, bytes]) -> Any:
    """The report with each picture's name turned into an artifact reference."""
    if isinstance(data, dict):
        return {k: _referenced(v, pictures) for k, v in data.items()}
    if isinstance(data, list):
        return [_referenced(v, pictures) for v in data]
    if isinstance(data, str) and data in pictures:
        return artifact_ref(data)
    return data


def attribution_report(f: Finalizing, model: ModelSpec | None) -> Iterator[str]:
    """Write the audit report of an attribution job, step by step."""
    ctx, job = f.ctx, f.job
    audit = _Audit(ctx, job, model)
    for row in part_rows(f):
        audit.add(row)
    dependence = {}
    for position in sorted(audit.samples):
        step = f"dependence:{position}"
        if not f.has(step):
            f.record(**{step: json.dumps(audit.dependence(position))})
            yield step
        if (result := json.loads(f.done[step])) is not None:
            dependence[position] = result
    data, pictures, suspects = audit.build(dependence)
    audit.prefetch(sorted({suspects[name][0] for name in pictures
                           if name in suspects and not f.has(f"picture:{name}")}))
    # Suspects in the order of their inputs, which are read together in that order a slice at
    # a time (`worker.jobs.inputs.RunParts`): in rank order a slice would be read again and again.
    for name in sorted(pictures, key=lambda n: (suspects.get(n, (-1, 0)), n)):
        step = f"picture:{name}"
        if f.has(step):
            continue
        png = audit.overlay(*suspects[name]) if name in suspects else pictures[name]
        ctx.storage.put(f.keys.artifact(name), png, "image/png")
        f.record(**{step: "1"})
        yield step
    data = _referenced(data, pictures)
    work: AttributionSpec = job.spec.work
    data["spec"] = {"methods": [m.to_json() for m in work.methods],
                    "target": work.target.to_json()}
    yield f.write_report(data)

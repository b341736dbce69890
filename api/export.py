"""`GET /v1/jobs/{id}/export?format=fiftyone`: a final attribution job as a FiftyOne dataset
(`shared.results.fiftyone`), one zip streamed as it is built.

Each item is read once, in order: its input (copied into `data/`, or with `images=false` a
local one referenced by its path), then each output's raw map (the `.npy` of an upload job,
or cut from a data-set job's shard), reduced and written as a 16-bit heatmap with the map
beside it. The sample documents are deflated into a temporary file and sent after the maps,
then the dataset document with the schema they used. Memory is one item's maps, whatever the
job's size.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

import numpy as np
from flask import Blueprint, Flask, Response, request, stream_with_context

from api.context import services
from api.jobs import own_job, require_final
from shared.errors import InputError, SpecError
from shared.media.images import sniff_format
from shared.media.render import reduce_channels
from shared.results.fiftyone import (
    Heatmap,
    Ids,
    ReportIndex,
    SampleWriter,
    dataset_document,
    heatmap_png,
    output_field,
)
from shared.results.records import InputSource, ItemRecord, OutputRecord
from shared.state.itemlayout import ItemLayout
from shared.state.jobs import Job
from shared.storage.keys import INPUT_EXTENSIONS, JobKeys
from shared.storage.shards import ShardHeader, read_header, read_map
from shared.storage.zipstream import Deflated, ZipStream

bp = Blueprint("export", __name__, url_prefix="/v1/jobs")
FORMATS = ("fiftyone",)
FLAGS = {"true": True, "1": True, "false": False, "0": False}


def _flag(name: str, default: bool) -> bool:
    raw = request.args.get(name, "").lower()
    if raw == "":
        return default
    if raw not in FLAGS:
        raise SpecError(name, f"must be true or false, got {raw[:20]!r}")
    return FLAGS[raw]


def _dumps(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def _stem(index: int) -> str:
    return f"{index:06d}"


class _Sources:
    """Each item's input, read a page (or a plan file) at a time."""

    def __init__(self, layout: ItemLayout) -> None:
        self.layout = layout
        self._first, self._sources = -1, []

    def get(self, index: int) -> InputSource:
        size = self.layout.page_size
        first = index - index % size
        if first != self._first:
            stop = min(first + size, self.layout.job.total)
            self._first = first
            self._sources = self.layout.inputs(first, stop)
        return self._sources[index - first]


class FiftyOneExport:
    """The zip of one job, as a stream of byte chunks."""

    def __init__(self, job: Job, images: bool) -> None:
        svc = services()
        self.job, self.images, self.svc = job, images, svc
        self.reduce = job.spec.work.reduce
        report = json.loads(svc.storage.get(JobKeys(job.tenant, job.id).report))
        try:
            model = svc.models.for_job(job).spec
        except InputError:  # the model was deleted: class indices stand for its names
            model = None
        self.classes = list(model.class_names or ()) if model else []
        self.writer = SampleWriter(Ids(job.id, job.created_ts),
                                   model.class_name if model else (lambda _i: None),
                                   ReportIndex.of(report))
        self.layout = svc.layout(job)
        self.sources = _Sources(self.layout)
        self._header: tuple[str, ShardHeader] | None = None

    def chunks(self) -> Iterator[bytes]:
        archive, samples = ZipStream(self.job.created_ts), Deflated()
        try:
            samples.write(b'{"samples":[')
            separator = b""
            for record in self.layout.records():
                filepath, entry = self._input(record)
                if entry is not None:
                    yield archive.entry(filepath, entry)
                heatmaps: dict[str, Heatmap] = {}
                for out in record.outputs:
                    yield from self._heatmap(archive, record.index, out, heatmaps)
                doc = self.writer.sample(record, filepath, heatmaps)
                samples.write(separator + _dumps(doc))
                separator = b","
            samples.write(b"]}")
            samples.finish()
            yield from archive.spooled("samples.json", samples)
            yield archive.entry("metadata.json", _dumps(self._dataset()), compress=True)
            yield from archive.close()
        finally:  # also when the client goes away part-way
            samples.close()
            archive.discard()

    def _dataset(self) -> dict:
        spec = self.job.spec
        info = {"saliency": {
            "job": self.job.id, "model": spec.model,
            "methods": [m.to_json() for m in spec.work.methods],
            "target": spec.work.target.to_json(), "reduce": self.reduce,
            "heatmaps": "16-bit PNG of the channel-reduced map: value = pixel / 65535 * "
                        "value_range[1]; the raw map is the .npy beside it"}}
        name = f"saliency-{self.job.id}"
        return dataset_document(name, self.writer.schema, self.classes, info)

    def _input(self, record: ItemRecord) -> tuple[str, bytes | None]:
        """The sample's filepath, and the input's bytes when they go into the archive. With
        `images=false` an input under a `file://` URI is referenced by its path; every other
        input is copied (FiftyOne reads local files only). An input that cannot be read has
        a path in `data/` with no file."""
        source = self.sources.get(record.index)
        stem = f"data/{_stem(record.index)}"
        uri = urlparse(source.uri or "")
        if uri.scheme == "file" and not self.images:
            return unquote(uri.path), None
        if source.error is not None:
            return f"{stem}.missing", None
        try:
            data = self.svc.locator.read(self.job.tenant, source)
        except (FileNotFoundError, InputError):
            return f"{stem}.missing", None
        return f"{stem}.{INPUT_EXTENSIONS.get(sniff_format(data) or '', 'bin')}", data

    def _map(self, out: OutputRecord) -> tuple[np.ndarray, bytes] | None:
        """An output's raw map and its `.npy` bytes (None if the job kept none)."""
        storage = self.svc.storage
        if out.map is not None:
            if self._header is None or self._header[0] != out.map.shard:
                self._header = (out.map.shard, read_header(storage, out.map.shard))
            values = read_map(storage, out.map.shard, out.position, out.map.row,
                              self._header[1])
            buffer = io.BytesIO()
            np.save(buffer, values)
            return values, buffer.getvalue()
        if "npy" in out.files:
            data = storage.get(out.files["npy"])
            return np.load(io.BytesIO(data)), data
        return None

    def _heatmap(self, archive: ZipStream, index: int, out: OutputRecord,
                 heatmaps: dict[str, Heatmap]) -> Iterator[bytes]:
        found = self._map(out)
        if found is None:
            return
        values, npy = found
        field = output_field(out)
        png, top = heatmap_png(reduce_channels(values, self.reduce))
        path = f"fields/{field}/{_stem(index)}"
        yield archive.entry(f"{path}.png", png)
        yield archive.entry(f"{path}.npy", npy)
        heatmaps[field] = Heatmap(f"{path}.png", top)


@bp.get("/<job_id>/export")
def export(job_id: str):
    job = own_job(job_id)
    fmt = request.args.get("format", "fiftyone")
    if fmt not in FORMATS:
        raise SpecError("format", f"must be one of {list(FORMATS)}, got {fmt[:40]!r}")
    images = _flag("images", True)
    if job.kind != "attribution":
        raise SpecError("format", f"a {fmt} export is made of an attribution job's maps; "
                                  f"this job is {job.kind}")
    require_final(job, "export")
    body = FiftyOneExport(job, images).chunks()
    response = Response(stream_with_context(body), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{fmt}-{job.id}.zip"'
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

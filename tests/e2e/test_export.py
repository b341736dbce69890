"""The FiftyOne export on the real stack (local and S3 storage): an upload job with a top-k
target and a data-set audit, each downloaded through the CLI and every sample loaded with
FiftyOne's own `Sample` and `Heatmap` (no database), checked field by field against the job's
items, results rows and report; each heatmap PNG decodes to its map within the 16-bit steps,
each `.npy` equals the job's map. Before the job is final 409, an unknown format 400, another
tenant 404; the schema is FiftyOne's own for the values the samples hold."""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from saliency_client import cli
from stacks import ADMIN_KEY
from waiting import job_final

from e2e.helpers import all_items, download, image_bytes, submit

METRICS = ("energy_in_box", "pointing_hit", "border_energy", "concentration")
METHODS = ["gradient", "guided_backprop"]
DEFAULTS = ("id", "filepath", "tags", "metadata", "created_at", "last_modified_at",
            "_media_type", "_rand", "_dataset_id")


@pytest.fixture(scope="module")
def fo():
    """FiftyOne's modules that work without a database (it warns of deprecations on import)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import fiftyone.core.fields as fof
        import fiftyone.core.labels as fol
        import fiftyone.core.metadata as fome
        import fiftyone.core.odm as foo
        import fiftyone.core.odm.utils as foou
        import fiftyone.core.sample as fos
        import fiftyone.utils.data.importers as foi
    return type("FiftyOne", (), {"fields": fof, "labels": fol, "metadata": fome, "odm": foo,
                                 "odm_utils": foou, "sample": fos, "importers": foi})


def _export(stack, job_id: str, out: Path, *extra: str) -> tuple[int, str]:
    code = cli.main(["--url", stack.url, "--api-key", ADMIN_KEY, "export", job_id,
                     "--format", "fiftyone", "--out", str(out), *extra])
    return code, str(out)


def _load(fo, folder: Path) -> tuple[dict, list]:
    """metadata.json, and every sample as `FiftyOneDatasetImporter` reads them before its
    database: parsed by FiftyOne's readers, relative paths joined to the folder by its rules
    (the filepath, and the map of each field with a folder in fields/), then
    `Sample.from_dict`."""
    metadata = fo.odm.import_document(str(folder / "metadata.json"))
    raw, _ = fo.odm.import_collection(str(folder / "samples.json"), key="samples")
    fields = folder / "fields"
    media = {p.name: False for p in fields.iterdir()} if fields.is_dir() else {}
    samples = []
    for doc in raw:
        if not os.path.isabs(doc["filepath"]):
            doc["filepath"] = os.path.join(str(folder), doc["filepath"])
        fo.importers._parse_media_fields(doc, media, str(folder))
        samples.append(fo.sample.Sample.from_dict(doc))
    return metadata, samples


def _get(sample, name: str):
    """A sample's field, None where it has none (a field other samples have)."""
    return sample[name] if sample.has_field(name) else None


def _schema_doc(fo, name: str, value) -> dict:
    """FiftyOne's own schema of a field holding `value` (a label's declared attributes, and
    `value_range` of a heatmap as `add_dynamic_sample_fields` would declare it)."""
    utils, odm = fo.odm_utils, fo.odm
    doc = odm.SampleFieldDocument.from_field(
        utils.create_field(name, **utils.get_implied_field_kwargs(value))).to_dict()
    if isinstance(value, fo.labels.Heatmap):
        extra = utils.create_field("value_range",
                                   **utils.get_implied_field_kwargs(value.value_range))
        doc["fields"].append(odm.SampleFieldDocument.from_field(extra).to_dict())
    return doc


def _without_times(doc: dict) -> dict:
    return {k: [_without_times(f) for f in v] if k == "fields" else v
            for k, v in doc.items() if k != "created_at"}


def _check_schema(fo, metadata: dict, samples: list) -> None:
    declared = [_without_times(d) for d in metadata["sample_fields"]]
    cls = type("samples.export", (fo.odm.DatasetSampleDocument,), {})
    image = fo.odm.create_field("metadata", fo.fields.EmbeddedDocumentField,
                                embedded_doc_type=fo.metadata.ImageMetadata)
    defaults = [fo.odm.SampleFieldDocument.from_field(image if name == "metadata" else f)
                for name, f in cls._fields.items() if name in DEFAULTS]
    assert declared[:len(defaults)] == [_without_times(d.to_dict()) for d in defaults]
    names = [d["name"] for d in declared[len(defaults):]]
    assert names, "no field of the job was declared"
    for doc in declared[len(defaults):]:
        value = next(_get(s, doc["name"]) for s in samples
                     if _get(s, doc["name"]) is not None)
        assert doc == _without_times(_schema_doc(fo, doc["name"], value)), doc["name"]
    for sample in samples:  # every field a sample holds is declared
        assert set(sample.field_names) - {"id", "media_type"} <= set(DEFAULTS) | set(names)
    assert metadata["media_type"] == "image" and metadata["version"]
    document = fo.odm.DatasetDocument.from_dict({**metadata, "sample_collection_name": "s.x"})
    document.validate()
    for field in document.sample_fields:  # as FiftyOne builds a loaded dataset's schema
        field.to_field()


def _reduced(values: np.ndarray) -> np.ndarray:
    """The job's default reduction (`max_abs`), written out."""
    return np.abs(values.astype(np.float64)).max(axis=0)


def _field(output: dict, position: int) -> str:
    """The export's name of an output's map field."""
    rank = "" if output.get("rank") is None else f"_r{output['rank']}"
    return f"{output['method']}_{position}{rank}"


def _check_heatmap(heatmap, folder: Path, field: str, index: int, job_map: bytes) -> None:
    stem = folder / "fields" / field / f"{index:06d}"
    assert heatmap.map_path == f"{stem}.png"
    assert Path(f"{stem}.npy").read_bytes() == job_map
    values = np.load(io.BytesIO(job_map))
    want = _reduced(values)
    pixels = heatmap.get_map()  # FiftyOne's own reader (OpenCV, unchanged depth)
    assert pixels.dtype == np.uint16 and pixels.shape == want.shape
    assert list(heatmap.range) == [0.0, 65535.0]
    low, top = heatmap.value_range
    assert low == 0.0 and top == pytest.approx(float(want.max()), rel=1e-6)
    got = pixels.astype(np.float64) / 65535 * top
    assert np.abs(got - want).max() <= top / 65535 * 0.5 * (1 + 1e-6)


def _check_samples(stack, alice, job_id: str, folder: Path, fo, inputs: dict[int, bytes],
                   methods: list[str]):
    """Every sample against the job's items, results rows and report; answers the samples."""
    metadata, samples = _load(fo, folder)
    _check_schema(fo, metadata, samples)
    items = {item["index"]: item for item in all_items(alice, stack.url, job_id, limit=50)}
    rows = [json.loads(line) for line in alice.get(
        f"{stack.url}/v1/jobs/{job_id}/results", params={"format": "jsonl"},
        timeout=30).text.splitlines()]
    report = alice.get(f"{stack.url}/v1/jobs/{job_id}/report", timeout=30).json()
    suspects = {s["index"]: s for s in report["suspects"]}
    clusters = {(m, g["position"]): c for g in report["clusters"]
                for c, cluster in enumerate(g["clusters"]) for m in cluster["members"]}
    assert [s.index for s in samples] == sorted(items)
    assert metadata["info"]["saliency"]["job"] == job_id
    for sample in samples:
        item, i = items[sample.index], sample.index
        own = [r for r in rows if r["index"] == i]
        assert sample.item_id == own[0]["id"] and sample.uri == item["input"] == own[0]["uri"]
        assert sample.status == item["status"] == "succeeded" and _get(sample, "error") is None
        assert Path(sample.filepath).read_bytes() == inputs[i]
        pred = item["prediction"]
        assert sample.prediction.label == (pred["label"] or str(pred["class"]))
        assert sample.prediction.confidence == pred["score"]
        assert own[0]["score"] == pytest.approx(pred["score"], rel=1e-6)  # float32 column
        if item.get("label") is not None:
            name = own[0]["label_name"] or str(item["label"])
            assert sample.ground_truth.label == name
            assert sample.label_score == item["label_score"]
            assert sample.correct == item["correct"]
        else:
            assert _get(sample, "ground_truth") is None and _get(sample, "correct") is None
        suspect = suspects.get(i)
        assert _get(sample, "suspect_score") == (suspect["score"] if suspect else None)
        assert _get(sample, "suspect_reasons") == (suspect["reasons"] or None if suspect else None)
        assert sample.tags == []
        row_of = {(r["position"], r["rank"]): r for r in own}
        assert len(row_of) == len(item["outputs"])
        for output in item["outputs"]:
            position = methods.index(output["method"])
            field = _field(output, position)
            row = row_of[(position, output.get("rank"))]
            _check_heatmap(sample[field], folder, field, i, download(alice, stack, output["npy"]))
            assert json.loads(sample[f"{field}_target"]) == output["target"]
            for metric in METRICS:
                value = _get(sample, f"{field}_{metric}")
                assert value == output["metrics"][metric]
                assert row[metric] == (None if value is None else pytest.approx(value, rel=1e-6))
            assert _get(sample, f"{field}_warnings") == (output.get("warnings") or None)
            if not output.get("rank"):
                assert _get(sample, f"{field}_cluster") == clusters.get((i, position))
    return samples, report


def test_an_upload_job_with_a_topk_target(stack, stack_model, alice, bob, fo, tmp_path):
    images = [image_bytes(700 + i) for i in range(3)]
    spec = {"model": stack_model.name, "methods": ["gradient", "gradcam"],
            "target": {"topk": 2}}
    job_id = submit(alice, stack.url, spec,
                    [(f"in{i}.png", data) for i, data in enumerate(images)]).json()["id"]
    assert job_final(alice, stack.url, job_id)["status"] == "succeeded"
    code, out = _export(stack, job_id, tmp_path / "upload")
    assert code == 0
    samples, _ = _check_samples(stack, alice, job_id, Path(out), fo, dict(enumerate(images)),
                                spec["methods"])
    assert {f for f in samples[0].field_names if f.endswith(("_r0", "_r1"))} == {
        "gradient_0_r0", "gradient_0_r1", "gradcam_1_r0", "gradcam_1_r1"}
    assert not list(tmp_path.glob(".*.zip"))  # the archive is gone once unpacked

    url = f"{stack.url}/v1/jobs/{job_id}/export"
    for params in ({"format": "coco"}, {"format": "fiftyone", "images": "maybe"}):
        response = alice.get(url, params=params, timeout=30)
        assert response.status_code == 400, params
        assert response.json()["error"]["message"].startswith(("format", "images"))
    response = bob.get(url, params={"format": "fiftyone"}, timeout=30)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert cli.main(["--url", stack.url, "--api-key", stack.api_keys["bob"], "export", job_id,
                     "--out", str(tmp_path / "bob")]) == cli.EXIT_API
    assert not (tmp_path / "bob").exists()


def _put(stack, rel: str, data: bytes) -> str:
    backend = stack.backend
    if backend.dataset_bucket:
        import boto3

        s3 = boto3.client("s3", endpoint_url=backend.s3_endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.put_object(Bucket=backend.dataset_bucket, Key=rel, Body=data)
        return f"s3://{backend.dataset_bucket}/{rel}"
    path = backend.dataset_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def _variants(n: int) -> list[bytes]:
    """`n` 32×32 PNGs of one random picture, each with its own 6×6 patch repainted: the tiny
    model predicts one class for all, so they are clustered."""
    from PIL import Image

    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = []
    for _ in range(n):
        pixels = base.copy()
        y, x = rng.integers(0, 26, 2)
        pixels[y:y + 6, x:x + 6] = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def test_a_dataset_audit_with_clusters_and_suspects(stack, stack_model, alice, fo, tmp_path):
    run = f"export-{time.monotonic_ns()}"
    uris = {}
    for i, data in enumerate(_variants(22)):  # a class of 20 predictions is clustered
        folder = ("cat", "dog")[i % 2]
        uri = _put(stack, f"{run}/{folder}/{i:03d}.png", data)
        uris[uri] = data
    prefix = uri.rsplit("/", 2)[0] + "/"
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "model": stack_model.name, "methods": METHODS,
        "dataset": {"prefix": prefix, "labels": "folder-sorted"}}, timeout=30)
    job_id = response.json()["id"]
    early = alice.get(f"{stack.url}/v1/jobs/{job_id}/export", timeout=30)
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_ready"
    assert job_final(alice, stack.url, job_id, timeout=180)["status"] == "succeeded"

    code, out = _export(stack, job_id, tmp_path / "audit")
    assert code == 0
    items = all_items(alice, stack.url, job_id, limit=50)
    inputs = {item["index"]: uris[item["input"]] for item in items}
    samples, report = _check_samples(stack, alice, job_id, Path(out), fo, inputs, METHODS)
    assert report["clusters"] and report["suspects"]  # both were checked, sample by sample
    assert any(_get(s, "gradient_0_cluster") is not None for s in samples)
    assert any(_get(s, "suspect_score") is not None for s in samples)

    code, out = _export(stack, job_id, tmp_path / "referenced", "--no-images")
    assert code == 0
    _, referenced = _load(fo, Path(out))
    for sample in referenced:  # an input on S3 is copied all the same
        uri, copied = sample.uri, Path(out) / "data" / f"{sample.index:06d}.png"
        local = uri.startswith("file://")
        assert sample.filepath == (uri[len("file://"):] if local else str(copied))
        assert copied.exists() != local

"""WebDataset and Hugging Face data sets planned and run by the worker's task bodies (real
Redis, local storage): chunks end where shards and files do, planning reads each shard or
file once, and a chunk's inputs are one range read (plus, once per process, a file's head)."""

from __future__ import annotations

import io
import json
from collections import Counter

import datasets
import pytest
import webdataset as wds
from e2e.helpers import image_bytes

from shared.storage.file import FileStorage
from shared.storage.keys import JobKeys

READS = ("get", "get_range", "get_tail", "reader", "list", "exists")


@pytest.fixture
def reads(runtime, monkeypatch) -> Counter:
    """Every read of the data-set root, by method (the service's own storage not counted)."""
    counts: Counter = Counter()
    root = runtime.root.absolute()
    for name in READS:
        original = getattr(FileStorage, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if self.root == root:
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(FileStorage, name, counted)
    return counts


def _records(rt, job_id):
    job = rt.ctx.jobs.get(job_id)
    return job, list(rt.ctx.layout(job).records())


def _chunks(rt, job_id) -> list[tuple[int, int]]:
    return sorted((c.start, c.stop) for c in rt.ctx.chunks.states(job_id))


def test_webdataset_chunks_end_with_their_shards_and_read_one_range_each(runtime, reads):
    rt = runtime
    (rt.root / "wds").mkdir()
    with wds.ShardWriter(str(rt.root / "wds" / "shard-%06d.tar"), maxcount=6,
                         verbose=0) as sink:
        for i in range(11):
            sample = {"__key__": f"s{i:03d}", "png": image_bytes(i, size=32), "cls": i % 10}
            if i == 2:
                sample["json"] = {"box": [1, 2, 20, 21]}
            if i == 7:
                del sample["png"]
            sink.write(sample)
    (rt.root / "wds" / "shard-000002.tar").write_bytes(b"this is no tar" * 100)
    job_id = rt.dataset_job({"webdataset": (rt.root / "wds").as_uri()
                             + "/shard-{000000..000003}.tar"}, target="label")
    rt.plan(job_id)
    assert _chunks(rt, job_id) == [(0, 4), (4, 6), (6, 8), (8, 12), (12, 13)]
    assert reads == {"reader": 4}  # each shard's headers, once; the missing one tried
    reads.clear()
    rt.run_chunks(job_id)
    assert reads == {"get_range": 4}  # a chunk's samples in one read; (12, 13) has none
    reads.clear()
    rt.run(job_id)  # the report draws its suspects over their inputs, read together
    assert reads == {"get_range": 2}  # a read for each shard's suspects, not one each

    job, records = _records(rt, job_id)
    assert (job.total, job.done, job.failed) == (13, 10, 3)
    shard = (rt.root / "wds").as_uri() + "/shard-{:06d}.tar"
    assert [r.id for r in records] == (
        [f"shard-000000/s{i:03d}" for i in range(6)]
        + [f"shard-000001/s{i:03d}" for i in range(6, 11)] + ["shard-000002", "shard-000003"])
    assert records[2].input == shard.format(0) + "#s002" and records[2].box == (1, 2, 20, 21)
    assert [r.label for r in records if r.ok] == [i % 10 for i in range(11) if i != 7]
    assert records[7].error == (f"{shard.format(1)}#s007: has no image member (jpg, jpeg, "
                                "png, webp, npy); its members: cls")
    assert records[11].error.startswith(f"{shard.format(2)}: not a readable tar shard (not "
                                        "a tar archive (no ustar header at byte 0)); ")
    assert records[12].error == f"{shard.format(3)}: no such object 'wds/shard-000003.tar'"


def test_hugging_face_chunks_end_with_their_files_and_read_each_head_once(runtime, reads):
    rt = runtime
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["a", "b", "c"])})
    rows = datasets.Dataset.from_dict(
        {"image": [{"bytes": image_bytes(i, size=32), "path": None} for i in range(9)],
         "label": [i % 3 for i in range(9)]}, features=features)
    (rt.root / "hub" / "data").mkdir(parents=True)
    for n, (a, b) in enumerate([(0, 5), (5, 9)]):
        rows.select(range(a, b)).to_parquet(
            str(rt.root / "hub" / "data" / f"test-0000{n}-of-00002.parquet"), batch_size=3)
    rows.save_to_disk(str(rt.root / "disk"))
    for dataset, chunks, planned, ran in (
            ({"huggingface": (rt.root / "hub").as_uri(), "split": "test"},
             [(0, 4), (4, 5), (5, 8), (8, 9)], {"list": 1, "get_range": 2, "get_tail": 2},
             # per chunk its row groups' read; per file its footer, once (then kept)
             {"get_range": 4 + 2}),
            ({"huggingface": (rt.root / "disk").as_uri()},
             [(0, 4), (4, 8), (8, 9)], {"get_range": 2, "reader": 1},
             {"get_range": 3 + 1})):
        reads.clear()
        job_id = rt.dataset_job(dataset, target="label")
        rt.plan(job_id)
        assert _chunks(rt, job_id) == chunks
        assert reads == planned, dataset
        reads.clear()
        rt.ctx.locator.heads.items.clear()
        rt.run_chunks(job_id)
        assert reads == ran, dataset
        rt.run(job_id)
        job, records = _records(rt, job_id)
        assert job.done == 9, records
        assert [r.label for r in records] == [i % 3 for i in range(9)]  # no class names
        assert records[6].id.endswith("/1" if "hub" in str(dataset) else "/6")


def test_a_data_set_without_shards_or_files_fails_its_job_with_the_reason(runtime):
    rt = runtime
    (rt.root / "empty").mkdir()
    (rt.root / "empty" / "notes.txt").write_bytes(b"no shards here")
    for dataset, error in (
            ({"webdataset": (rt.root / "empty").as_uri()},
             "dataset.webdataset: no .tar shards under"),
            ({"huggingface": (rt.root / "empty").as_uri(), "split": "validation"},
             "dataset.huggingface: no files of split 'validation' under")):
        job_id = rt.dataset_job(dataset)
        rt.plan(job_id)
        job = rt.ctx.jobs.get(job_id)
        assert job.final_status.value == "failed" and job.error.startswith(error), job.error


def test_a_chunk_of_large_inputs_is_read_in_slices(runtime, reads, monkeypatch):
    """A run holds about `READ_BYTES` of its parts at a time, not its whole chunk."""
    rt = runtime
    buf = io.BytesIO()
    with wds.TarWriter(buf) as sink:
        for i in range(4):
            sink.write({"__key__": f"k{i}", "png": image_bytes(i, size=32), "cls": i})
    (rt.root / "big.tar").write_bytes(buf.getvalue())
    job_id = rt.dataset_job({"webdataset": (rt.root / "big.tar").as_uri()}, target="label")
    rt.plan(job_id)
    spans = [s.part.span for s in rt.ctx.layout(rt.ctx.jobs.get(job_id)).inputs(0, 4)]
    monkeypatch.setattr("worker.jobs.inputs.READ_BYTES", max(b - a for a, b in spans) * 2)
    reads.clear()
    rt.run_chunks(job_id)
    assert reads == {"get_range": 2}  # the chunk (0, 4) in two slices of two samples
    _, records = _records(rt, job_id)
    assert [r.label for r in records] == [0, 1, 2, 3]

    ranges: list[tuple] = []
    get_range = FileStorage.get_range

    def recorded(self, key, start, stop):
        ranges.append((key, start, stop))
        return get_range(self, key, start, stop)

    monkeypatch.setattr(FileStorage, "get_range", recorded)
    rt.run(job_id)  # the report draws its suspects, ranked by score, over their inputs
    job = rt.ctx.jobs.get(job_id)
    report = json.loads(rt.ctx.storage.get(JobKeys(job.tenant, job_id).report))
    drawn = {s["index"] for s in report["suspects"] if s["overlay"]}
    assert len(drawn) > 2, drawn  # from both slices
    shard = [r for r in ranges if r[0].endswith("big.tar")]
    assert len(shard) == len(set(shard)) == len({i // 2 for i in drawn})  # each slice once


def test_an_input_read_alone_is_one_range_read(runtime, reads):
    """As a reference (`{"item": i}`) or a report's picture reads it."""
    rt = runtime
    buf = io.BytesIO()
    with wds.TarWriter(buf) as sink:
        for i in range(4):
            sink.write({"__key__": f"k{i}", "png": image_bytes(i, size=32)})
    (rt.root / "one.tar").write_bytes(buf.getvalue())
    job_id = rt.dataset_job({"webdataset": (rt.root / "one.tar").as_uri()})
    rt.plan(job_id)
    sources = rt.ctx.layout(rt.ctx.jobs.get(job_id)).inputs(0, 4)
    (sample,) = rt.ctx.locator.read_parts("t", sources[2:3])
    assert sample.image == image_bytes(2, size=32)
    assert reads["get_range"] == 1


def test_class_label_names_are_matched_to_the_models_class_names(runtime, tiny_spec,
                                                                 tiny_weights):
    """As folder names are: by name, through `label_map` first; not by the data set's own
    numbering, which differs from the model's here."""
    from runtime_testing import TENANT

    from shared.models.registry import register_model
    from shared.spec.model import parse_model_spec
    from worker.jobs.models import validate_model

    rt = runtime
    names = ["cat", "dog", "cow", "pig", "hen", "fox", "eel", "ant", "bee", "yak"]
    spec = {**tiny_spec, "name": "named", "class_names": names}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(
        names=["fox", "cat", "owl"])})
    datasets.Dataset.from_dict(
        {"image": [{"bytes": image_bytes(i, size=32), "path": None} for i in range(3)],
         "label": [0, 1, 2]}, features=features).to_parquet(str(rt.root / "named.parquet"))
    with open(tiny_weights, "rb") as f:
        register_model(rt.ctx.models, rt.ctx.storage, TENANT, parse_model_spec(spec),
                       "safetensors", f)
    validate_model(rt.ctx, TENANT, "named")
    job_id = rt.dataset_job({"huggingface": (rt.root / "named.parquet").as_uri(),
                             "label_map": {"owl": 9}}, model="named", target="label")
    rt.run(job_id)
    _, records = _records(rt, job_id)
    assert [(r.label, r.error) for r in records] == [(5, None), (0, None), (9, None)]

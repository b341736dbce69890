"""The audit phase of a data-set job on a real Redis and local storage: a class larger than
`SALIENCY_SPRAY_SAMPLE` is clustered on a seeded sample, every item keeps a cluster, and the
clusters do not depend on how the job was chunked."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from runtime_testing import TENANT

from shared.status import JobStatus
from shared.storage.keys import JobKeys

ITEMS = 30
SAMPLE = 20


def _picture(i: int) -> bytes:
    """A dark noisy picture with a bright blob low left or high right, by parity: the seeded
    model predicts one class for all of them."""
    rng = np.random.default_rng(i)
    cy, cx = (8, 24) if i % 2 else (24, 8)
    yy, xx = np.mgrid[:32, :32]
    blob = 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18)
    pixels = 60 + rng.normal(0, 20, (32, 32, 3)) + blob[..., None]
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _job(rt, chunk: int) -> tuple[dict, list[dict]]:
    """A job of ITEMS pictures run with chunks of `chunk` items: its report, its rows."""
    for i in range(ITEMS):
        (rt.root / f"{i}.png").write_bytes(_picture(i))
    manifest = rt.manifest("m.jsonl", [{"uri": f"{i}.png"} for i in range(ITEMS)])
    rt.configure(spray_sample=SAMPLE, dataset_chunk_size=chunk, torch_threads=1)
    job_id = rt.dataset_job({"manifest": manifest}, seed=7)
    rt.run(job_id)
    assert rt.ctx.jobs.get(job_id).status is JobStatus.SUCCEEDED
    keys = JobKeys(TENANT, job_id)
    rows = pq.read_table(io.BytesIO(rt.ctx.storage.get(keys.results()))).to_pylist()
    return json.loads(rt.ctx.storage.get(keys.report)), rows


def test_a_class_above_the_sample_is_clustered_on_it_whatever_the_chunking(runtime):
    """Every item of a large class keeps a cluster, and chunks of 4 or 7 items give the same
    sample and the same clusters (the sample's seed comes from the job's)."""
    report, rows = _job(runtime, 4)
    by_class: dict[int, set[int]] = {}
    for row in rows:
        by_class.setdefault(row["predicted"], set()).add(row["index"])
    large = {c: items for c, items in by_class.items() if len(items) > SAMPLE}
    assert large  # the seeded model gives most pictures one class
    assert {g["class"] for g in report["clusters"]} == set(large)
    for group in report["clusters"]:
        members = [m for cluster in group["clusters"] for m in cluster["members"]]
        assert sorted(members) == sorted(large[group["class"]])  # each item once
        assert group["size"] == len(members) and group["sampled"] == SAMPLE
        sizes = [c["size"] for c in group["clusters"]]
        assert sizes == sorted(sizes, reverse=True) and sum(sizes) == group["size"]

    def clusters(report):
        return [(g["class"], g["sampled"], [(c["members"], c["share"]) for c in g["clusters"]])
                for g in report["clusters"]]

    # Batches of other sizes may change a map in its last bits, nothing more.
    again = _job(runtime, 7)[0]
    assert clusters(again) == clusters(report)
    for a, b in zip(again["clusters"], report["clusters"], strict=True):
        assert a["eigenvalues"] == pytest.approx(b["eigenvalues"], abs=1e-4)

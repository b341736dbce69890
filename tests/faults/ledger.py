"""The checker every fault case ends with: the job's item ledger read every way a client or
the service can read it, judged as Jepsen judges a queue.

- lost: an item of the job without exactly one final record (succeeded or failed);
- duplicates: an item shown more than once (in `/items`, or with more rows than its outputs
  in the results file), or a data-set job's segments overlapping;
- unexpected: a record of an index that is not in the job;
- repeated attempts (duplicate executions): item attempts beyond the first, counted by the
  workers in the job's `reruns` field; reported, not judged (at-least-once allows them).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

import pyarrow.parquet as pq
import requests

from shared.state.chunks import Segment

FINAL_ITEM = {"succeeded", "failed"}


@dataclass
class Verdict:
    """What the checker found for one job."""

    job: dict
    lost: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    reruns: int = 0
    statuses: Counter = field(default_factory=Counter)
    workers: Counter = field(default_factory=Counter)
    results_files: int = 0

    def figures(self) -> dict:
        return {"items": self.job["progress"]["total"], "lost": len(self.lost),
                "duplicates": len(self.duplicates), "unexpected": len(self.unexpected),
                "repeated_attempts": self.reruns, "statuses": dict(self.statuses),
                "workers": dict(self.workers)}

    def assert_clean(self) -> None:
        assert (self.lost, self.duplicates, self.unexpected) == ([], [], []), self.figures()


def _all_items(url: str, job_id: str) -> list[dict]:
    items, cursor = [], ""
    while True:
        page = requests.get(f"{url}/v1/jobs/{job_id}/items",
                            params={"cursor": cursor, "limit": 1000}, timeout=60).json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        cursor = page["next_cursor"]


def _results(url: str, job_id: str) -> list[dict]:
    response = requests.get(f"{url}/v1/jobs/{job_id}/results", timeout=60)
    assert response.status_code == 200, response.text
    return pq.read_table(io.BytesIO(response.content)).to_pylist()


def check(stack, job_id: str, methods: int = 1) -> Verdict:
    """Judge a final job of `stack` whose items each have `methods` outputs."""
    job = stack.job(job_id)
    total = job["progress"]["total"]
    verdict = Verdict(job)
    r = stack.redis_client()
    verdict.reruns = int(r.hget(f"saliency:job:{job_id}", "reruns") or 0)

    # /items: one entry per index, in order, each final.
    items = _all_items(stack.url, job_id)
    listed = Counter(item["index"] for item in items)
    verdict.duplicates += [i for i, n in listed.items() if n > 1]
    verdict.unexpected += [i for i in listed if not 0 <= i < total]
    verdict.lost += [i for i in range(total) if listed[i] == 0]
    verdict.lost += [item["index"] for item in items if item["status"] not in FINAL_ITEM]
    verdict.statuses.update(item["status"] for item in items)
    verdict.workers.update(item.get("worker") for item in items)

    # The results file: a failed item has one row, a succeeded one a row per output.
    rows = _results(stack.url, job_id)
    verdict.results_files = 1
    per_index: dict[int, list[dict]] = {}
    for row in rows:
        per_index.setdefault(row["index"], []).append(row)
    for index, group in per_index.items():
        if not 0 <= index < total:
            verdict.unexpected.append(index)
            continue
        statuses = {row["status"] for row in group}
        if len(statuses) != 1 or not statuses <= FINAL_ITEM:
            verdict.lost.append(index)
            continue
        expected = 1 if statuses == {"failed"} else methods
        positions = Counter(row["position"] for row in group)
        if len(group) > expected or any(n > 1 for n in positions.values()):
            verdict.duplicates.append(index)
        elif len(group) < expected:
            verdict.lost.append(index)
    verdict.lost += [i for i in range(total) if i not in per_index]

    # The ledger itself: upload jobs count each index in exactly one set; data-set jobs'
    # committed segments tile the job without overlap.
    if r.exists(f"saliency:job:{job_id}:done") or r.exists(f"saliency:job:{job_id}:failed"):
        done = {int(i) for i in r.smembers(f"saliency:job:{job_id}:done")}
        failed = {int(i) for i in r.smembers(f"saliency:job:{job_id}:failed")}
        verdict.duplicates += sorted(done & failed)
        verdict.unexpected += [i for i in done | failed if not 0 <= i < total]
    segments = sorted((Segment.from_json(raw)
                       for raw in r.hvals(f"saliency:job:{job_id}:cseg")), key=lambda s: s.start)
    covered = 0
    for segment in segments:
        if segment.start < covered:
            verdict.duplicates += list(range(segment.start, min(covered, segment.stop)))
        covered = max(covered, segment.stop)
    verdict.lost = sorted(set(verdict.lost))
    verdict.duplicates = sorted(set(verdict.duplicates))
    verdict.unexpected = sorted(set(verdict.unexpected))
    return verdict

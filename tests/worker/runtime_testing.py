"""A worker's runtime without Celery: jobs submitted as the API stores them, their planner,
chunks and finalizer called one after another in the test's process, on a real Redis."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.models.registry import register_model
from shared.settings import Settings
from shared.spec.job import job_spec_from_json
from shared.spec.model import parse_model_spec
from shared.state.jobs import NewJob
from shared.state.jobschema import ChunkStatus
from shared.state.modelstore import ModelStatus
from worker.jobs.context import WorkerContext

TENANT = "t"


@dataclass
class Runtime:
    ctx: WorkerContext
    root: Path  # a data-set root (`SALIENCY_DATASET_ROOTS`)
    model: str

    @classmethod
    def start(cls, redis_url: str, tmp: Path, weights: Path, spec: dict) -> Runtime:
        from worker.jobs.models import validate_model

        root = tmp / "datasets"
        root.mkdir()
        settings = Settings(redis_url=redis_url, storage_url=(tmp / "storage").as_uri(),
                            data_dir=str(tmp / "data"), batch_size=4, dataset_chunk_size=4,
                            device="cpu", lease_s=5, builtin_models=False,
                            dataset_roots=(root.as_uri(),))
        ctx = WorkerContext.create(settings)
        ctx.redis.flushdb()
        with open(weights, "rb") as f:
            register_model(ctx.models, ctx.storage, TENANT, parse_model_spec(spec),
                           "safetensors", f)
        assert validate_model(ctx, TENANT, spec["name"]) is ModelStatus.READY
        return cls(ctx, root, spec["name"])

    def configure(self, **settings: Any) -> None:
        """Change settings from here on (as a redeployed worker would read them)."""
        self.ctx.settings = replace(self.ctx.settings, **settings)

    def manifest(self, name: str, lines: list[dict | str]) -> str:
        """Write a manifest of `lines` (objects as JSON, strings as they are); its URI."""
        path = self.root / name
        path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n"
                                for ln in lines))
        return path.as_uri()

    def dataset_job(self, dataset: dict, **spec: Any) -> str:
        """Store a data-set job as the API does (planning, no chunks yet); its id."""
        job_id = uuid.uuid4().hex
        body = {"kind": "attribution", "model": self.model, "methods": ["gradient"],
                "dataset": dataset, **spec}
        pipe = self.ctx.redis.pipeline(transaction=True)
        self.ctx.jobs.create(NewJob(job_id, TENANT, job_spec_from_json(body)), pipe)
        pipe.execute()
        return job_id

    def visualize_job(self, **spec: Any) -> str:
        """Store a `visualize` job as the API does, its chunks (one per batch) ready: the
        model is validated. Its id."""
        from shared.spec.job import parse_job_spec

        parsed = parse_job_spec({"kind": "visualize", "model": self.model, **spec})
        work = parsed.work.for_model(self.ctx.models.get(TENANT, self.model).spec)
        job_id = uuid.uuid4().hex
        pipe = self.ctx.redis.pipeline(transaction=True)
        self.ctx.jobs.create(NewJob(job_id, TENANT, parsed, total=len(work.items()),
                                    steps=work.total_steps), pipe)
        self.ctx.chunks.add(pipe, job_id, [(b[0].index, b[-1].index + 1)
                                           for b in work.batches()], ChunkStatus.READY)
        pipe.execute()
        return job_id

    def plan(self, job_id: str) -> None:
        from worker.jobs import runner

        runner.plan(self.ctx, job_id)

    def run_chunks(self, job_id: str) -> None:
        """Run every chunk not done yet, in order, until none is left."""
        from worker.jobs import runner

        while todo := [c.start for c in self.ctx.chunks.states(job_id)
                       if c.state in ("ready", "sent")]:
            for start in todo:
                runner.run_chunk(self.ctx, job_id, start, "w")

    def run_to_finalizer(self, job_id: str) -> None:
        """Plan, run every chunk and every phase, and mark the job finalizing (as `advance`
        does), but leave its finalizer to the caller."""
        from shared.status import JobStatus
        from worker.kinds import KINDS

        self.plan(job_id)
        for _phase in range(2):  # the items, the audit
            self.run_chunks(job_id)
            job = self.ctx.jobs.get(job_id)
            if not KINDS[job.kind].next_phase(self.ctx, job):
                assert self.ctx.jobs.request_final(job_id, JobStatus.SUCCEEDED)
                return
        raise AssertionError(f"job {job_id}: a third phase")

    def run(self, job_id: str) -> None:
        """Plan, run every chunk and every phase, and finalize."""
        from worker.jobs import runner

        self.plan(job_id)
        for _phase in range(3):  # the items, the audit, the finalizer
            if self.ctx.jobs.get(job_id).is_final:
                return
            self.run_chunks(job_id)
            runner.advance(self.ctx, job_id)
        assert self.ctx.jobs.get(job_id).is_final, self.ctx.jobs.get(job_id)

"""Resolving the inputs a spec names (`{"uri"}`, `{"upload"}`, `{"item"}`): an integrated
gradients baseline, an inversion's target. Each becomes the model's input tensor, read and
preprocessed like any input; a reference that cannot be read is the job's error."""

from __future__ import annotations

from typing import Any

from shared.errors import InputError
from shared.results.records import InputSource
from shared.spec.inputs import InputRef
from shared.spec.methods import MethodSpec
from shared.spec.model import ModelSpec
from shared.state.jobs import Job
from shared.storage.keys import JobKeys
from worker.jobs.context import WorkerContext
from worker.jobs.inputs import load_input


def ref_source(ctx: WorkerContext, job: Job, ref: InputRef) -> InputSource:
    """Where a referenced input is read from."""
    if ref.kind == "upload":
        return InputSource(name=f"upload {ref.value}", key=JobKeys(job.tenant, job.id).ref(
            str(ref.value)))
    if ref.kind == "uri":
        return InputSource(name=str(ref.value), uri=str(ref.value))
    index = int(ref.value)
    if not 0 <= index < job.total:
        raise InputError(f"item {index}: the job has {job.total} items")
    return ctx.layout(job).inputs(index, index + 1)[0]


def resolve(ctx: WorkerContext, job: Job, model: ModelSpec, ref: InputRef, what: str) -> Any:
    """The referenced input as the model's input tensor (C×H×W)."""
    loaded = load_input(ctx, job.tenant, model, -1, ref_source(ctx, job, ref))
    if loaded.error is not None:
        raise InputError(f"{what}: {loaded.error}")
    return loaded.x


def resolve_methods(ctx: WorkerContext, job: Job, model: ModelSpec,
                    methods: tuple[MethodSpec, ...]) -> list[MethodSpec]:
    """The job's methods with every input reference among their parameters resolved."""
    out = []
    for position, spec in enumerate(methods):
        refs = {k: v for k, v in spec.params.items() if isinstance(v, InputRef)}
        if refs:
            spec = spec.with_params(**{k: resolve(ctx, job, model, ref,
                                                  f"methods[{position}].{k}")
                                       for k, ref in refs.items()})
        out.append(spec)
    return out

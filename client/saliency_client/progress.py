"""The bookkeeping of `wait()` and `upload()` shared by the sync and async clients: poll
interval, deadline, what is stored so far, and the bars."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from saliency_client.datasets import Uploaded
from saliency_client.errors import WaitTimeout
from saliency_client.types import JobState


class Bar(tqdm):
    """A tqdm bar without tqdm's monitor, a daemon thread that outlives the bars (and would
    still be running at interpreter exit): each bar here is refreshed by the loop that owns
    it, so the monitor has nothing to do."""

    monitor_interval = 0


def phase(state: JobState) -> str:
    """`running`, `queued (planning)`, `running (finalizing)`: the status and its phase."""
    p = state.progress
    step = "planning" if p.planning else "finalizing" if p.finalizing else ""
    return f"{state.status.value} ({step})" if step and not state.status.finished else (
        state.status.value)


def describe(state: JobState) -> str:
    """The phase, and the failures if any: `running (finalizing), 2 failed`."""
    failed = state.progress.failed
    return phase(state) + (f", {failed} failed" if failed else "")


def counts(state: JobState) -> tuple[int, int, str, str]:
    """What the bar counts: (total, done, unit, phase name). Items, a visualize job's steps,
    or, once a top_activations job's second phase has started, its projections."""
    p = state.progress
    if p.projections_due:
        return p.projections_due, p.projections_done, "proj", " projections"
    unit = "step" if state.kind == "visualize" else "img"
    return p.total, p.done + p.failed, unit, ""


class Waiter:
    """Polls at 0.2 s, backing off to `max_interval`; drives a tqdm bar of done/total (see
    `counts`)."""

    def __init__(self, job_id: str, timeout: float | None, progress: bool,
                 max_interval: float = 2.0) -> None:
        self.job_id = job_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = 0.2
        self.max_interval = max_interval
        self.bar = Bar(total=None, unit="img", desc=f"job {job_id[:8]}", disable=not progress,
                        leave=True, dynamic_ncols=True)

    def update(self, state: JobState) -> bool:
        """Show `state`; True when the job has finished."""
        total, done, unit, what = counts(state)
        if self.bar.total != total or self.bar.unit != unit:
            self.bar.total, self.bar.unit = total, unit
            self.bar.set_description_str(f"job {self.job_id[:8]}{what}", refresh=False)
        self.bar.n = done
        self.bar.set_postfix_str(describe(state), refresh=True)
        return state.status.finished

    def next_sleep(self) -> float:
        """Seconds to sleep before the next poll; raises WaitTimeout past the deadline."""
        sleep = self.interval
        self.interval = min(self.max_interval, self.interval * 1.5)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {self.job_id} not finished after the timeout")
            sleep = min(sleep, left)
        return sleep

    def close(self) -> None:
        self.bar.close()


class UploadProgress:
    """The bookkeeping of `upload()` shared by the sync and async clients: what is stored so
    far, a bar of files uploaded on stderr, and the caller's `on_batch(names, prefix)`."""

    def __init__(self, total: int, progress: bool,
                 on_batch: Callable[[list[str], str], None] | None) -> None:
        self.result = Uploaded(prefix="")
        self.on_batch = on_batch
        self.bar = Bar(total=total, unit="file", desc="upload", disable=not progress,
                       leave=True, dynamic_ncols=True)

    def stored(self, batch: list[tuple[str, Path]], answer: dict[str, Any]) -> None:
        """Note a batch the API stored (its answer names the prefix and the URIs)."""
        self.result.uris.extend(answer["uris"])
        self.result.prefix = answer["prefix"]
        self.bar.update(len(batch))
        if self.on_batch is not None:
            self.on_batch([name for name, _ in batch], answer["prefix"])

    def close(self) -> None:
        self.bar.close()

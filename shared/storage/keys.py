"""The storage key layout, defined once: every object the service writes has its key made here.

Everything of a tenant lives under `t/<tenant>/`: its model artifacts, its uploads and its
jobs. A job's objects live under `t/<tenant>/jobs/<id>/`, so deleting a job is deleting one
prefix. Keys that a fenced (superseded) worker could still write carry the lease token, so a
stray write never replaces a committed object.

A job's maps are named by item, method position and, for a `{"topk": k}` target, the target's
rank (at every rank, 0 included), so neither two configurations of one method nor two targets
of one method share a name; maps of any other target keep names without a rank.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.storage.interface import check_key

INPUT_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "npy": "npy"}
# A model's artifact by its format; a Hugging Face bundle is kept as uploaded (zip or tar.gz).
MODEL_EXTENSIONS = {"safetensors": ".safetensors", "pt2": ".pt2", "transformers": ".bundle"}
RESULT_FORMATS = ("parquet", "csv", "jsonl")
MAP_SUFFIXES = {"npy": ".npy", "png": ".png", "overlay": ".overlay.png", "signed": ".signed.png"}
OUTPUT_SUFFIXES = {**MAP_SUFFIXES, "curve": ".curve.json"}
_MAP_NAME = re.compile(r"^([0-9]{1,10})/([0-9]{1,3})(?:/([0-9]{1,2}))?(\.npy|\.png|\.overlay\.png|"
                       r"\.signed\.png)$")


def tenant_prefix(tenant: str) -> str:
    return f"t/{tenant}"


def model_artifact(tenant: str, name: str, sha256: str, kind: str) -> str:
    return f"{tenant_prefix(tenant)}/models/{name}/{sha256}{MODEL_EXTENSIONS[kind]}"


def _rank_part(rank: int | None, sep: str) -> str:
    return "" if rank is None else f"{sep}{rank}"


@dataclass(frozen=True)
class MapName:
    """A map of a data-set job, cut from its shard, as `GET /v1/jobs/{id}/maps/{name}` names
    it: `{index}/{position}`, then `/{rank}` for a top-k target, then the kind's suffix."""

    index: int
    position: int
    rank: int | None
    kind: str

    def __str__(self) -> str:
        return (f"{self.index}/{self.position}{_rank_part(self.rank, '/')}"
                f"{MAP_SUFFIXES[self.kind]}")

    @classmethod
    def parse(cls, name: str) -> MapName | None:
        """The map a route's name gives, or None if it names none."""
        match = _MAP_NAME.match(name)
        if match is None:
            return None
        kind = next(k for k, suffix in MAP_SUFFIXES.items() if suffix == match[4])
        rank = None if match[3] is None else int(match[3])
        return cls(int(match[1]), int(match[2]), rank, kind)


def upload_prefix(tenant: str) -> str:
    """Where `POST /v1/uploads` stores a tenant's files (readable by its data-set jobs)."""
    return f"{tenant_prefix(tenant)}/uploads"


@dataclass(frozen=True)
class JobKeys:
    """The keys of one job's objects."""

    tenant: str
    job_id: str

    @property
    def prefix(self) -> str:
        return f"{tenant_prefix(self.tenant)}/jobs/{self.job_id}"

    def input(self, index: int, fmt: str) -> str:
        """An uploaded input, by its position in the request."""
        return f"{self.prefix}/inputs/{index:06d}.{INPUT_EXTENSIONS[fmt]}"

    def ref(self, name: str) -> str:
        """A file part a spec names as an input (`{"upload": name}`), e.g. a baseline."""
        return check_key(f"{self.prefix}/refs/{name}")

    # --- per-item outputs (upload and inline jobs, and PNGs asked of data-set jobs) ---------

    @property
    def outputs(self) -> str:
        return f"{self.prefix}/outputs"

    def output(self, index: int, position: int, method: str, kind: str,
               rank: int | None = None) -> str:
        """One output file of one item: `kind` is `npy`, `png`, `overlay`, `signed`, or a
        visualization's `curve` (JSON); `rank` is the target's rank for a top-k target, None
        for any other (`{method}-{position}` or `{method}-{position}-r{rank}`)."""
        return (f"{self.outputs}/{index}/{method}-{position}{_rank_part(rank, '-r')}"
                f"{OUTPUT_SUFFIXES[kind]}")

    def snapshot(self, index: int, step: int) -> str:
        """A visualization's picture of one item after `step` steps."""
        return f"{self.outputs}/{index}/visualize-0.step{step:06d}.png"

    def file_name(self, key: str) -> str:
        """The name under which `GET /v1/jobs/{id}/files/{name}` serves an output key."""
        head = self.outputs + "/"
        if not key.startswith(head):
            raise ValueError(f"{key!r} is not an output of job {self.job_id}")
        return key[len(head):]

    def file_key(self, name: str) -> str:
        """The output key a `files/{name}` route names (`ValueError` if it is not a key)."""
        return check_key(f"{self.outputs}/{name}")

    # --- data-set jobs: planned inputs, shards of maps, rows of item records -----------------

    def plan(self, start: int) -> str:
        """The planned inputs of the chunk that starts at item `start` (JSON lines)."""
        return f"{self.prefix}/plan/{start:010d}.jsonl"

    def shard(self, start: int, token: int) -> str:
        """The maps of a committed segment (safetensors), under the writer's lease token."""
        return f"{self.prefix}/shards/{start:010d}-{token}.safetensors"

    def rows(self, start: int, token: int) -> str:
        """The item records of a committed segment (JSON lines), under the lease token."""
        return f"{self.prefix}/rows/{start:010d}-{token}.jsonl"

    def thumbs(self, start: int, token: int) -> str:
        """The 32×32 relevance thumbnails of a committed segment's maps (for clustering)."""
        return f"{self.prefix}/thumbs/{start:010d}-{token}.safetensors"

    def partial(self, phase: str, start: int, token: int) -> str:
        """A small per-chunk partial result of a multi-phase job (e.g. a top-k scan)."""
        return f"{self.prefix}/partials/{phase}/{start:010d}-{token}.bin"

    # --- what the finalizer writes ----------------------------------------------------------

    def results(self, fmt: str = "parquet") -> str:
        if fmt not in RESULT_FORMATS:
            raise ValueError(f"results format must be one of {RESULT_FORMATS}")
        return f"{self.prefix}/results.{fmt}"

    def results_part(self, start: int) -> str:
        """The rows of the results file from item `start` on, as the finalizer writes them
        before merging them into one file (Parquet)."""
        return f"{self.prefix}/parts/{start:010d}.parquet"

    @property
    def report(self) -> str:
        return f"{self.prefix}/report.json"

    def artifact(self, name: str) -> str:
        """A named picture or file of the job's report (cluster maps, grids, curves)."""
        return check_key(f"{self.prefix}/report/{name}")

    def checkpoint(self, item: int) -> str:
        """The optimization state of a visualization item, for a continuation task."""
        return f"{self.prefix}/checkpoints/{item:06d}.bin"

"""Seeds derived from (job seed, item index, method position), so that per-item randomness
does not depend on batch size, chunking or redelivery."""

from __future__ import annotations

import hashlib

SEED_BITS = 63


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of integers (a stable hash, the same in every process)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> (64 - SEED_BITS)


def item_seed(job_seed: int, index: int) -> int:
    """The seed of one item of a job."""
    return derive_seed(job_seed, index)


def method_seed(item: int, position: int) -> int:
    """The seed of one method (by its position in the job's `methods`) on one item."""
    return derive_seed(item, position)

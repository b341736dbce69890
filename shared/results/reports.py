"""How a report names its files: a stored report refers to its pictures and arrays as
`artifact:<name>` (stored at `JobKeys.artifact(name)`), and the API turns each reference
into a URL the client can open (presigned, or signed by the API) when it serves the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ARTIFACT = "artifact:"


def artifact_ref(name: str) -> str:
    return ARTIFACT + name


def resolve_artifacts(report: Any, url: Callable[[str], str]) -> Any:
    """The report with every `artifact:<name>` string replaced by `url(name)`."""
    if isinstance(report, dict):
        return {k: resolve_artifacts(v, url) for k, v in report.items()}
    if isinstance(report, list):
        return [resolve_artifacts(v, url) for v in report]
    if isinstance(report, str) and report.startswith(ARTIFACT):
        return url(report[len(ARTIFACT):])
    return report

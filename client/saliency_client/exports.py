"""Exports of a finished job (`GET /v1/jobs/{id}/export`): the zip the API streams, saved
beside the target folder and unpacked into it.

`fiftyone`: a folder that `fiftyone.Dataset.from_dir(folder,
dataset_type=fiftyone.types.FiftyOneDataset)` imports — each item a sample with its
prediction, label, metrics, suspect score and cluster, and each map a `Heatmap` field.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

FORMATS = ("fiftyone",)


def request(job_id: str, format: str, images: bool) -> tuple[str, dict[str, Any]]:
    """The path and query of a job's export (the API answers an unknown format 400)."""
    return f"/v1/jobs/{job_id}/export", {"format": format,
                                         "images": "true" if images else "false"}


def archive_path(directory: Path, job_id: str) -> Path:
    """Where the zip is saved while it downloads: beside the folder, not in it."""
    return directory.parent / f".{directory.name}-{job_id}.zip"


def unpack(archive: Path, directory: Path) -> Path:
    """Unpack `archive` into `directory`; `ValueError` (and nothing written) if an entry's
    name would land outside it, or if the archive is not a whole zip."""
    try:
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
                    raise ValueError(f"the export holds an entry named {name[:80]!r}, outside "
                                     "its folder; it was not unpacked")
            directory.mkdir(parents=True, exist_ok=True)
            z.extractall(directory)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"the export {archive} is not a whole zip archive ({exc}); "
                         "download it again") from None
    return directory

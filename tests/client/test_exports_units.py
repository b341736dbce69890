"""Unpacking an export: entries land inside the folder or nothing is written; a cut-off
archive is an error that says to download it again."""

from __future__ import annotations

import zipfile

import pytest
from saliency_client.exports import archive_path, unpack


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            z.writestr(name, b"x")
    return path


def test_entries_are_unpacked_inside_the_folder(tmp_path):
    archive = _zip(tmp_path / "a.zip", ["metadata.json", "fields/gradient_0/000000.png"])
    out = unpack(archive, tmp_path / "out")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "fields/gradient_0/000000.png", "metadata.json"]


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "data/../../evil", "c:evil",
                                  "data\\..\\evil"])
def test_an_entry_outside_the_folder_unpacks_nothing(tmp_path, name):
    archive = _zip(tmp_path / "a.zip", ["metadata.json", name])
    with pytest.raises(ValueError, match="outside"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_a_cut_off_archive_says_to_download_again(tmp_path):
    archive = _zip(tmp_path / "a.zip", ["metadata.json"])
    archive.write_bytes(archive.read_bytes()[:-10])
    with pytest.raises(ValueError, match="download it again"):
        unpack(archive, tmp_path / "out")


def test_the_archive_downloads_beside_the_folder(tmp_path):
    assert archive_path(tmp_path / "out", "j1") == tmp_path / ".out-j1.zip"

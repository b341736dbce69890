"""A bundle is read from a zip or a tar.gz, whatever made it (zipfile, `zip -r`, GNU tar,
shutil), its three members at the top or in one folder; anything else is refused, naming it:
links, devices, extra members, names that leave the folder, a member twice, members over the
size cap (refused before they are read), and archives that are not plain."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from shared.errors import TooLargeError, UndecodableError
from shared.models.bundles import read_bundle

CONFIG = {"model_type": "vit", "image_size": 32, "id2label": {"0": "cat", "1": "dog"}}
PREPROCESSOR = {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3}
HEADER = {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
LIMIT = 1 << 20


def safetensors(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


WEIGHTS = safetensors(HEADER, bytes(range(24)))
FILES = {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": WEIGHTS,
         "preprocessor_config.json": json.dumps(PREPROCESSOR).encode()}


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def tarred(members: list[tuple[str, bytes | tarfile.TarInfo]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, item in members:
            if isinstance(item, tarfile.TarInfo):
                tar.addfile(item)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(item)
                tar.addfile(info, io.BytesIO(item))
    return raw.getvalue()


def read(data: bytes, limit: int = LIMIT, weights: bool = True):
    return read_bundle(io.BytesIO(data), limit, weights=weights)


def check(bundle, preprocessor: bool = True) -> None:
    assert bundle.config == CONFIG
    assert bundle.preprocessor == (PREPROCESSOR if preprocessor else None)
    assert bundle.header == HEADER
    assert bundle.weights == WEIGHTS


@pytest.fixture
def folder(tmp_path) -> Path:
    """A save_pretrained-like folder `model/` with the three members."""
    root = tmp_path / "model"
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("prefix", ["", "model/", "./"])
def test_a_zip_of_the_members_at_the_top_or_in_one_folder_reads(compression, prefix):
    check(read(zipped({prefix + name: data for name, data in FILES.items()}, compression)))


def test_archives_made_by_the_usual_tools_read(folder, tmp_path):
    made = [shutil.make_archive(str(tmp_path / "a"), "zip", root_dir=folder),
            shutil.make_archive(str(tmp_path / "b"), "gztar", root_dir=folder),
            shutil.make_archive(str(tmp_path / "c"), "gztar", root_dir=tmp_path,
                                base_dir="model")]
    subprocess.run(["zip", "-qr", str(tmp_path / "d.zip"), "model"], cwd=tmp_path, check=True)
    subprocess.run(["tar", "czf", str(tmp_path / "e.tar.gz"), "model"], cwd=tmp_path,
                   check=True)
    for path in [*made, tmp_path / "d.zip", tmp_path / "e.tar.gz"]:
        check(read(Path(path).read_bytes()))


def test_the_preprocessor_config_is_optional_and_the_weights_kept_only_when_asked():
    members = {k: v for k, v in FILES.items() if k != "preprocessor_config.json"}
    check(read(zipped(members)), preprocessor=False)
    bundle = read(tarred(list(FILES.items())), weights=False)
    assert bundle.weights is None and bundle.header == HEADER


def test_a_zipped_symbolic_link_is_refused(folder, tmp_path):
    (folder / "config.json").unlink()
    os.symlink("/etc/passwd", folder / "config.json")
    subprocess.run(["zip", "-qry", str(tmp_path / "l.zip"), "model"], cwd=tmp_path, check=True)
    with pytest.raises(UndecodableError, match="config.json' is a symbolic link"):
        read((tmp_path / "l.zip").read_bytes())


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, "/etc/passwd"
    return info


@pytest.mark.parametrize("kind, says", [(tarfile.SYMTYPE, "symbolic link"),
                                        (tarfile.LNKTYPE, "hard link"),
                                        (tarfile.CHRTYPE, "character device"),
                                        (tarfile.FIFOTYPE, "pipe")])
def test_a_tarred_link_device_or_pipe_is_refused(kind, says):
    members = [("config.json", _special("config.json", kind)),
               ("model.safetensors", WEIGHTS)]
    with pytest.raises(UndecodableError, match=says):
        read(tarred(members))


NAMES = [
    ("../config.json", "not a file of the save_pretrained folder"),
    ("/config.json", "not a file of the save_pretrained folder"),
    ("model/../../config.json", "not a file of the save_pretrained folder"),
    ("a/b/config.json", "nested deeper"),
    ("model\\config.json", "not a file of the save_pretrained folder"),
    ("other/config.json", "not in the folder of the others"),
    ("modeling_evil.py", "is not accepted"),
    ("CONFIG.JSON", "is not accepted"),
    ("model/tokenizer.json", "is not accepted"),
]


@pytest.mark.parametrize("name, says", NAMES, ids=[n for n, _ in NAMES])
@pytest.mark.parametrize("container", ["zip", "tar.gz"])
def test_a_member_that_is_not_one_of_the_three_files_of_the_folder_is_refused(name, says,
                                                                              container):
    members = [("model/model.safetensors", WEIGHTS), (name, b"{}")]
    data = zipped(dict(members)) if container == "zip" else tarred(members)
    with pytest.raises(UndecodableError, match=says):
        read(data)


@pytest.mark.parametrize("container", ["zip", "tar.gz"])
def test_a_member_twice_is_refused(container):
    members = [("config.json", FILES["config.json"]), ("model.safetensors", WEIGHTS),
               ("./config.json", b'{"model_type": "vit", "auto_map": {}}')]
    data = zipped(dict(members)) if container == "zip" else tarred(members)
    with pytest.raises(UndecodableError, match="config.json appears twice"):
        read(data)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_a_bundle_without_its_config_or_weights_is_refused(missing):
    with pytest.raises(UndecodableError, match=f"no {missing}"):
        read(zipped({k: v for k, v in FILES.items() if k != missing}))


def test_members_over_the_cap_are_refused_before_they_are_read():
    big = safetensors({"w": {"dtype": "F32", "shape": [1 << 20],
                             "data_offsets": [0, 4 << 20]}}, bytes(4 << 20))
    members = {**FILES, "model.safetensors": big}
    for data in (zipped(members), tarred(list(members.items()))):
        assert len(data) < 64 * 1024  # zeros compress: the cap is on what the members hold
        with pytest.raises(TooLargeError, match="SALIENCY_MAX_MODEL_BYTES"):
            read(data, limit=4 << 20)
        assert read(data, limit=5 << 20).header["w"]["shape"] == [1 << 20]


@pytest.mark.parametrize("data, says", [
    (b"GIF89a" + bytes(20), "neither a zip nor a tar.gz"),
    (gzip.compress(b"not a tar archive at all" * 40), "no ustar header"),
    (zipped({**FILES, "config.json": b"[1, 2]"}), "config.json is not a JSON object"),
    (zipped({**FILES, "config.json": b"{nope"}), "config.json: is not valid JSON"),
    (zipped({**FILES, "model.safetensors": b"\xff" * 8 + b"{}"}), "model.safetensors: not a "
                                                                   "safetensors file"),
])
def test_what_is_not_a_bundle_is_refused(data, says):
    with pytest.raises(UndecodableError, match=says):
        read(data)

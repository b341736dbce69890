"""Hugging Face bundles that must not register: a config asking for remote code, members that
are links or more than the three files, names that leave the folder, members over
`SALIENCY_MAX_MODEL_BYTES` (compressed far below it), a spec contradicting its bundle. Each is
refused at once in the error shape, with nothing stored; weights that do not fit their config
make the model `invalid` on the worker. Then the worker lives and a job succeeds."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest
from e2e.helpers import side_effects
from hf_bundles import save, tarred, tiny_model, zipped
from waiting import model_ready

from badinput.helpers import assert_error, check_real_job, tally

FAMILY = "bundle registrations"
SPEC = {"name": "hf-bad", "architecture": "transformers"}
CAP = 60_000_000  # the suite's SALIENCY_MAX_MODEL_BYTES


def post(session, url: str, spec, data: bytes, part: str = "bundle"):
    return session.post(f"{url}/v1/models", files={
        "spec": (None, json.dumps(spec), "application/json"),
        part: ("bundle", io.BytesIO(data), "application/octet-stream")}, timeout=60)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save(tiny_model("vit"), tmp_path_factory.mktemp("hf-bad") / "vit")


def _config(folder, **changes) -> bytes:
    return json.dumps({**json.loads((folder / "config.json").read_text()), **changes}).encode()


def with_auto_map(folder, tmp_path) -> bytes:
    copy = save(tiny_model("vit"), tmp_path / "copy")
    (copy / "config.json").write_bytes(_config(
        folder, auto_map={"AutoModelForImageClassification": "modeling_evil.EvilModel"}))
    return zipped(copy)


def with_symlink(folder, tmp_path) -> bytes:
    """`zip -y` of a folder whose preprocessor config is a link to /etc/passwd."""
    copy = tmp_path / "linked"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    os.symlink("/etc/passwd", copy / "preprocessor_config.json")
    subprocess.run(["zip", "-qry", str(tmp_path / "l.zip"), "linked"], cwd=tmp_path, check=True)
    return (tmp_path / "l.zip").read_bytes()


def with_tar_link(folder, tmp_path) -> bytes:
    link = tarfile.TarInfo("preprocessor_config.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return tarred(folder, [link])


def over_the_cap(folder, tmp_path) -> bytes:
    """A tar.gz of well under a megabyte whose weights hold CAP bytes of zeros."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [CAP], "data_offsets": [0, CAP]}})
    weights = len(header).to_bytes(8, "little") + header.encode() + bytes(CAP)
    (tmp_path / "empty").mkdir()
    data = tarred(tmp_path / "empty", [("config.json", (folder / "config.json").read_bytes()),
                                       ("model.safetensors", weights)])
    assert len(data) < 1_000_000
    return data


def _hard_link() -> tarfile.TarInfo:
    link = tarfile.TarInfo("preprocessor_config.json")
    link.type, link.linkname = tarfile.LNKTYPE, "config.json"
    return link


def _replaced(folder, tmp_path, **changes) -> bytes:
    copy = save(tiny_model("vit"), tmp_path / "replaced")
    (copy / "config.json").write_bytes(_config(folder, **changes))
    return zipped(copy)


REFUSED = [
    ("a config with auto_map", with_auto_map, 422, "unsupported_model", "auto_map"),
    ("a zipped symbolic link", with_symlink, 422, "undecodable_input", "symbolic link"),
    ("a tarred symbolic link", with_tar_link, 422, "undecodable_input", "symbolic link"),
    ("a hard link", lambda f, t: tarred(f, [_hard_link()]), 422, "undecodable_input",
     "hard link"),
    ("an extra member", lambda f, t: zipped(f, extra={"modeling_evil.py": b"import os"}),
     422, "undecodable_input", "'modeling_evil.py' is not accepted"),
    ("a path out of the folder", lambda f, t: zipped(f, prefix="../"), 422,
     "undecodable_input", "'../config.json'"),
    ("an absolute path", lambda f, t: tarred(f, [("/etc/config.json", b"{}")]), 422,
     "undecodable_input", "'/etc/config.json'"),
    ("a member twice", lambda f, t: tarred(f, [("./config.json", _config(f))]), 422,
     "undecodable_input", "appears twice"),
    ("members over the cap", over_the_cap, 413, "too_large", "SALIENCY_MAX_MODEL_BYTES"),
    ("a model type not supported", lambda f, t: _replaced(f, t, model_type="llama"), 422,
     "unsupported_model", "'llama'"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_bundle_that_is_not_plain_data_of_a_supported_model_is_refused(
        bad, mallory, folder, tmp_path, case):
    _, make, status, code, says = case
    data = make(folder, tmp_path)
    before = side_effects(bad)
    assert_error(post(mallory, bad.url, SPEC, data), status, code, says)
    assert side_effects(bad) == before
    tally(FAMILY)


@pytest.mark.parametrize("spec, part, says", [
    ({**SPEC, "num_classes": 5}, "bundle", "num_classes: is 5"),
    ({**SPEC, "architecture": "resnet18"}, "bundle", "architecture: must be 'transformers'"),
    ({**SPEC, "num_classes": 3}, "weights", "file part 'bundle'"),
])
def test_a_spec_that_contradicts_its_artifact_is_refused(bad, mallory, folder, spec, part,
                                                         says):
    data = zipped(folder) if part == "bundle" else (folder / "model.safetensors").read_bytes()
    before = side_effects(bad)
    assert_error(post(mallory, bad.url, spec, data, part), 400, "invalid_spec", says)
    assert side_effects(bad) == before
    tally(FAMILY)


def test_weights_that_do_not_fit_the_config_make_the_model_invalid(bad, mallory, folder,
                                                                   tmp_path):
    other = save(tiny_model("vit", hidden_size=16, intermediate_size=32), tmp_path / "other")
    (other / "config.json").write_bytes((folder / "config.json").read_bytes())
    response = post(mallory, bad.url, {**SPEC, "name": "hf-misfit"}, zipped(other))
    assert response.status_code == 201, response.text
    record = model_ready(mallory, bad.url, "hf-misfit")
    assert record["status"] == "invalid" and "model.safetensors holds" in record["error"]
    assert mallory.delete(f"{bad.url}/v1/models/hf-misfit", timeout=10).status_code == 204
    tally(FAMILY)


def test_after_bundles_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model, reference,
                                                           worker):
    check_real_job(bad, mallory, bad_model, reference, worker)

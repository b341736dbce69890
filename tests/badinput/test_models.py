"""Model registrations: bad specs and unknown architectures are refused at once; weights that
cannot fit their architecture (a 10-byte file, 100,000 classes on vgg16 with tiny weights) are
registered as `validating` and made `invalid` by the worker without building the model; an
exported program that would unpickle anything is refused, and its payload never runs."""

from __future__ import annotations

import io
import json
import os
import struct
import time
import warnings
import zipfile

import pytest
from e2e.helpers import side_effects, submit
from waiting import model_ready

from badinput.cases import clean_png
from badinput.helpers import (
    assert_error,
    check_real_job,
    peak_rss_mb,
    register_model,
    tally,
)

FAMILY = "model registrations"
SPEC = {"name": "reg", "architecture": "resnet18", "num_classes": 10, "input_size": 32,
        "resize": 32}


def safetensors(header: dict | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


TEN_BYTES = safetensors({})  # a valid safetensors file with no tensor
TINY = safetensors({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))

SPEC_CASES = [
    ("num_classes 0", {**SPEC, "num_classes": 0}, "num_classes"),
    ("num_classes a billion", {**SPEC, "num_classes": 10**9}, "num_classes"),
    ("num_classes as a string", {**SPEC, "num_classes": "10"}, "num_classes"),
    ("num_classes true", {**SPEC, "num_classes": True}, "num_classes"),
    ("num_classes 1.5", {**SPEC, "num_classes": 1.5}, "num_classes"),
    ("input_size 4096", {**SPEC, "input_size": 4096}, "input_size"),
    ("input_size 4", {**SPEC, "input_size": 4}, "input_size"),
    ("resize below input_size", {**SPEC, "resize": 16}, "resize"),
    ("resize 100000", {**SPEC, "resize": 100_000}, "resize"),
    ("std zero", {**SPEC, "std": [0, 1, 1]}, "std"),
    ("std negative", {**SPEC, "std": [-1, 1, 1]}, "std"),
    ("mean of two", {**SPEC, "mean": [0, 0]}, "mean"),
    ("mean of strings", {**SPEC, "mean": ["0", "0", "0"]}, "mean"),
    ("name with a slash", {**SPEC, "name": "../evil"}, "name"),
    ("name upper-case", {**SPEC, "name": "Evil"}, "name"),
    ("name empty", {**SPEC, "name": ""}, "name"),
    ("name of 65 characters", {**SPEC, "name": "m" * 65}, "name"),
    ("name with a right-to-left mark", {**SPEC, "name": "\u202eevil"}, "name"),
    ("name with a nul", {**SPEC, "name": "m\x00"}, "name"),
    ("name a list", {**SPEC, "name": ["reg"]}, "name"),
    ("no name", {k: v for k, v in SPEC.items() if k != "name"}, "name"),
    ("class names of the wrong count", {**SPEC, "class_names": ["a"]}, "class_names"),
    ("class names not strings", {**SPEC, "class_names": list(range(10))}, "class_names"),
    ("a class name of 300 characters", {**SPEC, "class_names": ["c" * 300] * 10},
     "class_names"),
    ("an unknown field", {**SPEC, "weights_url": "http://x"}, "weights_url"),
    ("a spec that is a list", [SPEC], "spec"),
    ("an unknown architecture", {**SPEC, "architecture": "resnet9000"}, "architecture"),
    ("an unknown timm architecture", {**SPEC, "architecture": "timm:nope"}, "architecture"),
    ("an empty architecture", {**SPEC, "architecture": ""}, "architecture"),
    ("an architecture that is a list", {**SPEC, "architecture": ["resnet18"]}, "architecture"),
    ("an architecture that is a module path", {**SPEC, "architecture": "os.system"},
     "architecture"),
    ("no architecture", {k: v for k, v in SPEC.items() if k != "architecture"}, "architecture"),
]


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_a_bad_model_spec_is_refused_at_once(bad, mallory, case, tiny_weights):
    _, spec, field = case
    before = side_effects(bad)
    response = register_model(mallory, bad.url, spec, TINY)
    assert_error(response, 400, "invalid_spec", field)
    assert side_effects(bad) == before
    tally(FAMILY)


WEIGHTS_CASES = [
    ("empty file", b""),
    ("seven bytes", bytes(7)),
    ("a header longer than the file", struct.pack("<Q", 1000) + b"{}"),
    ("a header of 2^64-1 bytes", b"\xff" * 8 + b"{}"),
    ("a header that is a list", safetensors(b"[]")),
    ("a header that is not json", safetensors(b"{nope")),
    ("a header with NaN", safetensors(b'{"x": {"dtype": "F32", "shape": [NaN], '
                                      b'"data_offsets": [0, 4]}}', bytes(4))),
    ("a tensor with a negative dimension", safetensors(
        {"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4))),
    ("a tensor without a shape", safetensors({"x": {"dtype": "F32"}})),
    ("a tensor that is a string", safetensors({"x": "F32"})),
    ("a png", clean_png()),
    ("a pickle", b"\x80\x04\x95" + bytes(20) + b"."),
]


@pytest.mark.parametrize("case", WEIGHTS_CASES, ids=[c[0] for c in WEIGHTS_CASES])
def test_weights_that_are_not_safetensors_are_refused_at_once(bad, mallory, case):
    _, weights = case
    before = side_effects(bad)
    response = register_model(mallory, bad.url, {**SPEC, "name": "weights-case"}, weights)
    assert_error(response, 422, "undecodable_input", "weights")
    assert side_effects(bad) == before
    tally(FAMILY)


def test_a_model_name_taken_is_409_and_a_json_registration_is_415(bad, mallory, bad_model):
    before = side_effects(bad)
    assert_error(register_model(mallory, bad.url, {**SPEC, "name": bad_model}, TINY), 409,
                 "conflict", bad_model)
    assert_error(mallory.post(f"{bad.url}/v1/models", json=SPEC, timeout=10), 415,
                 "unsupported_media_type")
    assert side_effects(bad) == before
    tally(FAMILY, 2)


def test_a_builtin_models_name_is_reserved_where_builtins_are_not_loaded(bad, mallory):
    before = side_effects(bad)
    response = register_model(mallory, bad.url, {**SPEC, "name": "efficientnet_lite0"}, TINY)
    assert_error(response, 409, "conflict", "reserved for a built-in model")
    assert side_effects(bad) == before
    tally(FAMILY)


def _validated(bad, session, spec, weights, part: str = "weights") -> dict:
    response = register_model(session, bad.url, spec, weights, part)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "validating"
    return model_ready(session, bad.url, spec["name"])


@pytest.mark.parametrize("case", [
    ("ten-byte", {**SPEC, "name": "ten-byte"}, TEN_BYTES, "missing"),
    ("vgg16-100000", {"name": "vgg16-100000", "architecture": "vgg16", "num_classes": 100_000,
                      "input_size": 32, "resize": 32}, TINY, "missing"),
], ids=["a 10-byte weights file", "vgg16 with 100000 classes and tiny weights"])
def test_weights_that_cannot_fit_are_made_invalid_without_building_the_model(
        bad, mallory, bad_model, worker, case):
    name, spec, weights, says = case
    child = max(worker[1])
    peak = peak_rss_mb(child)
    started = time.monotonic()
    record = _validated(bad, mallory, spec, weights)
    assert record["status"] == "invalid" and says in record["error"], record
    # vgg16's classifier for 100,000 classes alone is 1.6 GB: building it would show.
    assert peak_rss_mb(child) - peak < 300, (peak, peak_rss_mb(child))
    assert time.monotonic() - started < 60
    before = side_effects(bad)
    job = submit(mallory, bad.url, {"model": name}, [("a.png", clean_png())])
    assert_error(job, 422, "invalid_model", name)
    assert side_effects(bad) == before
    assert mallory.delete(f"{bad.url}/v1/models/{name}", timeout=10).status_code == 204
    tally(FAMILY)


# --- exported programs (.pt2) ------------------------------------------------------------------

class Payload:
    """What a malicious archive carries: unpickling it creates the file at `path` (and
    returns its descriptor)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.open, (self.path, os.O_CREAT | os.O_WRONLY, 0o600))


def _program() -> bytes:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    buf = io.BytesIO()
    torch.export.save(torch.export.export(Tiny(), (torch.zeros(1, 3, 8, 8),)), buf)
    return buf.getvalue()


def _payload(path: str) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(Payload(path), buf)
    return buf.getvalue()


def _edit(archive: bytes, edit) -> bytes:
    """A copy of a zip archive with `edit(name, data)` applied to each member (None drops it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = edit(name, src.read(name))
            if data is not None:
                dst.writestr(name, data)
    return out.getvalue()


def pickled_weights(path: str) -> bytes:
    """The archive with its first weight replaced by the payload and marked `use_pickle`."""
    def edit(name: str, data: bytes):
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/weight_0"):
            return _payload(path)
        return data

    return _edit(_program(), edit)


def pickled_sample_inputs(path: str) -> bytes:
    return _edit(_program(), lambda name, data: _payload(path) if "sample_inputs/" in name
                 else data)


def custom_constant(path: str) -> bytes:
    def edit(name: str, data: bytes):
        if name.endswith("model_constants_config.json"):
            return json.dumps({"config": {"obj": {"path_name": "custom_obj_0",
                                                  "use_pickle": False}}}).encode()
        return data

    return _edit(_program(), edit)


def legacy_payload(path: str) -> bytes:
    return _add(_program(), "archive/data/weights/model.pt", _payload(path))


def _add(archive: bytes, name: str, data: bytes) -> bytes:
    out = io.BytesIO(archive)
    with zipfile.ZipFile(out, "a") as z:
        z.writestr(name, data)
    return out.getvalue()


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    """A zip of `entries` in that order, two of one name included."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(out, "w") as z:
            for name, data in entries:
                z.writestr(name, data)
    return out.getvalue()


def _read_by_torch(archive: bytes, name: str) -> bytes:
    """What torch's own reader (`PyTorchStreamReader`, as `torch.export.load` uses it)
    returns for `name`, relative to the archive's folder."""
    import torch

    return bytes(torch._C.PyTorchFileReader(io.BytesIO(archive)).get_record(name))


def duplicate_config(path: str, pickled_first: bool) -> bytes:
    """The weights config twice: the clean copy, and one marking a weight `use_pickle` and
    pointing it at the payload; `pickled_first` says which copy comes first. `zipfile` reads
    the last copy, torch's reader either, depending on the layout: padding entries move the
    layout until torch's reader takes the pickled copy."""
    program = zipfile.ZipFile(io.BytesIO(_program()))
    name = next(n for n in program.namelist() if n.endswith("model_weights_config.json"))
    clean = program.read(name)
    config = json.loads(clean)
    first = next(iter(config["config"].values()))
    first.update(use_pickle=True, path_name="payload")
    pickled = json.dumps(config).encode()
    copies = [pickled, clean] if pickled_first else [clean, pickled]
    rest = [(n, program.read(n)) for n in program.namelist() if n != name]
    for pad in range(16):
        archive = _zip([(name, copies[0]), *[(f"archive/extra/pad{i}", b"") for i in range(pad)],
                        *rest, ("archive/data/weights/payload", _payload(path)),
                        (name, copies[1])])
        if _read_by_torch(archive, name.split("/", 1)[1]) == pickled:
            return archive
    raise AssertionError("no layout made torch's reader take the pickled copy")


def sample_inputs_in_upper_case(path: str) -> bytes:
    """The sample inputs replaced by the payload under `DATA/` instead of `data/`: torch's
    reader finds names without regard to letter case."""
    program = zipfile.ZipFile(io.BytesIO(_program()))
    entries = [(n.replace("/data/sample_inputs/", "/DATA/sample_inputs/"), _payload(path))
               if "/data/sample_inputs/" in n else (n, program.read(n))
               for n in program.namelist()]
    archive = _zip(entries)
    assert _read_by_torch(archive, "data/sample_inputs/model.pt") == _payload(path)
    return archive


def unlisted_entry(path: str) -> bytes:
    """The program with the payload in an entry whose local header the central directory
    does not list."""
    program = zipfile.ZipFile(io.BytesIO(_program()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in program.namelist():
            z.writestr(name, program.read(name))
        z.writestr("archive/data/weights/hidden", _payload(path))
        z.filelist = [i for i in z.filelist if not i.filename.endswith("/hidden")]
    return out.getvalue()


def older_format_beside(path: str) -> bytes:
    """A program with the files of torch's older archive format at the top, outside the
    archive's folder: torch's reader then fails on them, and `torch.export.load` falls back
    to the older format, which unpickles `serialized_state_dict.pt` and the like."""
    from torch._export.serde.schema import SCHEMA_VERSION

    program = zipfile.ZipFile(io.BytesIO(_program()))
    older = [("version", ".".join(map(str, SCHEMA_VERSION)).encode()),
             ("serialized_exported_program.json", program.read("archive/models/model.json"))]
    older += [(n, _payload(path)) for n in ("serialized_state_dict.pt", "serialized_constants.pt",
                                           "serialized_example_inputs.pt")]
    return _zip([(n, program.read(n)) for n in program.namelist()] + older)


def test_the_payload_would_run_if_unpickled(tmp_path):
    """The archives below are live: loading their payload with pickle creates the file."""
    import torch

    control = tmp_path / "control"
    os.close(torch.load(io.BytesIO(_payload(str(control))), weights_only=False))
    assert control.is_file()


REFUSED_PROGRAMS = [
    ("weights marked use_pickle", pickled_weights, "pickled"),
    ("a custom constant", custom_constant, "custom object"),
    ("a legacy pickled payload", legacy_payload, "legacy"),
    ("not a zip", lambda path: b"PK\x03\x04" + bytes(40), "program"),
    ("a zip without models/", lambda path: _edit(_program(), lambda n, d: None if "models/" in n
                                                  else d), "no models/"),
    ("compiled code", lambda path: _add(_program(), "archive/data/aotinductor/model/x.so", b"x"),
     "AOTInductor"),
    ("a config twice, the pickled copy first", lambda path: duplicate_config(path, True),
     "appears twice"),
    ("a config twice, the pickled copy last", lambda path: duplicate_config(path, False),
     "appears twice"),
    ("the older format beside it", older_format_beside, "not in the archive's folder"),
    ("an entry the directory does not list", unlisted_entry, "that no entry takes"),
]
# Refused by the API, and by the worker on its own (`load_program`).
WORKER_REFUSES = [pickled_weights, pickled_sample_inputs, custom_constant, legacy_payload,
                  lambda path: duplicate_config(path, True),
                  lambda path: duplicate_config(path, False), sample_inputs_in_upper_case,
                  older_format_beside]


@pytest.mark.parametrize("case", REFUSED_PROGRAMS, ids=[c[0] for c in REFUSED_PROGRAMS])
def test_a_program_that_would_unpickle_is_refused_and_its_payload_never_runs(
        bad, mallory, tmp_path, case):
    _, make, says = case
    target = tmp_path / "pwned"
    spec = {"name": "evil-program", "num_classes": 10, "input_size": 8, "resize": 8}
    before = side_effects(bad)
    response = register_model(mallory, bad.url, spec, make(str(target)), part="program")
    assert_error(response, 422, "undecodable_input", says)
    assert not target.exists()
    assert side_effects(bad) == before
    tally(FAMILY)


def test_the_worker_refuses_such_programs_itself(tmp_path):
    """Defence in depth: `load_program` on the worker checks the archive again."""
    from shared.errors import InputError
    from worker.models.programs import load_program

    target = tmp_path / "pwned"
    for n, make in enumerate(WORKER_REFUSES):
        path = tmp_path / "program.pt2"
        path.write_bytes(make(str(target)))
        with pytest.raises(InputError):
            load_program(path)
        assert not target.exists(), n
    tally(FAMILY, len(WORKER_REFUSES))


@pytest.mark.parametrize("make", [pickled_sample_inputs, sample_inputs_in_upper_case])
def test_pickled_sample_inputs_make_the_model_invalid_and_never_run(bad, mallory, tmp_path,
                                                                    make):
    """Only torch can tell pickled tensors from pickled code: the worker loads the sample
    inputs torch would read (whatever the letter case of their name) with
    `weights_only=True`, before `torch.export.load` may."""
    target = tmp_path / "pwned"
    spec = {"name": "evil-samples", "num_classes": 10, "input_size": 8, "resize": 8}
    record = _validated(bad, mallory, spec, make(str(target)), "program")
    assert record["status"] == "invalid" and "sample inputs" in record["error"], record
    assert not target.exists()
    assert mallory.delete(f"{bad.url}/v1/models/{spec['name']}", timeout=10).status_code == 204
    tally(FAMILY)


def test_a_program_needs_the_admin_role(bad, tmp_path):
    trudy = bad.session("trudy")
    before = side_effects(bad)
    response = register_model(trudy, bad.url, {"name": "p", "num_classes": 10}, _program(),
                              part="program")
    assert_error(response, 403, "forbidden")
    assert side_effects(bad) == before
    tally(FAMILY)


def test_after_registrations_the_worker_lives_and_a_job_succeeds(bad, mallory, bad_model,
                                                                  reference, worker):
    check_real_job(bad, mallory, bad_model, reference, worker)

"""Exported programs (`.pt2`): checked, loaded, and given back their module tree.

An archive is checked twice before `torch.export.load` sees it: by
`shared.models.artifacts.check_pt2` (the container, read byte by byte), then through torch's own
reader, on exactly the records `torch.export.load` will read — the payload configs again, and the
sample inputs, which torch would unpickle with `weights_only=False` if `weights_only=True` failed.

The loaded program's flat graph runs no submodule, so forward hooks (layer targets, Grad-CAM's
layer) would see nothing: the program is unflattened into the module tree of the model that
was exported, each module keeping its class name (the default Grad-CAM layer is found as in
that model). A program keeps the mode it was exported in: export a model in eval mode.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import torch
from torch import nn

from shared.errors import InputError
from shared.models.artifacts import check_payload_config, check_pt2


def _check_records(artifact: Path) -> None:
    """Read with torch's reader what `torch.export.load` reads, and refuse what would
    unpickle: pickled or custom payloads, legacy payloads, sample inputs that are not plain
    tensors."""
    from torch.export.pt2_archive import PT2ArchiveReader
    from torch.export.pt2_archive.constants import (
        CONSTANTS_CONFIG_FILENAME_FORMAT,
        CONSTANTS_DIR,
        MODELS_DIR,
        MODELS_FILENAME_FORMAT,
        SAMPLE_INPUTS_FILENAME_FORMAT,
        WEIGHTS_CONFIG_FILENAME_FORMAT,
        WEIGHTS_DIR,
    )

    try:
        reader = PT2ArchiveReader(str(artifact))
        names = reader.get_file_names()
    except (RuntimeError, AssertionError) as exc:  # torch's reader refuses the archive
        raise InputError(f"program: torch cannot read the archive ({exc})") from None

    def read(name: str) -> bytes:
        try:
            return reader.read_bytes(name)
        except RuntimeError as exc:  # missing, or its CRC does not match
            raise InputError(f"program: torch cannot read {name} ({exc})") from None

    prefix, suffix = MODELS_FILENAME_FORMAT.split("{}")
    for name in names:
        if not name.startswith(MODELS_DIR):
            continue
        model = name[len(prefix):-len(suffix)]  # as torch.export.load derives it
        for legacy in (f"{WEIGHTS_DIR}{model}.pt", f"{CONSTANTS_DIR}{model}.pt"):
            if legacy in names:
                raise InputError(f"program: legacy pickled payload {legacy} is not accepted")
        for config in (WEIGHTS_CONFIG_FILENAME_FORMAT.format(model),
                       CONSTANTS_CONFIG_FILENAME_FORMAT.format(model)):
            if config in names:
                check_payload_config(config, read(config))
        samples = SAMPLE_INPUTS_FILENAME_FORMAT.format(model)
        raw = read(samples)
        try:
            torch.load(io.BytesIO(raw), weights_only=True)
        except Exception as exc:  # torch raises several kinds for an unsafe pickle
            raise InputError(f"program: sample inputs {samples} are not plain tensors "
                             f"({type(exc).__name__})") from None


@functools.cache
def _named(base: type, qualified: str) -> type:
    """A subclass of `base` named like the class `qualified` ("torch.nn.modules.conv.Conv2d")."""
    module, _, name = qualified.rpartition(".")
    return type(name, (base,), {"__module__": module, "__qualname__": name})


def module_tree(program: torch.export.ExportedProgram) -> nn.Module:
    """The program as the module tree of the model that was exported (see the module's
    docstring). The nodes' export-time metadata goes: its symbolic shapes cannot be copied,
    and every engine runs a copy."""
    classes: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            classes[path] = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    tree = torch.export.unflatten(program)
    for path, module in tree.named_modules():
        graph = getattr(module, "graph", None)
        if isinstance(graph, torch.fx.Graph):
            for node in graph.nodes:
                node.meta.clear()
        if path and path in classes:
            module.__class__ = _named(type(module), classes[path])
    return tree


def load_program(artifact: Path) -> nn.Module:
    """An exported program's module tree, refusing any archive that would unpickle something."""
    with open(artifact, "rb") as f:
        check_pt2(f)
    _check_records(artifact)
    try:
        return module_tree(torch.export.load(str(artifact)))
    except Exception as exc:  # torch.export raises many kinds of errors for a bad archive
        raise InputError(f"program: not a loadable torch.export archive ({exc})") from None

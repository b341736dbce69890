"""No unpickling anywhere in the service: no `pickle.load`/`loads` (or an `Unpickler`), and no
`torch.load` without `weights_only=True`, in `api/`, `shared/` or `worker/` — found by reading
the code's syntax tree, so that an alias or a line break cannot hide a call."""

from __future__ import annotations

import ast
from pathlib import Path

from devstack import ROOT

PACKAGES = ("api", "shared", "worker")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "pandas"}
PICKLE_CALLS = {"load", "loads", "Unpickler", "read_pickle"}


def _weights_only_true(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
               and k.value.value is True for k in call.keywords)


def _allow_pickle_true(call: ast.Call) -> bool:
    return any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant)
                                                and k.value.value is False)
               for k in call.keywords)


def unsafe_calls(source: str, filename: str = "<code>") -> list[str]:
    """Every call in `source` that could unpickle: `pickle.load(s)`, an `Unpickler`,
    `torch.load` without `weights_only=True`, `numpy.load(allow_pickle=...)` other than
    False; also under import aliases (`import pickle as p`, `from torch import load`)."""
    tree = ast.parse(source, filename)
    modules: dict[str, str] = {}  # local name -> module
    functions: dict[str, tuple[str, str]] = {}  # local name -> (module, function)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                functions[alias.asname or alias.name] = (node.module, alias.name)
                modules.setdefault(alias.asname or alias.name, f"{node.module}.{alias.name}")
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            module, name = modules.get(func.value.id, func.value.id), func.attr
        elif isinstance(func, ast.Name) and func.id in functions:
            module, name = functions[func.id]
        else:
            continue
        root = module.split(".")[0]
        where = f"{filename}:{node.lineno}: {module}.{name}"
        if root in PICKLE_MODULES and name in PICKLE_CALLS:
            found.append(where)
        elif root == "torch" and name == "load" and not _weights_only_true(node):
            found.append(where + " without weights_only=True")
        elif root == "numpy" and name == "load" and _allow_pickle_true(node):
            found.append(where + " with allow_pickle")
    return found


def test_the_scanner_finds_unpickling_however_it_is_spelled():
    sample = """
import pickle
import pickle as p
import torch
import numpy as np
from torch import load as tload
from pickle import loads
pickle.load(f)
p.loads(b)
torch.load(f)
torch.load(f, weights_only=False)
tload(f, map_location="cpu")
loads(b)
np.load(f, allow_pickle=True)
pickle.Unpickler(f).load()
torch.load(f, weights_only=True)
np.load(f, allow_pickle=False)
np.load(f)
"""
    assert len(unsafe_calls(sample)) == 8


def test_no_code_of_the_service_unpickles():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found += unsafe_calls(path.read_text(encoding="utf-8"),
                                  str(Path(path).relative_to(ROOT)))
    assert found == []


# Libraries that decode a data set by running what is in it: webdataset's decoders unpickle
# `.pyd`/`.pickle`/`.pth` members; `datasets` can run a data set's loading script. The
# service reads tar headers and Arrow/Parquet files itself (shared/storage/webdataset.py,
# shared/storage/hfdatasets.py); the tests write data sets with these libraries.
RUNNING_DECODERS = {"webdataset", "wids", "datasets"}


def test_no_code_of_the_service_imports_a_library_that_runs_a_data_set():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names
                          if name.split(".")[0] in RUNNING_DECODERS]
    assert found == []

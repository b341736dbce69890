"""Find every environment variable the service's code reads, by reading its source with ast.

The packages scanned are those `pyproject.toml` installs. A read is `os.environ[...]`,
`os.environ.get/pop/setdefault(...)`, `os.getenv(...)`, `"X" in os.environ`, the same on a
mapping named `env`/`environ`, or a helper called with such a mapping and the name (as
`Settings.from_env` does with `_int(env, "SALIENCY_PORT", ...)`).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ENV_NAMES = {"env", "environ", "environment"}
# `make run`'s embedded stack: no container or pod runs it, so what it reads is not theirs.
EMBEDDED_ONLY = {"devstack"}
VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def service_packages(root: Path) -> list[Path]:
    """The top-level package directories that `pyproject.toml` installs and deployments run."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    names = {p.rstrip("*").rstrip(".") for p in patterns} - EMBEDDED_ONLY
    return sorted(root / n for n in names if "." not in n and (root / n / "__init__.py").exists())


def variables_read(root: Path) -> dict[str, list[str]]:
    """Each variable read anywhere in the service packages -> where (`path:line`)."""
    found: dict[str, list[str]] = {}
    for package in service_packages(root):
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for name, line in _reads(tree):
                found.setdefault(name, []).append(f"{path.relative_to(root)}:{line}")
    return found


def _is_env(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in ENV_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr == "environ")


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if VARIABLE.match(node.value) else None
    return None


def _reads(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_env(node.value):
            name = _name(node.slice)
        elif isinstance(node, ast.Compare) and any(_is_env(c) for c in node.comparators):
            name = _name(node.left)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault") \
                    and _is_env(func.value) and node.args:
                name = _name(node.args[0])
            elif (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
                    isinstance(func, ast.Name) and func.id == "getenv"):
                name = _name(node.args[0]) if node.args else None
            elif any(_is_env(a) for a in node.args):
                names = [n for n in map(_name, node.args) if n]
                name = names[0] if names else None
            else:
                name = None
        else:
            name = None
        if name:
            yield name, node.lineno

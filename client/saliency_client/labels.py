"""The labels a prefix data-set job will give a local ImageFolder tree, worked out before
anything is uploaded, so that folders the model has no class for are refused with what to
pass instead, rather than failing every item once the job has run.

The service labels an image as `docs/api.md` says: `folder` takes the name of the image's
parent folder, through `label_map`, then as one of the model's `class_names` or a decimal
class index; `folder-sorted` numbers the folders directly under the root in sorted order,
as torchvision's `ImageFolder` does.

    folder_classes(["cat/1.png", "coffee/2.png"], "folder-sorted", None, model)
    # {"cat": 0, "coffee": 1}
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping

from saliency_client.types import Model

FOLDER, FOLDER_SORTED = "folder", "folder-sorted"
SHOWN = 8  # folder names quoted in an error


def parse_label_map(pairs: Iterable[str], option: str = "--label-map",
                    key: str = "FOLDER") -> dict[str, str]:
    """`--label-map FOLDER=CLASS` words (or another `option`'s `KEY=CLASS`) as {key: class},
    the class an index or a name."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, cls = pair.partition("=")
        if not sep or not name or not cls:
            raise ValueError(f"{option} takes {key}=CLASS (a class index or name), got "
                             f"{pair!r}")
        out[name] = cls
    return out


def class_index(model: Model, name: str) -> int | None:
    """A class given by decimal index or by name (one of `class_names`); None if the model
    has no such class. The service reads a folder's name the same way, the index first."""
    if name.isascii() and name.isdecimal():
        index = int(name)
        return index if model.num_classes is None or index < model.num_classes else None
    if model.class_names is not None and name in model.class_names:
        return model.class_names.index(name)
    return None


def _quoted(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _classes_hint(model: Model) -> str:
    n = model.num_classes
    if model.class_names:
        return f"its {n} classes are named {_quoted(list(model.class_names))}"
    return f"it has {n} classes, numbered from 0, and no class names"


def resolve_label_map(label_map: Mapping[str, str], model: Model,
                      option: str = "--label-map") -> dict[str, int]:
    """`--label-map`'s (or `--category-map`'s) classes as indices, as the data-set spec's
    `label_map` takes them; ValueError naming the classes the model does not have."""
    resolved: dict[str, int] = {}
    wrong = []
    for folder, cls in label_map.items():
        index = class_index(model, cls)
        if index is None:
            wrong.append(cls)
        else:
            resolved[folder] = index
    if wrong:
        raise ValueError(f"{option} names {_quoted(sorted(wrong))}, not classes of model "
                         f"{model.name!r} ({_classes_hint(model)})")
    return resolved


def folder_classes(names: Iterable[str], labels: str | None,
                   label_map: Mapping[str, int] | None, model: Model) -> dict[str, int]:
    """Each class folder's class index as the service will label the images at `names`
    (paths relative to the root, with `/`), given `label_map` from `resolve_label_map`;
    {} when `labels` is None.

    Raises ValueError naming the folders the model has no class for, and saying what to
    pass instead.
    """
    if label_map and labels != FOLDER:
        raise ValueError("--label-map maps folder names: it goes with --labels folder (the "
                         "default with --label-map), not with --labels folder-sorted")
    if labels is None:
        return {}
    if labels == FOLDER_SORTED:
        folders = sorted({name.split("/", 1)[0] for name in names if "/" in name})
        if model.num_classes is not None and len(folders) > model.num_classes:
            raise ValueError(
                f"--labels folder-sorted numbers the {len(folders)} class folders 0.."
                f"{len(folders) - 1}, but model {model.name!r} has {model.num_classes} "
                "classes; nothing was uploaded. Pass --label-map FOLDER=CLASS for each folder")
        return {folder: i for i, folder in enumerate(folders)}
    found: dict[str, int] = {}
    unknown = []
    for folder in sorted({posixpath.basename(posixpath.dirname(n)) for n in names if "/" in n}):
        index = label_map[folder] if label_map and folder in label_map else (
            class_index(model, folder))
        if index is None:
            unknown.append(folder)
        else:
            found[folder] = index
    if unknown:
        raise ValueError(
            f"folders {_quoted(unknown)} are not classes of model {model.name!r} "
            f"({_classes_hint(model)}); nothing was uploaded. Pass --labels folder-sorted to "
            "number the sorted class folders 0, 1, ... as torchvision's ImageFolder does, or "
            "--label-map FOLDER=CLASS (a class index or name) for each folder")
    return found

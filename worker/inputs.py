"""Reading one input: bytes from storage or a data-set root, decoded, preprocessed.

Anything wrong with the input itself — missing, a folder, unreadable, undecodable, the wrong
shape — is the item's error, returned as `Loaded.error`. Only a failure of the storage
backend (`StorageError`) propagates: that is the system's, and is retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared import images
from shared.errors import InputError, SpecError
from shared.modelspec import ModelSpec
from shared.records import InputSource
from worker import faults
from worker.context import WorkerContext


@dataclass(frozen=True)
class Loaded:
    """One input ready for the engine, or the reason it is not."""

    index: int
    source: InputSource
    x: Any = None  # torch.Tensor C×H×W, normalized
    size: tuple[int, int] | None = None  # (width, height) after EXIF orientation; None: .npy
    label: int | None = None  # the source's label as a class index
    mask: np.ndarray | None = None  # bool H×W in the image's own pixels
    error: str | None = None


def read_source(ctx: WorkerContext, tenant: str, source: InputSource, uri: str | None = None,
                field: str = "uri") -> bytes:
    """The bytes of a source (or of `uri`, e.g. its mask): `Locator.read`."""
    return ctx.locator.read(tenant, source, uri, field)


def _label(model: ModelSpec, source: InputSource) -> int | None:
    if source.label is None:
        return None
    index = model.class_index(source.label)
    if index is None:
        raise InputError(f"{source.name}: label {source.label!r} is not a class of model "
                         f"{model.name!r}")
    return index


def _mask(ctx: WorkerContext, tenant: str, source: InputSource,
          size: tuple[int, int] | None) -> np.ndarray | None:
    if source.mask is None:
        return None
    data = read_source(ctx, tenant, source, source.mask, "mask")
    picture = images.decode_image(data, ctx.settings.max_image_pixels, f"{source.name} mask")
    if size is not None and picture.size != size:
        raise InputError(f"{source.name}: the mask is {picture.size[0]}x{picture.size[1]}, "
                         f"the image {size[0]}x{size[1]}")
    return np.asarray(picture).max(axis=2) > 0


def _check_annotated_size(source: InputSource, size: tuple[int, int] | None) -> None:
    """An annotation made for another size of the image (another scan, a rotation its EXIF
    orientation undoes) would put its objects in the wrong place: the item fails."""
    objects = source.objects
    if objects is None or objects.size is None or size is None or objects.size == size:
        return
    raise InputError(f"{source.name}: its annotation ({objects.source}) is of a "
                     f"{objects.size[0]}x{objects.size[1]} image, but the image is "
                     f"{size[0]}x{size[1]} (after its EXIF orientation)")


def load_input(ctx: WorkerContext, tenant: str, model: ModelSpec, index: int,
               source: InputSource) -> Loaded:
    """Read, decode and preprocess one input; its own problems become `Loaded.error`."""
    import torch

    from worker.models import preprocess_image

    if source.error is not None:
        return Loaded(index, source, error=source.error)
    if ctx.settings.faults:
        faults.before_input(ctx.settings, source)
    what, settings = source.name, ctx.settings
    size = model.preprocessing.input_size
    try:
        data = read_source(ctx, tenant, source)
        fmt = images.check_format(data, settings.accepted_formats, what)
        if fmt == "npy":
            x = torch.from_numpy(images.decode_npy(data, settings.max_image_pixels, what))
            if tuple(x.shape) != (3, size, size):
                raise InputError(f"{what}: shape {tuple(x.shape)} is not the model's input "
                                 f"(3, {size}, {size})")
            picture_size = None
        else:
            picture = images.decode_image(data, settings.max_image_pixels, what,
                                          settings.max_aspect_ratio)
            picture_size = picture.size
            _check_annotated_size(source, picture_size)
            x = preprocess_image(picture, model.preprocessing)
        label = _label(model, source)
        mask = _mask(ctx, tenant, source, picture_size)
    except FileNotFoundError as e:
        return Loaded(index, source, error=f"{what}: {e}")
    except (InputError, SpecError) as e:
        return Loaded(index, source, error=e.message)
    except (RuntimeError, ValueError, MemoryError) as e:
        # Preprocessing a valid picture can still fail (a resize too large to allocate): the
        # input's problem, not the worker's.
        return Loaded(index, source, error=f"{what}: cannot be preprocessed ({e})")
    return Loaded(index, source, x, picture_size, label, mask)

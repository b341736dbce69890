"""Reading one input: bytes from storage or a data-set root (or, for the inputs of a run
kept inside larger objects, from what `RunParts` read of them together), decoded,
preprocessed.

Anything wrong with the input itself — missing, a folder, unreadable, undecodable, the wrong
shape — is the item's error, returned as `Loaded.error`. Only a failure of the storage
backend (`StorageError`) propagates: that is the system's, and is retried.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from shared.errors import InputError, SpecError
from shared.media import images
from shared.results.records import InputSource
from shared.spec.model import ModelSpec
from shared.state.jobs import Job
from shared.storage.parts import Sample
from worker.jobs import faults
from worker.jobs.context import WorkerContext


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


READ_BYTES = 64 << 20  # what a run reads of its parts at once, and holds


def _slices(sources: dict[int, InputSource]) -> list[list[int]]:
    """The indices of a run's parts in runs of about `READ_BYTES` of spans (a row group or
    record batch counted once), each read at once, so that a chunk of large images is not
    held whole. A part larger than `READ_BYTES` is a slice of its own."""
    slices: list[list[int]] = []
    size, seen = 0, set()
    for index in sorted(sources):
        part = sources[index].part
        unit = (part.object, part.span)
        grows = 0 if unit in seen else part.span[1] - part.span[0]
        if not slices or size + grows > READ_BYTES:
            slices.append([])
            size, seen = 0, set()
        seen.add(unit)
        size += grows
        slices[-1].append(index)
    return slices


class RunParts:
    """The samples of a run's inputs that are parts of larger objects (WebDataset shards,
    Parquet and Arrow files), read together — a range read per object for every
    `READ_BYTES` of them, not a read per input — with their labels resolved as the job's
    data set says. Only the slice being read from is held."""

    def __init__(self, ctx: WorkerContext, job: Job, model: ModelSpec,
                 sources: dict[int, InputSource]) -> None:
        self.ctx, self.tenant, self.model = ctx, job.tenant, model
        self.sources = {i: s for i, s in sources.items() if s.part is not None}
        self.label_map = job.spec.dataset.label_map if job.spec.dataset else None
        self.slices = _slices(self.sources)
        self.slice_of = {i: n for n, indices in enumerate(self.slices) for i in indices}
        self.samples: dict[int, Sample | str] = {}

    def sample(self, index: int) -> Sample:
        """Input `index`'s sample; `InputError` saying why it cannot be had."""
        if index not in self.samples:
            indices = self.slices[self.slice_of[index]]
            read = self.ctx.locator.read_parts(self.tenant, [self.sources[i] for i in indices])
            self.samples = dict(zip(indices, read, strict=True))  # the slice before: gone
        sample = self.samples[index]
        if isinstance(sample, str):
            raise InputError(sample)
        return sample

    def label(self, sample: Sample) -> int | str | None:
        """A sample's label as a folder's is taken: a name through `label_map`, else a name
        of the model's classes or a number. A `ClassLabel` name (Hugging Face) stands for
        its own index when the model has no class names."""
        label = sample.label
        if not isinstance(label, str):
            return label
        if self.label_map and label in self.label_map:
            return self.label_map[label]
        if sample.label_index is not None and not self.model.class_names:
            return sample.label_index
        return int(label) if label.isdecimal() and label.isascii() else label


def _read(ctx: WorkerContext, tenant: str, index: int, source: InputSource,
          parts: RunParts | None) -> tuple[InputSource, bytes, bytes | None]:
    """The input's bytes, its source with what its part says (label, box, mask URI), and
    the bytes of a mask kept beside it. Read alone (not among `parts`: a reference), a part
    gives only its image."""
    if source.part is None or parts is None or index not in parts.sources:
        return source, read_source(ctx, tenant, source), None
    sample = parts.sample(index)
    source = replace(source, label=parts.label(sample), box=sample.box, mask=sample.mask_uri)
    return source, sample.image, sample.mask


def _label(model: ModelSpec, source: InputSource) -> int | None:
    if source.label is None:
        return None
    index = model.class_index(source.label)
    if index is None:
        raise InputError(f"{source.name}: label {source.label!r} is not a class of model "
                         f"{model.name!r}")
    return index


def _mask(ctx: WorkerContext, tenant: str, source: InputSource,
          size: tuple[int, int] | None, data: bytes | None) -> np.ndarray | None:
    if data is None and source.mask is None:
        return None
    if data is None:
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
               source: InputSource, parts: RunParts | None = None) -> Loaded:
    """Read, decode and preprocess one input; its own problems become `Loaded.error`.
    `parts`: what the run read of its inputs kept inside larger objects."""
    import torch

    from worker.models.build import preprocess_image

    if source.error is not None:
        return Loaded(index, source, error=source.error)
    if ctx.settings.faults:
        faults.before_input(ctx.settings, source)
    what, settings = source.name, ctx.settings
    size = model.preprocessing.input_size
    try:
        source, data, mask_data = _read(ctx, tenant, index, source, parts)
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
        mask = _mask(ctx, tenant, source, picture_size, mask_data)
    except FileNotFoundError as e:
        return Loaded(index, source, error=f"{what}: {e}")
    except (InputError, SpecError) as e:
        return Loaded(index, source, error=e.message)
    except (RuntimeError, ValueError, MemoryError) as e:
        # Preprocessing a valid picture can still fail (a resize too large to allocate): the
        # input's problem, not the worker's.
        return Loaded(index, source, error=f"{what}: cannot be preprocessed ({e})")
    return Loaded(index, source, x, picture_size, label, mask)

"""Recognizing and decoding input files with Pillow and numpy, limits checked before decoding.

The API validates uploads with these functions before storing anything; the worker decodes
the stored bytes (and inputs named by URI, which the API never saw) with the same ones.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared.errors import (
    InvalidImageError,
    TooLargeError,
    UndecodableError,
    UnsupportedMediaError,
)

# Magic numbers of the formats we accept; anything else is 415 before any parsing.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x93NUMPY", "npy"),
)


def sniff_format(data: bytes) -> str | None:
    """`png`, `jpeg`, `webp` or `npy` from the first bytes, or None."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_format(data: bytes, accepted: tuple[str, ...], what: str) -> str:
    fmt = sniff_format(data)
    if fmt is None or fmt not in accepted:
        raise UnsupportedMediaError(
            f"{what}: not an accepted format (accepted: {', '.join(accepted)})"
        )
    return fmt


def _open_image(data: bytes, max_pixels: int, what: str,
                max_aspect: float | None = None) -> Image.Image:
    """Open lazily and check the pixel count and shape from the header, before decoding."""
    try:
        with warnings.catch_warnings():
            # Our own limit is far below Pillow's bomb threshold; never let Pillow warn instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise TooLargeError(f"{what}: the image's header announces more pixels than the limit "
                            f"of {max_pixels}") from None
    except UnidentifiedImageError:
        # Pillow's message names an in-memory buffer object, which says nothing to a client.
        raise UndecodableError(f"{what}: cannot read the image header (not a valid "
                               f"{sniff_format(data) or 'image'} file)") from None
    except (OSError, ValueError) as e:
        raise UndecodableError(f"{what}: cannot read the image header ({e})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise TooLargeError(
            f"{what}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
        )
    if width < 1 or height < 1:
        raise InvalidImageError(f"{what}: the image is empty ({width}x{height})")
    if max_aspect is not None and max(width, height) > max_aspect * min(width, height):
        raise InvalidImageError(
            f"{what}: {width}x{height} is more elongated than the limit of {max_aspect:g}:1 "
            "(SALIENCY_MAX_ASPECT_RATIO); crop it first"
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any mode: 16- and 32-bit grey scaled down (not clipped), CMYK, palettes with
    alpha and the like converted by Pillow."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        grey = np.clip(np.rint(pixels / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64))
        grey = np.clip(np.rint(pixels * (255.0 if pixels.max() <= 1.0 else 1.0)), 0, 255)
        return Image.fromarray(grey.astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int, what: str = "image",
                 max_aspect: float | None = None) -> Image.Image:
    """A fully decoded RGB image, EXIF orientation applied (an animation's first frame);
    413 if too many pixels, 422 if the bytes are broken or the shape is unusable."""
    image = _open_image(data, max_pixels, what, max_aspect)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd but readable metadata
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except (OSError, ValueError, SyntaxError, TypeError, EOFError, struct.error,
            Image.DecompressionBombError, MemoryError) as e:
        raise UndecodableError(f"{what}: the image cannot be decoded ({e})") from None


FLOAT32 = (np.dtype("<f4"), np.dtype(">f4"))  # either byte order


def npy_shape(data: bytes, max_pixels: int, what: str = "array") -> tuple[int, int, int]:
    """Shape of a float32 C×H×W `.npy` (of either byte order), read from its header alone."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, SyntaxError, TypeError, EOFError) as e:
        raise UndecodableError(f"{what}: not a valid .npy file ({e})") from None
    if dtype not in FLOAT32 or len(shape) != 3 or any(s < 1 for s in shape):
        raise UndecodableError(
            f"{what}: must be a float32 C×H×W array, got {dtype} {tuple(shape)}"
        )
    if shape[1] * shape[2] > max_pixels:
        raise TooLargeError(
            f"{what}: {shape[2]}x{shape[1]} pixels exceeds the limit of {max_pixels}"
        )
    return tuple(int(s) for s in shape)


def decode_npy(data: bytes, max_pixels: int, what: str = "array") -> np.ndarray:
    """The float32 C×H×W array of a `.npy` (never unpickling objects), C-ordered in native
    byte order; an array holding NaN or infinities is refused (422), since no map of it would
    mean anything."""
    shape = npy_shape(data, max_pixels, what)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UndecodableError(f"{what}: the array cannot be read ({e})") from None
    if array.shape != shape:
        raise UndecodableError(f"{what}: truncated array")
    if not np.isfinite(array).all():
        raise UndecodableError(f"{what}: the array holds NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def validate(data: bytes, accepted: tuple[str, ...], max_pixels: int, what: str,
             max_aspect: float | None = None) -> str:
    """Check that `data` is an accepted, decodable input within limits; returns its format."""
    fmt = check_format(data, accepted, what)
    if fmt == "npy":
        decode_npy(data, max_pixels, what)
    else:
        decode_image(data, max_pixels, what, max_aspect)
    return fmt


def display_picture(data: bytes, input_size: int, resize: int, max_pixels: int,
                    what: str = "input") -> np.ndarray:
    """What the model saw, for overlays: the image resized (shorter side to `resize`) and
    centre-cropped to `input_size`, as uint8 H×W×3, with Pillow alone (the API has no torch;
    the worker's antialiased resize differs from this by a little, which does not matter for
    a picture under a heatmap)."""
    image = decode_image(data, max_pixels, what)
    width, height = image.size
    scale = resize / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size[0] - input_size) // 2, (size[1] - input_size) // 2
    return np.asarray(image.crop((left, top, left + input_size, top + input_size)))

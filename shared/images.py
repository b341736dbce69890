"""Recognizing and decoding input files with Pillow and numpy, limits checked before decoding.

The API validates uploads with these functions before storing anything; the worker decodes
the stored bytes (and inputs named by URI, which the API never saw) with the same ones.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from shared.errors import TooLargeError, UndecodableError, UnsupportedMediaError

# Magic numbers of the formats we accept; anything else is 415 before any parsing.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x93NUMPY", "npy"),
)
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "npy": "npy"}


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


def _open_image(data: bytes, max_pixels: int, what: str) -> Image.Image:
    """Open lazily and check the pixel count from the header, before any decoding."""
    try:
        with warnings.catch_warnings():
            # Our own limit is far below Pillow's bomb threshold; never let Pillow warn instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise TooLargeError(f"{what}: {e}") from None
    except (OSError, ValueError) as e:
        raise UndecodableError(f"{what}: cannot read the image header ({e})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise TooLargeError(
            f"{what}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
        )
    return image


def decode_image(data: bytes, max_pixels: int, what: str = "image") -> Image.Image:
    """A fully decoded RGB image; 413 if too many pixels, 422 if the bytes are broken."""
    image = _open_image(data, max_pixels, what)
    try:
        image.load()
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise UndecodableError(f"{what}: the image cannot be decoded ({e})") from None


def npy_shape(data: bytes, max_pixels: int, what: str = "array") -> tuple[int, int, int]:
    """Shape of a float32 C×H×W `.npy`, read from its header alone."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError) as e:
        raise UndecodableError(f"{what}: not a valid .npy file ({e})") from None
    if dtype != np.dtype("<f4") or len(shape) != 3 or fortran:
        raise UndecodableError(
            f"{what}: must be a C-ordered float32 C×H×W array, got {dtype} {tuple(shape)}"
        )
    if shape[1] * shape[2] > max_pixels:
        raise TooLargeError(
            f"{what}: {shape[2]}x{shape[1]} pixels exceeds the limit of {max_pixels}"
        )
    return tuple(int(s) for s in shape)


def decode_npy(data: bytes, max_pixels: int, what: str = "array") -> np.ndarray:
    """The float32 C×H×W array of a `.npy` (never unpickling objects)."""
    shape = npy_shape(data, max_pixels, what)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UndecodableError(f"{what}: the array cannot be read ({e})") from None
    if array.shape != shape:
        raise UndecodableError(f"{what}: truncated array")
    return array


def validate(data: bytes, accepted: tuple[str, ...], max_pixels: int, what: str) -> str:
    """Check that `data` is an accepted, decodable input within limits; returns its format."""
    fmt = check_format(data, accepted, what)
    if fmt == "npy":
        decode_npy(data, max_pixels, what)
    else:
        decode_image(data, max_pixels, what)
    return fmt

"""Input decoding: formats by magic number, limits from the header before any decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shared.errors import TooLargeError, UndecodableError, UnsupportedMediaError
from shared.media import images

ALL = ("png", "jpeg", "webp", "npy")


def _encoded(fmt: str, size=(20, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format=fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header and holds almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_images_are_recognized_and_decoded(fmt):
    data = _encoded(fmt)
    assert images.validate(data, ALL, 1000, "x") == fmt.lower()
    assert images.decode_image(data, 1000).size == (20, 10)


@pytest.mark.parametrize("side", [6_000, 100_000])  # below and above Pillow's own guard
def test_the_pixel_limit_is_checked_from_the_header_before_decoding(side):
    bomb = _png_bomb(side, side)  # a few dozen bytes
    with pytest.raises(TooLargeError):
        images.validate(bomb, ALL, 25_000_000, "bomb")


def test_unknown_and_unaccepted_formats_are_415():
    with pytest.raises(UnsupportedMediaError):
        images.validate(b"GIF89a....", ALL, 1000, "x")
    with pytest.raises(UnsupportedMediaError):
        images.validate(_encoded("WEBP"), ("png",), 1000, "x")


def test_broken_images_are_422():
    with pytest.raises(UndecodableError):
        images.validate(_encoded("PNG")[:40], ALL, 1000, "x")


def test_npy_checks():
    def npy(a):
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue()

    good = np.zeros((3, 4, 5), np.float32)
    assert images.decode_npy(npy(good), 100).shape == (3, 4, 5)
    with pytest.raises(UndecodableError, match="float32"):
        images.decode_npy(npy(good.astype(np.float64)), 100)
    with pytest.raises(UndecodableError):
        images.decode_npy(npy(np.zeros((4, 5), np.float32)), 100)
    with pytest.raises(TooLargeError):
        images.decode_npy(npy(good), 19)
    with pytest.raises(UndecodableError):
        images.decode_npy(npy(good)[:-8], 100)
    with pytest.raises(UndecodableError):
        images.decode_npy(npy(np.array([{"a": 1}], dtype=object)), 100)

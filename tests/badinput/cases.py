"""The bad inputs themselves, by family: each a file name, a way to make its bytes, and the
outcome the API documents for it (a status and code, or `None`: accepted)."""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from badinput.helpers import PNG_MAGIC, chunk, npy, pil_bytes, png, rgb_pixels, zero_png


@dataclass(frozen=True)
class Case:
    """One input: `status`/`code` is the documented refusal; `expected` (for accepted ones)
    the RGB picture or array the test decoded itself."""

    name: str
    filename: str
    make: Callable[[], bytes]
    status: int | None = None
    code: str | None = None
    expected: Callable[[], np.ndarray] | None = None

    def __str__(self) -> str:
        return self.name

    def data(self) -> bytes:
        return self.make()


PIXELS = rgb_pixels(1)  # 40×40 RGB


@functools.cache
def clean_png() -> bytes:
    return pil_bytes(Image.fromarray(PIXELS), "PNG")


@functools.cache
def clean_jpeg() -> bytes:
    return pil_bytes(Image.fromarray(PIXELS), "JPEG", quality=95)


@functools.cache
def clean_webp() -> bytes:
    return pil_bytes(Image.fromarray(PIXELS), "WEBP", lossless=True)


def jpeg_pixels(data: bytes) -> np.ndarray:
    """What a JPEG decoder makes of `data` (the reference for lossy inputs)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0xFF
    return bytes(out)


def _idat_offset(data: bytes) -> int:
    return data.index(b"IDAT") + 4


def _other(fmt: str, mode: str = "RGB") -> bytes:
    return pil_bytes(Image.new(mode, (8, 8), 128), fmt)


UNSUPPORTED = 415, "unsupported_media_type"
UNDECODABLE = 422, "undecodable_input"
TOO_LARGE = 413, "too_large"
INVALID = 422, "invalid_image"


def _refused(name, filename, make, outcome) -> Case:
    return Case(name, filename, make, *outcome)


CORRUPT: list[Case] = [
    _refused("empty file", "empty.png", lambda: b"", UNSUPPORTED),
    _refused("one byte", "one.png", lambda: b"\x89", UNSUPPORTED),
    _refused("png magic cut short", "magic.png", lambda: PNG_MAGIC[:6], UNSUPPORTED),
    *[_refused(f"random bytes {i}", f"random{i}.png",
               (lambda i=i: np.random.default_rng(i).bytes(2048)), UNSUPPORTED)
      for i in range(4)],
    _refused("plain text", "a.png", lambda: b"hello, world\n" * 10, UNSUPPORTED),
    _refused("html with script", "a.png",
             lambda: b"<html><script>alert(1)</script></html>", UNSUPPORTED),
    _refused("svg", "a.svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', UNSUPPORTED),
    _refused("gif", "a.gif", lambda: _other("GIF"), UNSUPPORTED),
    _refused("bmp", "a.bmp", lambda: _other("BMP"), UNSUPPORTED),
    _refused("tiff", "a.tif", lambda: _other("TIFF"), UNSUPPORTED),
    _refused("ico", "a.ico", lambda: _other("ICO"), UNSUPPORTED),
    _refused("pdf", "a.pdf", lambda: b"%PDF-1.7\n" + bytes(100), UNSUPPORTED),
    _refused("zip", "a.zip", lambda: b"PK\x03\x04" + bytes(100), UNSUPPORTED),
    _refused("elf executable", "a.png", lambda: b"\x7fELF\x02\x01\x01" + bytes(100),
             UNSUPPORTED),
    _refused("pickle", "a.pkl", lambda: b"\x80\x04\x95" + bytes(20) + b".", UNSUPPORTED),
    _refused("json", "a.json", lambda: b'{"model": "x"}', UNSUPPORTED),
    _refused("gif89a polyglot with javascript", "a.gif",
             lambda: b"GIF89a/*\x00\x00*/=alert(1);", UNSUPPORTED),
    _refused("psd", "a.psd", lambda: b"8BPS\x00\x01" + bytes(100), UNSUPPORTED),
    _refused("heif", "a.heic", lambda: b"\x00\x00\x00\x18ftypheic" + bytes(100), UNSUPPORTED),
    _refused("png cut after its magic", "a.png", lambda: clean_png()[:8], UNDECODABLE),
    _refused("png cut in IHDR", "a.png", lambda: clean_png()[:20], UNDECODABLE),
    _refused("png cut after IHDR", "a.png", lambda: clean_png()[:33], UNDECODABLE),
    _refused("png cut at IDAT's start", "a.png",
             lambda: clean_png()[:_idat_offset(clean_png()) + 10], UNDECODABLE),
    _refused("png cut in IDAT's middle", "a.png",
             lambda: clean_png()[:len(clean_png()) // 2], UNDECODABLE),
    _refused("png cut before IDAT's end", "a.png", lambda: clean_png()[:-40], UNDECODABLE),
    _refused("png with a broken IHDR CRC", "a.png", lambda: _flip(clean_png(), 29),
             UNDECODABLE),
    _refused("png whose IDAT is not zlib", "a.png", lambda: png(40, 40, b"garbage" * 10),
             UNDECODABLE),
    _refused("png whose IDAT is too short", "a.png",
             lambda: png(40, 40, zlib.compress(bytes(100))), UNDECODABLE),
    _refused("png of width 0", "a.png", lambda: png(0, 40, zlib.compress(b"")), UNDECODABLE),
    _refused("png of height 0", "a.png", lambda: png(40, 0, zlib.compress(b"")), UNDECODABLE),
    _refused("png of bit depth 3", "a.png",
             lambda: png(4, 4, zlib.compress(bytes(20)), bit_depth=3), UNDECODABLE),
    _refused("png of colour type 5", "a.png",
             lambda: png(4, 4, zlib.compress(bytes(20)), color_type=5), UNDECODABLE),
    _refused("png without IHDR", "a.png",
             lambda: PNG_MAGIC + chunk(b"IDAT", zlib.compress(bytes(10))) + chunk(b"IEND", b""),
             UNDECODABLE),
    _refused("png magic then html", "a.png",
             lambda: PNG_MAGIC + b"<html><script>alert(1)</script>", UNDECODABLE),
    _refused("npy magic then a png", "a.npy", lambda: b"\x93NUMPY" + clean_png(), UNDECODABLE),
    _refused("jpeg magic only", "a.jpg", lambda: b"\xff\xd8\xff", UNDECODABLE),
    _refused("jpeg start and end only", "a.jpg", lambda: b"\xff\xd8\xff\xd9", UNDECODABLE),
    _refused("jpeg cut in half", "a.jpg", lambda: clean_jpeg()[:len(clean_jpeg()) // 2],
             UNDECODABLE),
    _refused("jpeg cut at a tenth", "a.jpg", lambda: clean_jpeg()[:len(clean_jpeg()) // 10],
             UNDECODABLE),
    _refused("jpeg magic then php", "a.jpg", lambda: b"\xff\xd8\xff<?php system($_GET[0]); ?>",
             UNDECODABLE),
    _refused("webp cut in half", "a.webp", lambda: clean_webp()[:len(clean_webp()) // 2],
             UNDECODABLE),
    _refused("webp header then garbage", "a.webp",
             lambda: b"RIFF\x00\x00\x00\x00WEBPgarbage" + bytes(64), UNDECODABLE),
    _refused("webp header then a zip", "a.webp",
             lambda: b"RIFF\x10\x00\x00\x00WEBPPK\x03\x04" + bytes(64), UNDECODABLE),
]


def _text_chunk_png(kind: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    if kind == "zTXt":
        info.add_text("k", "x" * (50 << 20), zip=True)
    else:
        info.add_itxt("k", "x" * (50 << 20), zip=True)
    return pil_bytes(Image.new("RGB", (4, 4)), "PNG", pnginfo=info)


def _iccp_bomb() -> bytes:
    rows = zlib.compress(b"".join(b"\x00" + bytes(12) for _ in range(4)))
    profile = b"p\x00\x00" + zlib.compress(bytes(50 << 20), 9)
    return png(4, 4, rows, extra=(chunk(b"iCCP", profile),))


def _jpeg_sized(width: int, height: int) -> bytes:
    data = bytearray(clean_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _webp_sized(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header says `width`×`height` (14 bits each)."""
    data = bytearray(clean_webp())
    start = data.index(b"VP8L") + 8 + 1  # chunk header, then the 0x2f signature byte
    bits = int.from_bytes(data[start:start + 4], "little")
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[start:start + 4] = bits.to_bytes(4, "little")
    return bytes(data)


def npy_header(shape: tuple, descr: str = "<f4", fortran: bool = False) -> bytes:
    """A `.npy` header alone: the data it announces is not there."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"shape": shape, "fortran_order": fortran, "descr": descr})
    return buf.getvalue()


BOMBS: list[Case] = [
    _refused("png 6000x6000 of zeros", "a.png", lambda: zero_png(6000, 6000), TOO_LARGE),
    _refused("png header 20000x20000", "a.png", lambda: png(20000, 20000, b"x", color_type=0),
             TOO_LARGE),
    _refused("png 25000001x1 of zeros", "a.png", lambda: zero_png(25_000_001, 1, 1), TOO_LARGE),
    _refused("png 1x25000001 of zeros", "a.png", lambda: zero_png(1, 25_000_001, 1), TOO_LARGE),
    _refused("png header 65535x65535", "a.png", lambda: png(65535, 65535, b"x"), TOO_LARGE),
    _refused("png header 2^31-1 square", "a.png", lambda: png(2**31 - 1, 2**31 - 1, b"x"),
             TOO_LARGE),
    _refused("png header 5001x5000", "a.png", lambda: png(5001, 5000, b"x"), TOO_LARGE),
    _refused("jpeg header 65000x65000", "a.jpg", lambda: _jpeg_sized(65000, 65000), TOO_LARGE),
    _refused("jpeg header 30000x1000", "a.jpg", lambda: _jpeg_sized(30000, 1000), TOO_LARGE),
    _refused("webp header 16384x16384", "a.webp", lambda: _webp_sized(16384, 16384),
             TOO_LARGE),
    _refused("webp header 16384x2000", "a.webp", lambda: _webp_sized(16384, 2000), TOO_LARGE),
    _refused("npy header 3x100000x100000", "a.npy",
             lambda: npy_header((3, 100000, 100000)), TOO_LARGE),
    _refused("npy header 3x5001x5001", "a.npy", lambda: npy_header((3, 5001, 5001)),
             TOO_LARGE),
    _refused("png with a 50 MB zTXt chunk", "a.png", lambda: _text_chunk_png("zTXt"),
             UNDECODABLE),
    _refused("png with a 50 MB iTXt chunk", "a.png", lambda: _text_chunk_png("iTXt"),
             UNDECODABLE),
    _refused("png with a 50 MB iCCP profile", "a.png", _iccp_bomb, UNDECODABLE),
]


ASPECT: list[Case] = [
    _refused("png 25000000x1", "wide.png", lambda: zero_png(25_000_000, 1), INVALID),
    _refused("png 300000x80", "wide.png", lambda: zero_png(300_000, 80), INVALID),
    _refused("png 80x300000", "tall.png", lambda: zero_png(80, 300_000), INVALID),
    _refused("png 1x1000000", "tall.png", lambda: zero_png(1, 1_000_000, 1), INVALID),
    _refused("png 21x1", "a.png", lambda: zero_png(21, 1), INVALID),
    _refused("png 1000x49", "a.png", lambda: zero_png(1000, 49), INVALID),
    _refused("jpeg 4000x150", "a.jpg",
             lambda: pil_bytes(Image.new("RGB", (4000, 150), 90), "JPEG"), INVALID),
    _refused("webp 3000x100", "a.webp",
             lambda: pil_bytes(Image.new("RGB", (3000, 100), 90), "WEBP"), INVALID),
]


def _picture(seed: int, width: int, height: int) -> np.ndarray:
    return rgb_pixels(seed, width, height)


def _accepted(name: str, filename: str, make, expected) -> Case:
    return Case(name, filename, make, expected=expected)


ASPECT_ACCEPTED: list[Case] = [
    _accepted("png 20x1 (the limit)", "line.png",
              lambda: pil_bytes(Image.fromarray(_picture(30, 20, 1)), "PNG"),
              lambda: _picture(30, 20, 1)),
    _accepted("png 1x20 (the limit)", "column.png",
              lambda: pil_bytes(Image.fromarray(_picture(31, 1, 20)), "PNG"),
              lambda: _picture(31, 1, 20)),
]


POLYGLOTS: list[Case] = [
    _accepted("png followed by a zip", "a.png", lambda: clean_png() + b"PK\x03\x04" + bytes(64),
              lambda: PIXELS),
    _accepted("png followed by html", "a.png",
              lambda: clean_png() + b"<html><script>alert(1)</script></html>", lambda: PIXELS),
    _accepted("png with a script in a tEXt chunk", "a.png",
              lambda: pil_bytes(Image.fromarray(PIXELS), "PNG", pnginfo=_script_text()),
              lambda: PIXELS),
    _accepted("png without IEND", "a.png", lambda: clean_png()[:-12], lambda: PIXELS),
    _accepted("jpeg followed by a zip", "a.jpg", lambda: clean_jpeg() + b"PK\x03\x04" + bytes(64),
              lambda: jpeg_pixels(clean_jpeg())),
    _accepted("jpeg named .png", "a.png", clean_jpeg, lambda: jpeg_pixels(clean_jpeg())),
    _accepted("png named .exe", "setup.exe", clean_png, lambda: PIXELS),
]


def _script_text() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<?php system($_GET['c']); ?><script>alert(1)</script>")
    return info


# --- valid but unusual: accepted, and the map is that of the picture decoded here -------------

ODD = rgb_pixels(40, 48, 36)  # 48 wide, 36 high: orientation matters
GREY = ODD[..., 1]


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _cmyk_jpeg() -> bytes:
    cmyk = np.random.default_rng(41).integers(0, 256, (36, 48, 4), dtype=np.uint8)
    return pil_bytes(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95)


def _cmyk_expected() -> np.ndarray:
    """CMYK samples as the JPEG decoder gives them, turned into RGB here:
    R = (255 − C)(255 − K)/255, and so on."""
    c = np.asarray(Image.open(io.BytesIO(_cmyk_jpeg())), dtype=np.float64)
    rgb = (255 - c[..., :3]) * (255 - c[..., 3:]) / 255
    return np.rint(rgb).astype(np.uint8)


def _png16(channels: int) -> bytes:
    """A 16-bit grey or RGB PNG whose samples are the 8-bit ones × 257."""
    pixels = ((GREY if channels == 1 else ODD).astype(np.uint16) * 257).astype(">u2")
    height = pixels.shape[0]
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    return png(pixels.shape[1], height, zlib.compress(rows), bit_depth=16,
               color_type=0 if channels == 1 else 2)


def _palette_png(alpha: bool) -> bytes:
    image = Image.fromarray(ODD).quantize(16)
    options = {"transparency": bytes([0, 64, 128, 255] + [200] * 12)} if alpha else {}
    return pil_bytes(image, "PNG", **options)


def _palette_expected(alpha: bool) -> np.ndarray:
    """Each pixel's palette colour, looked up here (the alpha is not composited)."""
    image = Image.open(io.BytesIO(_palette_png(alpha)))
    palette = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
    return palette[np.asarray(image)]


SECOND_FRAME = rgb_pixels(42, 48, 36)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _jpeg_rotated() -> bytes:
    return pil_bytes(Image.fromarray(ODD), "JPEG", quality=95, exif=_exif(8))


ODD_MODES: list[Case] = [
    _accepted("cmyk jpeg", "cmyk.jpg", _cmyk_jpeg, _cmyk_expected),
    _accepted("16-bit grey png", "grey16.png", lambda: _png16(1), lambda: _grey_rgb(GREY)),
    _accepted("16-bit rgb png", "rgb16.png", lambda: _png16(3), lambda: ODD),
    _accepted("palette png with alpha", "palette-alpha.png", lambda: _palette_png(True),
              lambda: _palette_expected(True)),
    _accepted("palette png", "palette.png", lambda: _palette_png(False),
              lambda: _palette_expected(False)),
    _accepted("animated png: its first frame", "anim.png",
              lambda: pil_bytes(Image.fromarray(ODD), "PNG", save_all=True,
                                append_images=[Image.fromarray(SECOND_FRAME)]),
              lambda: ODD),
    _accepted("animated webp: its first frame", "anim.webp",
              lambda: pil_bytes(Image.fromarray(ODD), "WEBP", save_all=True, lossless=True,
                                append_images=[Image.fromarray(SECOND_FRAME)]),
              lambda: ODD),
    _accepted("png with exif orientation 6", "rotated.png",
              lambda: pil_bytes(Image.fromarray(ODD), "PNG", exif=_exif(6)),
              lambda: np.ascontiguousarray(np.rot90(ODD, k=-1))),
    _accepted("jpeg with exif orientation 8", "rotated.jpg", _jpeg_rotated,
              lambda: np.ascontiguousarray(np.rot90(jpeg_pixels(_jpeg_rotated()), k=1))),
    _accepted("grey png with alpha", "la.png",
              lambda: pil_bytes(Image.fromarray(np.stack([GREY, 255 - GREY], -1), "LA"), "PNG"),
              lambda: _grey_rgb(GREY)),
    _accepted("rgba png", "rgba.png",
              lambda: pil_bytes(Image.fromarray(np.dstack([ODD, GREY]), "RGBA"), "PNG"),
              lambda: ODD),
    _accepted("1-bit png", "bits.png",
              lambda: pil_bytes(Image.fromarray(GREY > 127), "PNG"),
              lambda: _grey_rgb(np.where(GREY > 127, 255, 0).astype(np.uint8))),
    _accepted("grey jpeg", "grey.jpg",
              lambda: pil_bytes(Image.fromarray(GREY, "L"), "JPEG", quality=95),
              lambda: jpeg_pixels(pil_bytes(Image.fromarray(GREY, "L"), "JPEG", quality=95))),
    _accepted("progressive jpeg", "progressive.jpg",
              lambda: pil_bytes(Image.fromarray(ODD), "JPEG", quality=95, progressive=True),
              lambda: jpeg_pixels(pil_bytes(Image.fromarray(ODD), "JPEG", quality=95,
                                            progressive=True))),
]


# --- .npy arrays: the model's input is float32 (3, 32, 32) -----------------------------------

ARRAY = np.random.default_rng(50).standard_normal((3, 32, 32)).astype(np.float32)


class Pickled:
    """An object whose unpickling would create the file at `path`: loading must never
    unpickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.open, (self.path, os.O_CREAT | os.O_WRONLY, 0o600))


def pickled_npy(path: str) -> bytes:
    array = np.empty((3, 32, 32), dtype=object)
    array[...] = 0
    array[0, 0, 0] = Pickled(path)
    return npy(array, allow_pickle=True)


def _with(value: float, where=(0, 0, 0)) -> np.ndarray:
    array = ARRAY.copy()
    array[where] = value
    return array


def _npy_v(version: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, ARRAY, version=version)
    return buf.getvalue()


NONFINITE = 422, "undecodable_input"

NPY_REFUSED: list[Case] = [
    *[_refused(f"shape {shape}", "a.npy", (lambda shape=shape: npy(np.zeros(shape, np.float32))),
               UNDECODABLE)
      for shape in [(32, 32), (1, 32, 32), (3, 32), (3, 16, 16), (4, 32, 32), (3, 32, 33),
                    (3, 0, 32), (0,), (), (3, 32, 32, 1), (32, 32, 3), (1, 3, 32, 32)]],
    *[_refused(f"dtype {dtype}", "a.npy",
               (lambda dtype=dtype: npy(np.zeros((3, 32, 32), dtype))), UNDECODABLE)
      for dtype in ["float64", "float16", "int8", "uint8", "int32", "int64", "complex64",
                    "bool", "U1", "S4", "datetime64[s]", "V4"]],
    _refused("structured dtype", "a.npy",
             lambda: npy(np.zeros((3, 32, 32), [("r", "<f4"), ("g", "<f4")])), UNDECODABLE),
    _refused("object array of numbers", "a.npy",
             lambda: npy(np.zeros((3, 32, 32), object), allow_pickle=True), UNDECODABLE),
    *[_refused(f"{name} in the array", "a.npy", (lambda value=value: npy(_with(value))),
               NONFINITE)
      for name, value in [("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)]],
    _refused("all nan", "a.npy", lambda: npy(np.full((3, 32, 32), np.nan, np.float32)),
             NONFINITE),
    _refused("nan in the last element", "a.npy", lambda: npy(_with(np.nan, (2, 31, 31))),
             NONFINITE),
    _refused("a signalling nan", "a.npy",
             lambda: npy(_with(np.array([0x7FA00001], np.uint32).view(np.float32)[0])),
             NONFINITE),
    _refused("header without data", "a.npy", lambda: npy_header((3, 32, 32)), UNDECODABLE),
    _refused("data cut in half", "a.npy", lambda: npy(ARRAY)[:-6000], UNDECODABLE),
    _refused("data one byte short", "a.npy", lambda: npy(ARRAY)[:-1], UNDECODABLE),
    _refused("magic only", "a.npy", lambda: b"\x93NUMPY", UNDECODABLE),
    _refused("magic and version only", "a.npy", lambda: b"\x93NUMPY\x01\x00", UNDECODABLE),
    _refused("version 9.9", "a.npy", lambda: b"\x93NUMPY\x09\x09" + npy(ARRAY)[8:],
             UNDECODABLE),
    _refused("header length beyond the file", "a.npy",
             lambda: b"\x93NUMPY\x01\x00\xff\xff{'descr'", UNDECODABLE),
    _refused("header that is code", "a.npy",
             lambda: _raw_header("{'descr': __import__('os').getcwd(), 'fortran_order': False, "
                                 "'shape': (3, 32, 32)}"), UNDECODABLE),
    _refused("header that is not a dict", "a.npy", lambda: _raw_header("[1, 2, 3]"),
             UNDECODABLE),
    _refused("header missing shape", "a.npy",
             lambda: _raw_header("{'descr': '<f4', 'fortran_order': False}"), UNDECODABLE),
    _refused("header with a negative dimension", "a.npy",
             lambda: _raw_header("{'descr': '<f4', 'fortran_order': False, "
                                 "'shape': (3, -32, 32)}"), UNDECODABLE),
    _refused("header of a version 2 header 4 GB long", "a.npy",
             lambda: b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr'", UNDECODABLE),
    _refused("fortran order of the wrong shape", "a.npy",
             lambda: npy(np.asfortranarray(np.zeros((3, 16, 16), np.float32))), UNDECODABLE),
]


def _raw_header(text: str) -> bytes:
    header = text.encode("latin1")
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + ARRAY.tobytes()


NPY_ACCEPTED: list[Case] = [
    _accepted("fortran-order npy", "fortran.npy", lambda: npy(np.asfortranarray(ARRAY)),
              lambda: ARRAY),
    _accepted("big-endian float32 npy", "big-endian.npy", lambda: npy(ARRAY.astype(">f4")),
              lambda: ARRAY),
    _accepted("npy format version 2.0", "v2.npy", lambda: _npy_v((2, 0)), lambda: ARRAY),
    _accepted("npy format version 3.0", "v3.npy", lambda: _npy_v((3, 0)), lambda: ARRAY),
    _accepted("npy with trailing bytes", "trailing.npy", lambda: npy(ARRAY) + b"PK\x03\x04",
              lambda: ARRAY),
]

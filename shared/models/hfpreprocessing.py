"""A Hugging Face image processor's settings (`preprocessor_config.json`) as the service's
preprocessing: resize the shorter side to `resize`, crop the centre `input_size`, scale to
[0, 1], normalize with `mean` and `std`.

Rescaling and normalization map exactly, whatever the processor (EfficientNet's offset and
`include_top` included). Sizes map exactly for processors that resize the shorter side and
crop the centre (DeiT, ConvNeXt below 384 px, ResNet); a processor that resizes to height ×
width (ViT, BEiT, Swin, EfficientNet) warps an image that the service crops instead, and the
two agree on square images. The resampling filter is the service's (bilinear, antialiased).
"""

from __future__ import annotations

from typing import Any

from shared.errors import UndecodableError, UnsupportedModelError
from shared.spec.model import MAX_RESIZE

PIXEL_MAX = 255.0
CONVNEXT_WARP = 384  # ConvNeXt's processor warps instead of cropping from this size on


def _side(value: Any, what: str) -> int:
    """A square size: an int, or {"height": h, "width": w} with h == w."""
    if isinstance(value, dict) and set(value) == {"height", "width"}:
        if value["height"] != value["width"]:
            raise UnsupportedModelError(
                f"bundle: preprocessor_config.json's {what} is {value['height']}×"
                f"{value['width']}; only square inputs are supported: give input_size and "
                "resize in the spec")
        value = value["height"]
    if isinstance(value, dict):
        raise UnsupportedModelError(
            f"bundle: preprocessor_config.json's {what} {str(value)[:80]} is neither a square "
            "size nor a shortest edge; give input_size and resize in the spec")
    if not isinstance(value, int) or isinstance(value, bool) or not 8 <= value <= MAX_RESIZE:
        raise UndecodableError(f"bundle: preprocessor_config.json's {what} must be a size "
                               f"from 8 to {MAX_RESIZE}")
    return value


def sizes(prep: dict[str, Any] | None, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """(input_size, resize) of a processor's settings (`prep`; None: no processor, then
    config.json's `image_size`, if it has one, is the input)."""
    if prep is None or not prep.get("do_resize", True):
        crop = prep.get("crop_size") if prep and prep.get("do_center_crop") else None
        if crop is not None:
            side = _side(crop, "crop_size")
            return side, side
        if image_size is None:
            raise UnsupportedModelError(
                "bundle: the preprocessing sets no input size and config.json has no "
                "image_size; give input_size (and resize) in the spec")
        height, width = image_size
        if height != width:
            raise UnsupportedModelError(
                f"bundle: config.json's image_size is {height}×{width}; only square inputs "
                "are supported: give input_size and resize in the spec")
        return height, height
    size = prep.get("size")
    if size is None:
        raise UnsupportedModelError("bundle: preprocessor_config.json resizes but gives no "
                                    "size; give input_size and resize in the spec")
    if isinstance(size, dict) and "shortest_edge" in size:
        edge = _side(size["shortest_edge"], "size.shortest_edge")
        crop_pct = prep.get("crop_pct")
        if crop_pct is not None:  # ConvNeXt's processor: below 384 px, resize then crop
            if not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
                raise UndecodableError("bundle: preprocessor_config.json's crop_pct must be "
                                       "in (0, 1]")
            return edge, int(edge / crop_pct) if edge < CONVNEXT_WARP else edge
        resize = edge
    else:
        resize = _side(size, "size")
    if prep.get("do_center_crop") and prep.get("crop_size") is not None:
        crop = _side(prep["crop_size"], "crop_size")
        if crop > resize:
            raise UnsupportedModelError(
                f"bundle: preprocessor_config.json crops {crop} px from an image resized to "
                f"{resize} px; give input_size and resize in the spec")
        return crop, resize
    return resize, resize


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or len(value) not in (1, 3) or
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise UndecodableError(f"bundle: preprocessor_config.json's {what} must be a number "
                               "or a list of 3")
    a, b, c = value * 3 if len(value) == 1 else value
    return float(a), float(b), float(c)


def normalization(prep: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The processor's rescale and normalization as one `(x − mean) / std` on pixels in
    [0, 1] (the service's): with x' = 255·r·x − o (rescale factor r, EfficientNet's offset
    o), then (x' − m) / s, and EfficientNet's `include_top` dividing by s once more, the
    mean is (m + o) / (255 r) and the std s · s_top / (255 r)."""
    efficientnet = str(prep.get("image_processor_type", "")).startswith("EfficientNet")
    include_top = efficientnet and bool(prep.get("include_top", True))
    rescale = prep.get("rescale_factor", 1 / PIXEL_MAX) if prep.get("do_rescale", True) else 1.0
    if not isinstance(rescale, (int, float)) or isinstance(rescale, bool) or rescale <= 0:
        raise UndecodableError("bundle: preprocessor_config.json's rescale_factor must be "
                               "positive")
    offset = 1.0 if prep.get("do_rescale", True) and prep.get("rescale_offset", False) else 0.0
    if prep.get("do_normalize", True) or include_top:
        if prep.get("image_mean") is None or prep.get("image_std") is None:
            raise UnsupportedModelError("bundle: preprocessor_config.json normalizes but "
                                        "gives no image_mean or image_std; give mean and std "
                                        "in the spec")
    if prep.get("do_normalize", True):
        mean = _triple(prep["image_mean"], "image_mean")
        std = _triple(prep["image_std"], "image_std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    top = _triple(prep["image_std"], "image_std") if include_top else (1.0, 1.0, 1.0)
    if not all(s > 0 for s in (*std, *top)):
        raise UndecodableError("bundle: preprocessor_config.json's image_std must be positive")
    scale = PIXEL_MAX * rescale
    return (tuple((m + offset) / scale for m in mean),
            tuple(s * t / scale for s, t in zip(std, top, strict=True)))

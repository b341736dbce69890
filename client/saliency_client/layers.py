"""`saliency layers MODEL`: a model's modules as a table, to find a layer's name.

One row per module, in the order a forward pass returned them: its name, class, output shape
(batch excluded), layout, whether a max-pooling precedes it, and whether a job may name it
(Grad-CAM's `layer`, a layer target, `top-activations --layer`, `visualize --layer`); the
default Grad-CAM layer is marked `*`.
"""

from __future__ import annotations

from saliency_client.types import Layer, Layers

HEADER = ("", "layer", "module", "output", "layout", "max-pool before", "usable")
_POOLED = {True: "yes", False: "no", None: "?"}


def _row(layer: Layer) -> tuple[str, ...]:
    layout = layer.layout or "-"
    if layer.layout == "tokens":
        layout = f"tokens ({layer.raw.get('prefix', 0)} prefix)"
    shape = "×".join(map(str, layer.shape)) if layer.shape else "-"
    return ("*" if layer.default else "", layer.name, layer.module, shape, layout,
            _POOLED[layer.max_pool_before], "yes" if layer.usable else "no")


def table(layers: Layers, usable_only: bool = False) -> list[str]:
    """The table's lines, then what the marks mean."""
    shown = layers.usable if usable_only else list(layers.layers)
    rows = [HEADER, *map(_row, shown)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    default = (f"* the default Grad-CAM layer ({layers.default})" if layers.default
               else f"no default Grad-CAM layer: {layers.default_problem}")
    lines += ["", default,
              "usable: a job may name it (Grad-CAM's layer, a layer target, top-activations "
              "and visualize --layer)",
              "max-pool before: top-activations projects by deconvnet after a max-pooling, "
              "else by guided_backprop (? not recorded: deconvnet)"]
    return lines

"""What does a feature map detect? The Zeiler–Fergus top-k figure over a data set.

Phase 1 (`scan_batch`, `scan`): forward passes only; for each channel of a layer, the k
items whose maximum activation is highest, as a small `TopK` that chunks compute apart and
`TopK.merge` combines in any order. Phase 2 (`project`): each top activation's projection
to the input by DeconvNet (or guided backprop, or the gradient), and the patch of the input
its unit sees (`receptive_field`). `channel_grid` lays one channel out as in the paper.
`layer_shapes` lists the layers a job may name. See docs/feature-maps.md.
"""

from worker.engine.probe import layer_shapes, model_layers
from worker.kinds.top_activations.feature_maps.grid import channel_grid, grid_png, projection_crop
from worker.kinds.top_activations.feature_maps.projections import Projection, project
from worker.kinds.top_activations.feature_maps.receptive_field import (
    ReceptiveFields,
    layer_receptive_fields,
    receptive_field,
)
from worker.kinds.top_activations.feature_maps.scan import scan, scan_batch
from worker.kinds.top_activations.feature_maps.topk import TopActivation, TopK

__all__ = [
    "Projection",
    "ReceptiveFields",
    "TopActivation",
    "TopK",
    "channel_grid",
    "grid_png",
    "layer_receptive_fields",
    "layer_shapes",
    "model_layers",
    "project",
    "projection_crop",
    "receptive_field",
    "scan",
    "scan_batch",
]

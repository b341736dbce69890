"""Audits of attribution jobs: which items a model decides from the wrong evidence, and
whether a method's maps can be trusted at all. Definitions are in docs/audits.md.

Per item and output (in the worker, on the float32 map):
    regions     `box_to_input`, `mask_to_input`, `objects_to_input` (an annotation's objects
                of one class): the object in the model's input space
    metrics     `item_metrics`: energy_in_box, pointing_hit, border_energy, concentration
    baseline    `baseline_metrics`: the centre-Gaussian map's figures for the same object
    thumbnails  `thumbnail`: the 32×32 relevance kept for clustering
Per job (in the audit phase's chunks and the finalizer):
    spray       `spray_clusters`: strategy clusters of one predicted class, on a seeded
                sample (`sample_order`) with the other maps assigned to their nearest cluster
    dependence  `input_dependence` (measured), `probe_structure` (structural)
    sanity      `sanity_check`: cascading randomisation of the model
    report      `ReportBuilder`: the report from streamed result rows
    pictures    cluster mean maps and suspect overlays as PNG bytes
"""

from worker.kinds.attribution.audit.baseline import baseline_metrics, centre_gaussian
from worker.kinds.attribution.audit.dependence import (
    InputDependence,
    input_dependence,
    probe_structure,
)
from worker.kinds.attribution.audit.metrics import METRICS, item_metrics, relevance
from worker.kinds.attribution.audit.pictures import mean_map_png, suspect_overlay_png
from worker.kinds.attribution.audit.regions import (
    Region,
    box_to_input,
    mask_to_input,
    objects_to_input,
)
from worker.kinds.attribution.audit.report import Report, ReportBuilder
from worker.kinds.attribution.audit.sanity import SanityResult, sanity_check
from worker.kinds.attribution.audit.spray import (
    MIN_CLASS_ITEMS,
    Cluster,
    Clustering,
    spray_clusters,
)
from worker.kinds.attribution.audit.thumbnails import thumbnail

__all__ = [
    "METRICS", "MIN_CLASS_ITEMS", "Cluster", "Clustering", "InputDependence", "Region",
    "Report", "ReportBuilder", "SanityResult", "baseline_metrics", "box_to_input",
    "centre_gaussian", "input_dependence", "item_metrics", "mask_to_input", "mean_map_png",
    "objects_to_input", "probe_structure", "relevance", "sanity_check", "spray_clusters",
    "suspect_overlay_png", "thumbnail",
]

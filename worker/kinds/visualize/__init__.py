"""Optimization-based visualization: class model visualization, activation maximization,
inversion and DeepDream, run on an engine's frozen eval-mode model.

`VisualizationRun` optimizes a batch of a `visualize` job's items (`shared.spec.visualize`);
the other modules are its parts: objectives, parametrizations, transforms, regularizers, and
the rendering of the results.
"""

from worker.kinds.visualize.run import ItemResult, Snapshot, StepReport, VisualizationRun

__all__ = ["ItemResult", "Snapshot", "StepReport", "VisualizationRun"]

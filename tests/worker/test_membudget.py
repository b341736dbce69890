"""The memory estimate, the micro-batching with its out-of-memory retry, the refusal of what
cannot fit, and a request far beyond memory that completes under its budget."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from shared.errors import TooLargeError
from shared.spec.methods import method_spec
from shared.spec.targets import ClassTarget
from worker.engine.core import Engine
from worker.engine.memory import SAFETY, budget_bytes, in_micro_batches, measure_footprint


def test_the_footprint_counts_what_autograd_saves_once_per_storage():
    # conv saves its input (the image) and the ReLU its output, which the linear layer
    # saves again (one storage); the frozen weights are not counted.
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(5 * 8 * 8, 2)).requires_grad_(False)
    x = torch.randn(1, 3, 8, 8)
    footprint = measure_footprint(model, x, nullcontext)
    image, relu = 3 * 8 * 8 * 4, 5 * 8 * 8 * 4
    assert footprint.saved == image + relu
    assert footprint.largest == relu and footprint.input == image
    assert footprint.per_row(grad=True) == SAFETY * (image + relu + 2 * relu + 4 * image)
    assert footprint.per_row(grad=False) == SAFETY * (4 * relu + 2 * image)


def test_an_engine_and_its_weights_are_freed_once_dropped(tiny_cnn, tiny_images):
    """The footprint's pass keeps no graph: the engine's copy of the model (and every weight
    the graph saved) is freed with the engine, as a model cache evicting it expects."""
    engine = Engine(tiny_cnn)
    engine.attribute(tiny_images, ["gradient"], ClassTarget(1))
    weight = weakref.ref(next(engine.model.parameters()))
    del engine
    gc.collect()
    assert weight() is None


def test_the_budget_is_the_setting_when_given():
    assert budget_bytes(torch.device("cpu"), 48) == 48 * 2**20
    assert 0 < budget_bytes(torch.device("cpu"), None) < 2**50


def test_an_out_of_memory_error_halves_the_rows_and_retries():
    """A pass over more than 3 rows fails; every row is still computed once, in order."""
    computed: list[tuple[int, int]] = []
    built: list[tuple[int, int]] = []

    def build(start, stop):
        built.append((start, stop))
        return torch.arange(start, stop)

    def compute(rows, start, stop):
        if stop - start > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        assert rows.tolist() == list(range(start, stop))
        computed.append((start, stop))

    size = in_micro_batches(21, 16, build, compute, torch.device("cpu"))
    assert computed == [(a, min(a + 2, 21)) for a in range(0, 21, 2)]
    assert size == 2  # 16 failed, then 8, then 4
    # Each input is built once; the failed pass's input is split, later ones are smaller.
    assert built == [(0, 16), (16, 18), (18, 20), (20, 21)]


def test_out_of_memory_at_one_row_is_raised():
    def compute(rows, start, stop):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(torch.OutOfMemoryError):
        in_micro_batches(4, 4, lambda a, b: torch.zeros(b - a), compute, torch.device("cpu"))


def test_a_request_that_cannot_fit_one_row_is_refused_before_it_runs(tiny_cnn, tiny_images):
    forwards = []
    tiny_cnn.register_forward_pre_hook(lambda module, args: forwards.append(len(args[0])))
    engine = Engine(tiny_cnn, memory_budget_mb=0.01)
    with pytest.raises(TooLargeError, match="MB for one image.*SALIENCY_MEMORY_BUDGET_MB"):
        engine.attribute(tiny_images, [method_spec("smoothgrad", samples=3)])
    assert forwards == [1]  # only the one-image probe of the estimate ran


def test_maps_do_not_depend_on_the_budget(tiny_cnn, tiny_images):
    methods = ["gradient", "guided_backprop", method_spec("integrated_gradients", steps=6),
               method_spec("occlusion", patch=8, stride=8), method_spec("smoothgrad", samples=3),
               "gradcam"]
    roomy = Engine(tiny_cnn).attribute(tiny_images, methods, ClassTarget(2))
    tight = Engine(tiny_cnn, memory_budget_mb=1.5).attribute(tiny_images, methods,
                                                             ClassTarget(2))
    for a, b in zip(roomy.images, tight.images, strict=True):
        for m, n in zip(a.maps, b.maps, strict=True):
            np.testing.assert_allclose(n.values, m.values, rtol=1e-5, atol=1e-6,
                                       err_msg=m.method)


PROBE = Path(__file__).with_name("memory_probe.py")


def test_a_request_far_beyond_memory_completes_under_its_budget():
    """SmoothGrad with 500 samples on 64 images at 32 px: 32,000 rows, about 5 GB of saved
    activations at once, under a 48 MB budget. Peak memory is measured in a fresh process
    (see memory_probe.py)."""
    budget_mb = 48
    done = subprocess.run([sys.executable, str(PROBE), str(budget_mb)], capture_output=True,
                          text=True, timeout=300, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(report)
    assert report["maps"] == 64
    assert report["all_at_once_mb"] > 50 * budget_mb  # far beyond the budget
    assert report["rows_per_pass"] < 32_000
    assert report["peak_growth_mb"] < budget_mb

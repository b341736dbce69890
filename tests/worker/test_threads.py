"""One engine shared by threads; the caller's model is never touched; nothing stays active."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from engine_testing import METHODS, hook_count
from toy_patterns import TinyCNN

from shared.errors import TargetError, UnsupportedModelError
from shared.spec.methods import method_spec
from shared.spec.targets import PREDICTED, LayerTarget, TopKTarget
from worker.engine.core import Engine


def _values(result):
    return [[m.values for m in image.maps] for image in result.images]


def _same(a, b) -> bool:
    # A rule applied by the wrong thread changes maps completely; the tolerance only allows
    # for the last bits of a kernel that splits its work differently under load.
    return all(np.allclose(x, y, rtol=1e-5, atol=1e-8) for xs, ys in zip(a, b, strict=True)
               for x, y in zip(xs, ys, strict=True))


def _modes() -> tuple[int, int]:
    return torch._C._len_torch_function_stack(), torch._C._len_torch_dispatch_stack()


def test_threads_with_different_methods_get_the_sequential_results(tiny_cnn, tiny_images):
    engine = Engine(tiny_cnn)
    jobs = {
        "guided_backprop": (("guided_backprop",), PREDICTED),
        "deconvnet": (("deconvnet",), TopKTarget(2)),
        "gradient": (("gradient",), LayerTarget("conv2", 3)),
        "guided_gradcam": (("guided_gradcam", method_spec("smoothgrad", samples=3)),
                           TopKTarget(2)),
    }
    expected = {name: _values(engine.attribute(tiny_images, methods, target))
                for name, (methods, target) in jobs.items()}
    barrier = threading.Barrier(len(jobs))
    failures: list[str] = []

    def work(name: str) -> None:
        methods, target = jobs[name]
        try:
            for _ in range(8):
                barrier.wait()
                result = engine.attribute(tiny_images, methods, target)
                if not _same(_values(result), expected[name]):
                    failures.append(f"{name}: maps differ from the sequential run")
                coverage = result.coverage[0]
                # The gradient alone runs on autograd's own rule: nothing is overridden.
                if not (coverage.complete if name != "gradient" else coverage.overridden == 0):
                    failures.append(f"{name}: {coverage}")
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(f"{name}: {exc!r}")
            barrier.abort()

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert _modes() == (0, 0)


def test_the_callers_model_is_never_mutated(tiny_images):
    torch.manual_seed(0)
    model = TinyCNN(num_classes=4).train()  # a caller who left it in training mode
    model.conv1.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}

    engine = Engine(model)
    engine.attribute(tiny_images, methods=METHODS, targets=LayerTarget("conv3", 0))
    engine.attribute(tiny_images, methods=METHODS)

    assert hook_count(model) == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert engine.model is not model and not engine.model.training


class Exploding(torch.nn.Module):
    def forward(self, x):
        torch.relu(x)
        raise RuntimeError("boom inside the forward pass")


@pytest.mark.parametrize(
    ("model", "kwargs", "error"),
    [
        (Exploding(), {}, RuntimeError),
        (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.SiLU(), torch.nn.Linear(12, 2)),
         {"methods": ("guided_backprop",)}, UnsupportedModelError),
        (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)),
         {"targets": LayerTarget("nope", 0)}, TargetError),
        (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)),
         {"targets": LayerTarget("1", 5)}, TargetError),
    ],
    ids=["error in forward", "unsupported model", "unknown layer", "channel out of range"],
)
def test_no_mode_or_capture_stays_active_after_a_failed_call(model, kwargs, error):
    x = torch.randn(2, 3, 2, 2)
    with pytest.raises(error):
        Engine(model).attribute(x, **kwargs)
    assert _modes() == (0, 0)
    # The engine still works afterwards, in this thread.
    working = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU(), torch.nn.Linear(12, 2))
    result = Engine(working).attribute(x, methods=("guided_backprop",))
    assert result.coverage[0].complete
    assert _modes() == (0, 0)

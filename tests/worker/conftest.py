"""Fixtures for the engine tests: seeded models and inputs, no downloads.

Helper modules sit beside this file (`attribution_refs`, `engine_testing`, `toy_patterns`)
and are imported by name: pytest puts this directory on `sys.path` ("prepend" import mode).
"""

from __future__ import annotations

import pytest
import torch
from engine_testing import seeded_architecture
from toy_patterns import TinyCNN, trained_toy_cnn


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's many small models on one thread, then restore the setting.

    Small convolutions gain little from a second thread, and on cores shared with other
    work a second spinning thread can make them several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def vgg11():
    """Shared by the Captum and zoo tests: building VGG's 120M parameters takes seconds."""
    return seeded_architecture("vgg11")


@pytest.fixture(scope="session")
def resnet18():
    return seeded_architecture("resnet18")


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN(num_classes=4).eval()


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="session")
def trained_cnn() -> TinyCNN:
    return trained_toy_cnn()


@pytest.fixture
def no_mode_left():
    """Asserts after the test that no torch function or dispatch mode stayed pushed."""
    yield
    assert torch._C._len_torch_function_stack() == 0
    assert torch._C._len_torch_dispatch_stack() == 0


@pytest.fixture
def runtime(redis_server, tmp_path, tiny_weights, tiny_spec):
    """The worker's task bodies on a real Redis (its own database) and local storage, called
    directly: `runtime.ctx`, the tiny model registered and validated, a data-set root at
    `runtime.root`, and `runtime.dataset_job(...)`, `runtime.run(job_id)` to submit a data-set
    job as the API does and run it to its finalizer."""
    from runtime_testing import Runtime

    rt = Runtime.start(f"{redis_server}/14", tmp_path, tiny_weights, tiny_spec)
    yield rt
    rt.ctx.redis.flushdb()

"""Fixtures of the audit tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run the audit tests' many small models on one thread, then restore the setting.

    Small convolutions gain little from a second thread, and on cores shared with other
    work a second spinning thread can make them several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

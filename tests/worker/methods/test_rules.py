"""Each backward rule against an independent numpy re-implementation, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.errors import SpecError
from shared.spec.methods import METHODS
from worker.engine.methods import REGISTRY, RULES, get_method, get_rule


def _numpy_rule(name: str, x: np.ndarray, g: np.ndarray, upper: float | None) -> np.ndarray:
    """The papers' rules, at a ReLU (upper None) or ReLU6 (upper 6) with input x."""
    linear = (x > 0) & (x < upper) if upper is not None else x > 0
    if name == "gradient":  # Simonyan et al.: the derivative (0 at the kinks, like autograd)
        return np.where(linear, g, 0)
    if name == "guided_backprop":  # Springenberg et al.: 1[x > 0] * max(g, 0)
        return np.where(linear, np.maximum(g, 0), 0)
    return np.maximum(g, 0)  # Zeiler & Fergus: max(g, 0), whatever the forward input


@pytest.mark.parametrize("upper", [None, 6.0], ids=["relu", "relu6"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_matches_numpy(name, upper):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2, 3, 5, 5)) * 5).astype(np.float32)
    x.flat[:4] = [0.0, 6.0, 7.5, -0.0]
    g = rng.normal(size=x.shape).astype(np.float32)
    g.flat[4] = 0.0
    out = np.clip(x, 0, upper)  # the rule sees the rectifier's output, as the engine saves it
    got = get_rule(name).rectify(torch.from_numpy(g), torch.from_numpy(out), upper)
    np.testing.assert_array_equal(got.numpy(), _numpy_rule(name, x, g, upper))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_keeps_the_gradient_dtype(name, dtype):
    g = torch.randn(8).to(dtype)
    out = torch.randn(8).clamp(min=0).to(dtype)
    assert get_rule(name).rectify(g, out, None).dtype == dtype


def test_registry_holds_exactly_the_public_methods():
    assert set(REGISTRY) == set(METHODS)
    assert all(REGISTRY[name].name == name for name in REGISTRY)
    assert set(RULES) == {"gradient", "guided_backprop", "deconvnet"}
    assert not RULES["gradient"].needs_every_rectifier
    assert RULES["guided_backprop"].needs_every_rectifier
    assert RULES["deconvnet"].needs_every_rectifier
    with pytest.raises(SpecError, match="unknown method 'lrp'"):
        get_rule("lrp")
    with pytest.raises(SpecError, match="unknown method 'smoothgrad'"):
        get_rule("smoothgrad")  # a method, but not a backward rule
    assert get_method("smoothgrad") is REGISTRY["smoothgrad"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_cites_its_paper(name):
    doc = type(REGISTRY[name]).__doc__
    assert any(year in doc for year in ("2014", "2015", "2017", "2020", "2021"))

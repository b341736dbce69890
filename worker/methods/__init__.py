"""The registry of attribution methods, by the public names of `shared.methods.METHODS`."""

from __future__ import annotations

from shared.errors import SpecError
from shared.methods import METHODS
from worker.methods.base import BackwardRule
from worker.methods.gradient import Gradient
from worker.methods.modified_relu import DeconvNet, GuidedBackprop

RULES: dict[str, BackwardRule] = {
    rule.name: rule for rule in (Gradient(), GuidedBackprop(), DeconvNet())
}
assert set(RULES) == set(METHODS), "every public method name needs exactly one rule"


def get_rule(name: str) -> BackwardRule:
    """The rule registered under `name`, or a SpecError listing the known ones."""
    try:
        return RULES[name]
    except KeyError:
        raise SpecError("methods", f"unknown method {name!r}; known: {sorted(RULES)}") from None


__all__ = ["RULES", "BackwardRule", "get_rule"]

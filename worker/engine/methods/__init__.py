"""The registry of attribution methods, by the public names of `shared.spec.methods.METHODS`."""

from __future__ import annotations

from shared.errors import SpecError
from shared.spec.methods import METHODS, MethodSpec, method_spec
from worker.engine.methods.attention_gradcam import AttentionGradCam
from worker.engine.methods.attention_rollout import AttentionRollout
from worker.engine.methods.base import BackwardRule, Method, Params
from worker.engine.methods.gradcam import GradCam, GuidedGradCam
from worker.engine.methods.gradient import Gradient
from worker.engine.methods.integrated_gradients import IntegratedGradients
from worker.engine.methods.modified_relu import DeconvNet, GuidedBackprop
from worker.engine.methods.occlusion import Occlusion
from worker.engine.methods.smoothgrad import SmoothGrad

REGISTRY: dict[str, Method] = {
    method.name: method
    for method in (Gradient(), GuidedBackprop(), DeconvNet(), SmoothGrad(),
                   IntegratedGradients(), GradCam(), GuidedGradCam(), Occlusion(),
                   AttentionRollout(), AttentionGradCam())
}
assert set(REGISTRY) == set(METHODS), "every public method name needs exactly one method"
#: The methods that are one backward rule at the rectifiers of the shared forward pass.
RULES: dict[str, BackwardRule] = {
    name: method for name, method in REGISTRY.items() if isinstance(method, BackwardRule)
}


def get_method(name: str) -> Method:
    """The method registered under `name`, or a SpecError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError("methods", f"unknown method {name!r}; known: {sorted(REGISTRY)}") from None


def get_rule(name: str) -> BackwardRule:
    """The backward rule registered under `name`, or a SpecError listing the known ones."""
    try:
        return RULES[name]
    except KeyError:
        raise SpecError("methods", f"unknown method {name!r}; known: {sorted(RULES)}") from None


def resolve_method(method: str | MethodSpec) -> MethodSpec:
    """A method name or spec as a spec with every parameter (defaults filled in)."""
    if isinstance(method, str):
        return method_spec(method)
    info = METHODS.get(method.name)
    if info is None:
        raise SpecError("methods", f"unknown method {method.name!r}; known: {sorted(METHODS)}")
    known = {p.name: p for p in info.params}
    unknown = sorted(set(method.params) - set(known))
    if unknown:
        raise SpecError(f"methods.{unknown[0]}", f"is not a parameter of {method.name!r}; "
                        f"its parameters are {sorted(known)}")
    return MethodSpec(method.name, {name: method.params.get(name, p.default)
                                    for name, p in known.items()}, method.as_object)


__all__ = ["REGISTRY", "RULES", "BackwardRule", "Method", "Params", "get_method", "get_rule",
           "resolve_method"]

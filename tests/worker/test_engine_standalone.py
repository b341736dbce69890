"""The engine stands alone: with every service module made unimportable it imports and runs.

A fresh interpreter gets an import hook that refuses Celery, Redis, boto3, Flask, the API and
every project module outside the engine and the torch-free contract modules it may use; it then
runs gradient, guided backprop and DeconvNet on a seeded CNN and compares each map with the
same network differentiated by hand-written rectifier rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The project modules (and everything under them) the engine may import.
ENGINE_MAY_IMPORT = (
    "worker.engine.attention",
    "worker.engine.baselines",
    "worker.engine.call",
    "worker.engine.core",
    "worker.engine.gated_units",
    "worker.engine.graph",
    "worker.engine.input_dependence",
    "worker.engine.layers",
    "worker.engine.layouts",
    "worker.engine.memory",
    "worker.engine.methods",
    "worker.engine.passes",
    "worker.engine.overrides",
    "worker.engine.targets",
    "worker.engine.tokens",
    "shared.errors",
    "shared.spec.inputs",
    "shared.jsonio",
    "shared.spec.layers",
    "shared.spec.methods",
    "shared.seeds",
    "shared.spec.targets",
)
#: Libraries of the service around the engine, never needed to compute a map.
SERVICE_LIBRARIES = ("celery", "redis", "boto3", "botocore", "flask", "api")

PROGRAM = textwrap.dedent('''
    import importlib.abc
    import json
    import sys

    allowed, libraries = json.loads(sys.argv[1])
    refused = []

    def is_refused(name):
        top = name.split(".")[0]
        if top in libraries:
            return True
        if top not in ("worker", "shared") or name == top:
            return False
        return not any(name == a or name.startswith(a + ".") or a.startswith(name + ".")
                       for a in allowed)

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if is_refused(name):
                refused.append(name)
                raise ImportError(f"{name} is not part of the engine")
            return None

    sys.meta_path.insert(0, Refuse())
    try:
        import worker.jobs.runner  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the import hook let a service module through")
    refused.clear()

    import torch
    from torch import nn

    from shared.spec.targets import ClassTarget
    from worker.engine.core import Engine

    class Rule(torch.autograd.Function):
        """ReLU whose backward is one of the three rules, written out from the papers."""

        @staticmethod
        def forward(ctx, x, name):
            out = x.clamp(min=0)
            ctx.save_for_backward(out)
            ctx.name = name
            return out

        @staticmethod
        def backward(ctx, grad):
            (out,) = ctx.saved_tensors
            if ctx.name == "gradient":
                return grad * (out > 0), None
            if ctx.name == "guided_backprop":
                return grad.clamp(min=0) * (out > 0), None
            return grad.clamp(min=0), None  # deconvnet: the sign of the signal alone

    class Net(nn.Module):
        def __init__(self, relu=None):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
            self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(8 * 8 * 8, 5)
            self.act = relu or nn.ReLU()

        def forward(self, x):
            x = self.pool(self.act(self.conv1(x)))
            x = self.pool(self.act(self.conv2(x)))
            return self.fc(x.flatten(1))

    class RuleReLU(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            return Rule.apply(x, self.name)

    torch.manual_seed(0)
    model = Net().eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = [ClassTarget(1), ClassTarget(3)]
    result = Engine(model).attribute(x, methods=("gradient", "guided_backprop", "deconvnet"),
                                     targets=targets)
    worst = {}
    for position, name in enumerate(("gradient", "guided_backprop", "deconvnet")):
        reference = Net(RuleReLU(name)).eval()
        reference.load_state_dict(model.state_dict())
        for i, target in enumerate(targets):
            xi = x[i:i + 1].clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(reference(xi)[0, target.index], xi)
            (found,) = [m for m in result.images[i].maps if m.position == position]
            assert found.method == name, (found.method, name)
            values = torch.as_tensor(found.values)
            assert values.shape == grad[0].shape, (values.shape, grad.shape)
            assert grad.abs().max() > 0, "a reference map of zeros proves nothing"
            worst[f"{name}/{i}"] = float((values - grad[0]).abs().max() / grad.abs().max())
    print(json.dumps({"worst": worst, "refused": sorted(set(refused)),
                      "loaded": sorted(m for m in sys.modules
                                       if m.split(".")[0] in ("worker", "shared"))}))
''')


def test_engine_runs_with_the_service_unimportable():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps([ENGINE_MAY_IMPORT, SERVICE_LIBRARIES])],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["refused"] == [], f"the engine tried to import {report['refused']}"
    assert set(report["worst"]) == {f"{m}/{i}" for m in ("gradient", "guided_backprop",
                                                          "deconvnet") for i in (0, 1)}
    for key, error in report["worst"].items():
        assert error < 1e-5, f"{key}: the engine's map is {error:.2g} off the hand-derived one"
    loaded = [m for m in report["loaded"] if m not in ("worker", "shared")]
    assert loaded and all(any(m == a or m.startswith(a + ".") or a.startswith(m + ".")
                              for a in ENGINE_MAY_IMPORT) for m in loaded)

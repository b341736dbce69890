"""The demo's model: a torchvision resnet18 at 64 px, trained on the confounded data set.

It is a registrable model (architecture `resnet18`, a safetensors file and its spec), so the
same weights can be audited in-process or through the service. Training runs on a fixed
number of torch threads from a fixed seed, so the same seed gives the same weights.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from demo.confounder.data import CLASSES, SIZE, Sample
from shared.spec.model import ModelSpec, parse_model_spec
from worker.models.build import build_architecture, preprocess_image

MODEL_NAME = "confounder-resnet18"
ARCHITECTURE = "resnet18"
THREADS = 1  # one thread: the same weights on any machine, and no stall on shared cores
EPOCHS = 4
BATCH = 32
LEARNING_RATE = 2e-3


def spec_json(size: int = SIZE) -> dict:
    """The registration spec of the demo model for size×size pictures."""
    return {"name": MODEL_NAME, "architecture": ARCHITECTURE, "num_classes": len(CLASSES),
            "input_size": size, "resize": size, "class_names": list(CLASSES)}


def model_spec(size: int = SIZE) -> ModelSpec:
    return parse_model_spec(spec_json(size))


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Within the block torch uses `threads` threads; the previous setting comes back after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def inputs(samples: Sequence[Sample]) -> torch.Tensor:
    """The samples as the model's preprocessed N×3×SIZE×SIZE input."""
    prep = model_spec(samples[0].image.shape[0]).preprocessing
    return torch.stack([preprocess_image(Image.fromarray(s.image), prep) for s in samples])


def train(samples: Sequence[Sample], seed: int, epochs: int = EPOCHS, *,
          architecture: str = ARCHITECTURE) -> nn.Module:
    """A resnet18 (or, with `architecture` "vit", the ViT of `demo.confounder.vit`) trained
    on `samples` from `seed` (eval mode on return)."""
    from demo.confounder import vit

    x = inputs(samples)
    y = torch.tensor([s.label for s in samples])
    with fixed_threads(THREADS), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if architecture == "vit":
            model, rate = vit.new_model(x.shape[-1]), vit.LEARNING_RATE
        else:
            model, rate = build_architecture(architecture, len(CLASSES)), LEARNING_RATE
        optimizer = torch.optim.Adam(model.parameters(), lr=rate)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), BATCH):
                idx = order[start:start + BATCH]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


def predict(model: nn.Module, samples: Sequence[Sample]) -> np.ndarray:
    """The predicted classes, from an eval-mode copy (the caller's model keeps its mode)."""
    with torch.no_grad():
        return copy.deepcopy(model).eval()(inputs(samples)).argmax(1).numpy()


def save(model: nn.Module, directory: Path, size: int = SIZE) -> tuple[Path, Path]:
    """The weights as `model.safetensors` and the spec as `model.json`, in `directory`."""
    from safetensors.torch import save_file

    weights = directory / "model.safetensors"
    spec = directory / "model.json"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    spec.write_text(json.dumps(spec_json(size), indent=2) + "\n", encoding="utf-8")
    return weights, spec

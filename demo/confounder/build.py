"""Writing the demo into a folder: the pictures and their manifests, and the trained model.

One function for `python -m demo.confounder make` and for the tests, which train the same
model at 32 px once per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from demo.confounder import data, vit
from demo.confounder import model as demo_model


@dataclass(frozen=True)
class Demo:
    """What `build` wrote (`directory/train.jsonl`, `test.jsonl`, the PNGs under `train/`
    and `test/`, the model's `model.safetensors`, or the ViT's bundle `model.zip`, and
    `model.json`), and the samples and model in memory."""

    directory: Path
    train: list[data.Sample]
    test: list[data.Sample]
    manifest: Path  # test.jsonl: uri, id, label, box
    weights: Path
    spec: Path
    model: nn.Module  # eval mode
    size: int


def build(directory: str | Path, seed: int = 0, size: int = data.SIZE,
          per_class: int = data.TRAIN_PER_CLASS, epochs: int | None = None,
          architecture: str = demo_model.ARCHITECTURE) -> Demo:
    """Generate the data set from `seed`, train the model (the resnet18, or with
    `architecture` "vit" the ViT) on one torch thread, and write both into `directory`;
    `epochs` defaults to the architecture's."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train = data.training_set(seed, size, per_class)
    test = data.test_set(seed, size)
    data.write_split(directory, "train", train)
    manifest = data.write_split(directory, "test", test)
    if architecture == "vit":
        trained = demo_model.train(train, seed, epochs or vit.EPOCHS, architecture="vit")
        weights, spec = vit.save(trained, directory, size)
    else:
        trained = demo_model.train(train, seed, epochs or demo_model.EPOCHS)
        weights, spec = demo_model.save(trained, directory, size)
    return Demo(directory, train, test, manifest, weights, spec, trained, size)

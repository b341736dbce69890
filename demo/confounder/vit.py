"""The demo's vision transformer: a small Hugging Face ViT (8 px patches, so the mark fills
the top-left patch), registrable as a `transformers` bundle, trained like the resnet18.

At 64 px it has an 8×8 grid of 64-wide tokens and a class token, four blocks of four heads:
about 0.2 M parameters, trained in seconds on one thread. The bundle (`model.zip`) holds
`config.json` and `model.safetensors` as `save_pretrained` writes them, and `model.json` is
its registration spec; preprocessing comes from the spec, as for the resnet18.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

from demo.confounder.data import CLASSES
from worker.models.hugging_face import HFClassifier

ARCHITECTURE = "transformers"
MODEL_NAME = "confounder-vit"
PATCH = 8
WIDTH = 64
BLOCKS = 4
HEADS = 4
EPOCHS = 20
LEARNING_RATE = 1e-3


def new_model(size: int) -> HFClassifier:
    """An untrained ViT for size×size pictures of the demo's classes, from torch's seed."""
    from transformers import AutoModelForImageClassification, ViTConfig

    id2label = dict(enumerate(CLASSES))
    config = ViTConfig(image_size=size, patch_size=PATCH, hidden_size=WIDTH,
                       num_hidden_layers=BLOCKS, num_attention_heads=HEADS,
                       intermediate_size=2 * WIDTH, id2label=id2label,
                       label2id={v: k for k, v in id2label.items()})
    return HFClassifier(AutoModelForImageClassification.from_config(config))


def spec_json(size: int) -> dict:
    """The registration spec of the demo's ViT for size×size pictures."""
    return {"name": MODEL_NAME, "architecture": ARCHITECTURE, "num_classes": len(CLASSES),
            "input_size": size, "resize": size, "class_names": list(CLASSES)}


def save(model: HFClassifier, directory: Path, size: int) -> tuple[Path, Path]:
    """The bundle as `model.zip` and the spec as `model.json`, in `directory`."""
    bundle = directory / "model.zip"
    spec = directory / "model.json"
    with tempfile.TemporaryDirectory() as folder:
        model.hf.save_pretrained(folder)
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as z:
            for name in ("config.json", "model.safetensors"):
                z.write(Path(folder) / name, name)
    spec.write_text(json.dumps(spec_json(size), indent=2) + "\n", encoding="utf-8")
    return bundle, spec

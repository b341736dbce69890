"""Tiny transformers classifiers of each model type a bundle may hold, seeded, saved with
`save_pretrained` and packed as the service takes them (a zip or a tar.gz of the folder).
A module of its own, so that the worker, bad-input and end-to-end suites share it."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

# Each type at 32 px with a handful of channels: built and run in well under a second.
TINY = {
    "vit": dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64),
    "deit": dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64,
                 architectures=["DeiTForImageClassificationWithTeacher"]),
    "beit": dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64, use_mean_pooling=True),
    "swin": dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                 window_size=4),
    "convnext": dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32),
    "resnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
    "efficientnet": dict(image_size=32, width_coefficient=0.1, depth_coefficient=0.1,
                         hidden_dim=128),
}
CLASSES = ("cat", "dog", "eel")


def tiny_model(model_type: str, seed: int = 0, classes: tuple[str, ...] = CLASSES, **config):
    """A seeded, untrained classifier of `model_type` in eval mode."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForImageClassification

    id2label = dict(enumerate(classes))
    settings = {**TINY[model_type], **config}
    made = CONFIG_MAPPING[model_type](id2label=id2label,
                                      label2id={v: k for k, v in id2label.items()}, **settings)
    torch.manual_seed(seed)
    return AutoModelForImageClassification.from_config(made).eval()


def save(model, folder: Path, processor=None) -> Path:
    """`save_pretrained` of the model (and of an image processor, if given) into `folder`."""
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


def zipped(folder: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    """The folder's files as a zip (under `prefix`), and `extra` members."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.iterdir()):
            z.write(path, prefix + path.name)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out.getvalue()


def tarred(folder: Path, extra: list[tarfile.TarInfo | tuple[str, bytes]] = ()) -> bytes:
    """The folder's files as a tar.gz, then `extra` members (headers, or name and bytes)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, path.name)
        for item in extra:
            if isinstance(item, tarfile.TarInfo):
                tar.addfile(item)
            else:
                info = tarfile.TarInfo(item[0])
                info.size = len(item[1])
                tar.addfile(info, io.BytesIO(item[1]))
    return out.getvalue()

"""The Hugging Face libraries kept off the network: `huggingface_hub` and `transformers`
read these switches once, when first imported (timm imports `huggingface_hub` too), so they
are set when a worker starts and again before a bundle's model is built."""

from __future__ import annotations

import os

HF_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def hf_offline() -> None:
    """Set the switches in this process's environment (they are inherited by its children)."""
    os.environ.update(HF_OFFLINE)

"""Fixtures of the page tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def named_model(api_url, tiny_weights) -> str:
    """The tiny resnet18 again, registered through the SDK with class names."""
    from saliency_client import Client

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    with Client(api_url) as client:
        return client.register_model("tiny-named", num_classes=10, weights=tiny_weights,
                                     architecture="resnet18", input_size=32, resize=32,
                                     class_names=names).name

"""Python SDK for the saliency attribution service (API v1). Needs no torch.

    from saliency_client import Client
    client = Client()  # SALIENCY_URL, else http://127.0.0.1:8000
    job = client.submit(["shared/examples/chelsea.png"], model="efficientnet_lite0",
                        methods=["gradient", "guided_backprop"])
    job.wait().download("out/")
"""

from saliency_client import webhooks
from saliency_client.aio import AsyncClient, AsyncJob
from saliency_client.client import Client, Job
from saliency_client.datasets import Annotations, Dataset, Uploaded
from saliency_client.errors import (
    ApiError,
    ConnectionFailed,
    JobFailed,
    MissingDependency,
    SaliencyError,
    WaitTimeout,
    WebhookVerificationError,
)
from saliency_client.exchange import RetryPolicy
from saliency_client.types import (
    Item,
    JobState,
    JobStatus,
    Layer,
    Layers,
    Method,
    Model,
    Output,
    Param,
    Progress,
    Roots,
)

__all__ = [
    "Annotations",
    "ApiError",
    "AsyncClient",
    "AsyncJob",
    "Client",
    "ConnectionFailed",
    "Dataset",
    "Item",
    "Job",
    "JobFailed",
    "JobState",
    "JobStatus",
    "Layer",
    "Layers",
    "Method",
    "MissingDependency",
    "Model",
    "Output",
    "Param",
    "Progress",
    "RetryPolicy",
    "Roots",
    "SaliencyError",
    "Uploaded",
    "WaitTimeout",
    "WebhookVerificationError",
    "webhooks",
]

"""The SDK (sync and async) runs a whole job, results rows included, in a process where torch
cannot be imported; numpy and pandas are not imported either."""

from __future__ import annotations

import json
import re
import subprocess
import sys

SCRIPT = r"""
import asyncio, importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("the SDK must not need torch")

sys.meta_path.insert(0, NoTorch())
from saliency_client import AsyncClient, Client

url, model, out, *images = sys.argv[1:]
with Client(url) as client:
    job = client.submit(images, model=model, methods=["gradient"], outputs=["png"])
    job.wait(timeout=60, progress=False, check=True).download(out + "/sync")
    rows = len(job.results())

async def many():
    async with AsyncClient(url) as client:
        jobs = [await client.submit(image, model=model, outputs=["npy"]) for image in images]
        await asyncio.gather(*(job.wait(timeout=60, check=True) for job in jobs))
        await jobs[0].download(out + "/async")
        indices = [[item.index async for item in job.items()] for job in jobs]
        assert len(await jobs[0].results()) == 1
        return [job.status.value for job in jobs], indices

statuses, indices = asyncio.run(many())
print(json.dumps({"statuses": statuses, "indices": indices, "rows": rows,
                  **{name: name in sys.modules for name in ("torch", "numpy", "pandas")}}))
"""


def test_sync_and_async_sdk_without_torch(api_url, tiny_model, images, tmp_path):
    paths = [str(p) for p in images(2)]
    run = subprocess.run([sys.executable, "-c", SCRIPT, api_url, tiny_model, str(tmp_path),
                          *paths], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"statuses": ["succeeded", "succeeded"], "indices": [[0], [0]], "rows": 2,
                      "torch": False, "numpy": False, "pandas": False}
    names = sorted(p.name for p in (tmp_path / "sync").iterdir())
    assert names[-3:] == ["report.json", "results.jsonl", "results.parquet"], names
    assert all(re.fullmatch(r"0000[01]_gradient_class\d+\.png", n) for n in names[:-3]), names
    assert len(names) == 5
    assert any(p.suffix == ".npy" for p in (tmp_path / "async").iterdir())

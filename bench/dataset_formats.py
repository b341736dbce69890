"""The data-set benchmark's rows by format (`bench/dataset.py --formats`): the same seeded
images as a prefix of files, as WebDataset shards (`ShardWriter`, 1,000 samples a shard) and
as a Parquet data set (`datasets`' `to_parquet`, 1,000 rows a file, the Hub's file names), in
a bucket of an S3 server that counts the requests made on it (`bench/s3counter.py`). The
service's own storage is another bucket of the same server. For each format one job
(`gradient`, `target: label`, float16 maps) runs from POST to `succeeded`; its row gives the
storage requests per item on the data set's bucket (LIST, HEAD and GET: planning, the chunks,
the report's pictures) and the end-to-end rate against the in-process engine on the same
images, timed right before and right after the job (their mean: the machine may be shared).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from devstack import (
    S3_TEST_CREDENTIALS,
    create_bucket,
    free_port,
    stack_env,
    start_api,
    start_beat,
    start_reconciler,
    start_redis,
    start_worker,
)

FORMATS = ("prefix", "webdataset", "parquet")
DATA, SERVICE = "bench-data", "bench-service"  # the buckets
PER_OBJECT = 1000  # samples a shard, rows a Parquet file
ENGINE_IMAGES = 1000  # the engine's rate is timed on this many of the images


class Counter:
    """The counting S3 server, a process of its own."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("s3counter.py")), str(self.port),
                 DATA], stdout=out, stderr=subprocess.STDOUT,
                env={**S3_TEST_CREDENTIALS, "PATH": "/usr/bin:/bin"})
        deadline = time.monotonic() + 60
        while True:
            try:
                self.counts()
                return
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the counting S3 server did not start; see {log}") from None
                time.sleep(0.2)

    def counts(self, reset: bool = False) -> dict[str, int]:
        method = requests.delete if reset else requests.get
        return method(f"{self.url}/__counts", timeout=10).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def _client(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(s3={"addressing_style": "path"}))


def _put_tree(s3, local: Path, prefix: str) -> None:
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.put_object(Bucket=DATA, Key=f"{prefix}/{path.relative_to(local).as_posix()}",
                      Body=path.read_bytes())


def write_format(fmt: str, paths: list[Path], root: Path, classes: int, s3) -> dict:
    """The images as a data set of `fmt` in the data bucket; the job's `dataset`."""
    n = len(paths)
    local = root / fmt
    if fmt == "prefix":
        _put_tree(s3, paths[0].parent.parent, f"prefix-{n}")
        return {"prefix": f"s3://{DATA}/prefix-{n}/", "labels": "folder-sorted"}
    local.mkdir(parents=True)
    if fmt == "webdataset":
        import webdataset as wds

        with wds.ShardWriter(str(local / "shard-%06d.tar"), maxcount=PER_OBJECT,
                             verbose=0) as sink:
            for i, path in enumerate(paths):
                sink.write({"__key__": f"{i:07d}", "png": path.read_bytes(), "cls": i % classes})
        _put_tree(s3, local, f"wds-{n}")
        last = (n - 1) // PER_OBJECT
        return {"webdataset": f"s3://{DATA}/wds-{n}/shard-{{000000..{last:06d}}}.tar"}
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(
        names=[f"class{c:02d}" for c in range(classes)])})
    files = (n + PER_OBJECT - 1) // PER_OBJECT
    (local / "data").mkdir()
    for f in range(files):
        part = paths[f * PER_OBJECT:(f + 1) * PER_OBJECT]
        first = f * PER_OBJECT
        datasets.Dataset.from_dict(
            {"image": [{"bytes": p.read_bytes(), "path": None} for p in part],
             "label": [(first + i) % classes for i in range(len(part))]},
            features=features).to_parquet(
            str(local / "data" / f"train-{f:05d}-of-{files:05d}.parquet"))
    _put_tree(s3, local, f"hf-{n}")
    return {"huggingface": f"s3://{DATA}/hf-{n}", "split": "train"}


def run_formats(formats: list[str], n: int, tmp: Path, weights: Path, threads: int,
                spec: dict, write_images, engine_rate, classes: int) -> list[dict]:
    """One row per format: requests per item on the data bucket, end-to-end rate, engine."""
    paths = write_images(tmp / f"images-{n}", n)
    counter = Counter(tmp / "log" / "s3counter.log")
    services = []
    rows = []
    try:
        for bucket in (DATA, SERVICE):
            create_bucket(counter.url, bucket)
        s3 = _client(counter.url)
        redis = start_redis(tmp / "formats-redis")
        services.append(redis)
        env = stack_env(redis.url, f"s3://{SERVICE}/svc", counter.url,
                        SALIENCY_BUILTIN_MODELS="0", SALIENCY_DEVICE="cpu",
                        SALIENCY_DATA_DIR=str(tmp / "formats-data"),
                        SALIENCY_TORCH_THREADS=str(threads), SALIENCY_BATCH_SIZE="16",
                        SALIENCY_DATASET_ROOTS=f"s3://{DATA}", SALIENCY_RATE_READ="100000")
        log = tmp / "log"
        api = start_api(env, log)
        services += [api, start_worker(env, log), start_reconciler(env, log),
                     start_beat(env, log)]
        http = requests.Session()
        response = http.post(f"{api.url}/v1/models", files={
            "spec": (None, json.dumps(spec)), "weights": ("w", weights.read_bytes())},
            timeout=60)
        response.raise_for_status()
        while http.get(f"{api.url}/v1/models/{spec['name']}").json()["status"] != "ready":
            time.sleep(0.2)
        for fmt in formats:
            dataset = write_format(fmt, paths, tmp / "formats", classes, s3)
            engine_before = engine_rate(paths[:min(n, ENGINE_IMAGES)], weights, threads)
            counter.counts(reset=True)
            body = {"model": spec["name"], "methods": ["gradient"], "target": "label",
                    "dataset": dataset}
            start = time.perf_counter()
            job_id = http.post(f"{api.url}/v1/jobs", json=body, timeout=60).json()["id"]
            items_read = None  # the requests once every item has run (before the report)
            while (job := http.get(f"{api.url}/v1/jobs/{job_id}").json())["status"] not in (
                    "succeeded", "failed", "cancelled"):
                progress = job["progress"]
                if items_read is None and progress["total"] and (
                        progress["done"] + progress["failed"] == progress["total"]):
                    items_read = _reads(counter.counts())
                time.sleep(0.2)
            elapsed = time.perf_counter() - start
            reads = _reads(counter.counts())
            assert job["status"] == "succeeded" and job["progress"]["done"] == n, job
            items_read = items_read or reads
            row = {"format": fmt, "items": n, "seconds": elapsed, "images_per_s": n / elapsed,
                   **{f"{op.lower()}_per_item": v / n for op, v in reads.items()},
                   "requests_per_item": sum(reads.values()) / n,
                   "item_requests_per_item": sum(items_read.values()) / n,
                   "report_requests": sum(reads.values()) - sum(items_read.values()),
                   "engine_before": engine_before,
                   "engine_after": engine_rate(paths[:min(n, ENGINE_IMAGES)], weights,
                                               threads)}
            row["engine_images_per_s"] = (row["engine_before"] + row["engine_after"]) / 2
            row["ratio"] = row["images_per_s"] / row["engine_images_per_s"]
            rows.append(row)
            print_formats(rows[-1:], header=len(rows) == 1)
    finally:
        for service in reversed(services):
            service.stop()
        counter.stop()
    return rows


def _reads(counts: dict[str, int]) -> dict[str, int]:
    return {op: counts.get(op, 0) for op in ("LIST", "HEAD", "GET")}


def print_formats(rows: list[dict], header: bool = True) -> None:
    """The rows; `items req/item` counts the requests until every item had run (planning and
    chunks), `report req` those after (the report's pictures of the suspects' inputs)."""
    if header:
        print(f"{'format':>10} {'items':>7} {'img/s':>7} {'engine':>7} {'ratio':>6} "
              f"{'LIST/item':>10} {'HEAD/item':>10} {'GET/item':>9} {'req/item':>9} "
              f"{'items req/item':>15} {'report req':>11}")
    for r in rows:
        print(f"{r['format']:>10} {r['items']:>7} {r['images_per_s']:>7.1f} "
              f"{r['engine_images_per_s']:>7.1f} {r['ratio']:>6.2f} {r['list_per_item']:>10.4f} "
              f"{r['head_per_item']:>10.4f} {r['get_per_item']:>9.4f} "
              f"{r['requests_per_item']:>9.4f} {r['item_requests_per_item']:>15.4f} "
              f"{r['report_requests']:>11}", flush=True)

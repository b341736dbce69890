"""Pieces of the API that need no server: key parsing, the metrics text, the error shape, the
readiness probe's background checks."""

from __future__ import annotations

import pytest

from api import create_app
from api.auth import load_keys
from shared.settings import Settings, SettingsError


def test_keys_from_the_environment_and_a_file(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nk3:carol:admin\n\n")
    keys = load_keys(Settings(api_keys=("k1:alice", "k2:bob:admin"), api_keys_file=str(keys_file)))
    assert sorted((p.tenant, p.admin) for p in keys.values()) == [
        ("alice", False), ("bob", True), ("carol", True)]
    assert "k1" not in keys  # only digests are kept


@pytest.mark.parametrize("entry", ["k1", "k1:", "k1:alice:root", "k1:Alice", ":alice"])
def test_malformed_key_entries_fail_at_start(entry):
    with pytest.raises(SettingsError):
        load_keys(Settings(api_keys=(entry,)))


def test_metrics_read_the_shared_counters(redis_server, tmp_path):
    import redis

    url = f"{redis_server}/9"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    client.hset("saliency:stats", mapping={"jobs:queued": 2, "items_done": 7})
    client.hset("saliency:stats:job_latency",
                mapping={"0.5": 1, "1": 2, "+Inf": 3, "sum": 4.5})
    client.rpush("saliency", "a", "b")
    client.rpush("saliency:dispatch:ready:acme", "j:0", "j:4", "j:8")
    client.zadd("saliency:dispatch:tenants", {"acme": 1})
    app = create_app(Settings(storage_url=tmp_path.as_uri(), redis_url=url))
    lines = app.test_client().get("/metrics").get_data(as_text=True).splitlines()
    client.flushdb()
    assert 'saliency_jobs{status="queued"} 2.0' in lines
    assert 'saliency_jobs{status="failed"} 0.0' in lines
    assert "saliency_items_done_total 7.0" in lines
    assert "saliency_queue_depth 5.0" in lines  # Celery's queue and the tenants' ready lists
    assert 'saliency_job_latency_seconds_bucket{le="+Inf"} 3.0' in lines
    assert "saliency_job_latency_seconds_count 3.0" in lines
    assert "saliency_job_latency_seconds_sum 4.5" in lines


def test_unknown_routes_and_methods_answer_the_error_shape(tmp_path):
    client = create_app(Settings(storage_url=tmp_path.as_uri())).test_client()
    response = client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    response = client.put("/v1/methods")
    assert response.status_code == 405 and "GET" in response.headers["Allow"]
    assert set(response.get_json()["error"]) == {"code", "message"}


def test_the_api_never_imports_torch_or_fiftyone():
    import subprocess
    import sys

    code = ("import sys, api.wsgi, api.export\n"
            "for heavy in ('torch', 'fiftyone'):\n"
            "    assert heavy not in sys.modules, heavy + ' imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={"STORAGE_URL": "file:///tmp"})


def test_the_api_reads_no_annotation_file():
    """The planner reads COCO and VOC annotations with the worker's dependencies (ijson,
    defusedxml, pycocotools), which the API's image does not install."""
    import subprocess
    import sys

    code = ("import sys, api.wsgi, api.submission\n"
            "for reader in ('ijson', 'defusedxml', 'pycocotools', 'shared.spec.coco'):\n"
            "    assert reader not in sys.modules, reader + ' imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={"STORAGE_URL": "file:///tmp"})


def test_examples_are_listed_with_credits_and_served(tmp_path):
    from shared.examples import EXAMPLES

    client = create_app(Settings(storage_url=tmp_path.as_uri())).test_client()
    listed = client.get("/v1/examples").get_json()["examples"]
    assert [e["name"] for e in listed] == ["chelsea", "coffee", "rocket"]
    chelsea = listed[0]
    assert chelsea["licence"] == "CC0 1.0" and chelsea["credit"] == "Stefan van der Walt"
    # Never from the request's Host header: from SALIENCY_PUBLIC_URL, else the bind address.
    assert chelsea["url"] == "http://127.0.0.1:8000/v1/examples/chelsea"
    for example in listed:
        response = client.get(example["url"].replace("http://127.0.0.1:8000", ""))
        assert response.status_code == 200 and response.mimetype == example["media_type"]
        assert response.data == EXAMPLES[example["name"]].read_bytes()
    missing = client.get("/v1/examples/dog")
    assert missing.status_code == 404 and "chelsea" in missing.get_json()["error"]["message"]


def test_examples_need_the_key_when_keys_are_on(tmp_path):
    client = create_app(Settings(storage_url=tmp_path.as_uri(), api_keys=("k1:alice",))
                        ).test_client()
    assert client.get("/v1/examples").status_code == 401
    ok = client.get("/v1/examples/coffee", headers={"Authorization": "Bearer k1"})
    assert ok.status_code == 200 and ok.mimetype == "image/png"


def test_a_readiness_check_that_hangs_holds_no_request():
    """One round of checks at a time, on its own thread: the request that started it stops
    waiting once it is `deadline_s` old, later ones answer at once, and a recent result
    serves without a new round."""
    import threading

    from api.health import Probe
    from shared.storage.interface import StorageError

    release, calls = threading.Event(), []

    def check() -> None:
        calls.append(1)
        if not release.wait(timeout=60):
            raise StorageError("still stalled")

    probe = Probe((("redis", lambda: None, ()), ("storage", check, (StorageError,))),
                  deadline_s=0.2, cache_s=60)
    late = "storage: no answer within 0.2 s"
    assert [probe.problem() for _ in range(20)] == [late] * 20
    assert len(calls) == 1  # the hung check is not started again
    release.set()
    while probe.problem() is not None:  # the round ends; its result is kept
        pass
    assert [probe.problem() for _ in range(20)] == [None] * 20 and len(calls) == 1


def test_while_a_round_runs_other_requests_answer_the_last_result():
    """The request that starts a round waits for it; the others meanwhile answer the last
    round's result at once, without waiting."""
    import threading

    from api.health import Probe
    from shared.storage.interface import StorageError

    entered, release = threading.Event(), threading.Event()
    outcomes = [None, "stalled"]

    def check() -> None:
        if outcomes.pop(0) == "stalled":
            entered.set()
            release.wait(timeout=60)
            raise StorageError("bucket 'b' does not exist")

    probe = Probe((("storage", check, (StorageError,)),), deadline_s=60, cache_s=0)
    assert probe.problem() is None  # the first round
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(probe.problem()))
    waiter.start()  # starts the second round and waits for it
    assert entered.wait(timeout=60)
    assert [probe.problem() for _ in range(20)] == [None] * 20  # the first round's result
    release.set()
    waiter.join(timeout=60)
    assert answers == ["storage: bucket 'b' does not exist"]


def test_methods_lists_the_attention_methods_with_their_papers(tmp_path):
    client = create_app(Settings(storage_url=tmp_path.as_uri())).test_client()
    listed = {m["name"]: m for m in client.get("/v1/methods").get_json()["methods"]}
    for name in ("attention_rollout", "attention_gradcam"):
        assert [(p["name"], p["default"]) for p in listed[name]["params"]] == [("render", "cam")]
    assert "Abnar & Zuidema 2020" in listed["attention_rollout"]["description"]
    assert "Chefer, Gur & Wolf 2021" in listed["attention_gradcam"]["description"]

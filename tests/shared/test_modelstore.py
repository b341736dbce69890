"""Model records on a real Redis: built-in models are found first, a tenant's record of a
built-in model's name is listed and deletable but never used, and a job is pinned to the
record it was accepted for."""

from __future__ import annotations

import json

import pytest
import redis

from shared.errors import InputError
from shared.spec.job import parse_job_spec
from shared.spec.layers import NCHW, NHWC, TOKENS, Layer, Layout, ModelLayers
from shared.spec.model import parse_model_spec
from shared.state.jobs import NewJob
from shared.state.jobstore import JobStore
from shared.state.modelstore import (
    BUILTIN_TENANT,
    ModelPin,
    ModelRecord,
    ModelStatus,
    ModelStore,
    models_key,
)


@pytest.fixture
def r(redis_server):
    client = redis.Redis.from_url(f"{redis_server}/8", decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


def record(name: str, num_classes: int, builtin: bool = False, second: int = 0) -> ModelRecord:
    """A record registered at `second` seconds past a fixed minute."""
    spec = parse_model_spec({"name": name, "architecture": "resnet18",
                             "num_classes": num_classes})
    return ModelRecord(spec=spec, format="safetensors", artifact=f"models/{name}", sha256="",
                       size=0, created_at=f"2026-01-01T00:00:{second:02d}.000Z",
                       builtin=builtin)


def test_a_name_is_looked_up_among_the_built_in_models_first(r):
    models = ModelStore(r)
    builtin = record("efficientnet_lite0", 1000, builtin=True)
    shadow = record("efficientnet_lite0", 10)  # registered before the names were reserved
    models.put(BUILTIN_TENANT, builtin, replace=False)
    models.put("acme", shadow, replace=False)
    models.put("acme", record("mine", 5), replace=False)

    assert models.get("acme", "efficientnet_lite0") == builtin
    assert models.owner("acme", "efficientnet_lite0") == BUILTIN_TENANT
    assert models.owner("acme", "mine") == "acme" and models.owner("other", "mine") is None
    assert [(m.name, m.builtin) for m in models.list("acme")] == [
        ("efficientnet_lite0", True), ("efficientnet_lite0", False), ("mine", False)]
    assert [m.name for m in models.list("other")] == ["efficientnet_lite0"]
    assert [m.name for m in models.list(BUILTIN_TENANT)] == ["efficientnet_lite0"]

    assert models.delete("acme", "efficientnet_lite0") == shadow  # only the tenant's own
    assert models.delete("acme", "efficientnet_lite0") is None
    assert models.get("acme", "efficientnet_lite0") == builtin


def test_a_pin_holds_through_validation_and_breaks_on_deletion_or_a_new_registration(r):
    models = ModelStore(r)
    first = record("mine", 5)
    models.put("acme", first, replace=False)
    pin = ModelPin.of("acme", first)
    assert pin == ModelPin("acme", "mine", first.created_at)
    assert models.pinned(pin) == first
    ready = first.with_status(ModelStatus.READY)  # what a worker's validation stores
    models.put("acme", ready, replace=True)
    assert models.pinned(pin) == ready

    models.delete("acme", "mine")
    with pytest.raises(InputError, match="'mine' was deleted after this job was submitted"):
        models.pinned(pin)
    models.put("acme", record("mine", 5, second=1), replace=False)
    with pytest.raises(InputError, match="'mine' was registered again after this job was "
                                         f"submitted .*registered at {first.created_at}"):
        models.pinned(pin)


def test_a_built_in_models_pin_is_its_own(r):
    builtin = record("efficientnet_lite0", 1000, builtin=True)
    ModelStore(r).put(BUILTIN_TENANT, builtin, replace=False)
    assert ModelPin.of("acme", builtin).owner == BUILTIN_TENANT
    assert ModelStore(r).pinned(ModelPin.of("acme", builtin)) == builtin


def test_a_job_keeps_its_pin_and_one_stored_without_a_pin_finds_its_model_by_name(r):
    models, jobs = ModelStore(r), JobStore(r)
    mine = record("mine", 5)
    models.put("acme", mine, replace=False)
    pin = ModelPin.of("acme", mine)
    for job_id, job_pin in (("pinned", pin), ("unpinned", None)):
        pipe = r.pipeline(transaction=True)
        jobs.create(NewJob(job_id, "acme", parse_job_spec({"model": "mine"}),
                           model_pin=job_pin), pipe)
        pipe.execute()
    pinned, unpinned = jobs.get("pinned"), jobs.get("unpinned")
    assert (pinned.model_pin, unpinned.model_pin) == (pin, None)
    assert models.for_job(pinned) == models.for_job(unpinned) == mine
    assert "model_pin" not in pinned.to_json()  # the API's job is unchanged

    models.delete("acme", "mine")
    models.put("acme", record("mine", 7, second=1), replace=False)
    with pytest.raises(InputError, match="registered again"):
        models.for_job(pinned)
    assert models.for_job(unpinned).spec.num_classes == 7
    models.delete("acme", "mine")
    with pytest.raises(InputError, match="no longer registered"):
        models.for_job(unpinned)


LAYERS = ModelLayers({
    "patch_embed.proj": Layer("Conv2d", (8, 4, 4), 1, Layout(NCHW, 8, (4, 4))),
    "blocks.0.norm1": Layer("LayerNorm", (17, 8), 1, Layout(TOKENS, 8, (4, 4), 1)),
    "stages.0.norm": Layer("LayerNorm", (4, 4, 8), 1, Layout(NHWC, 8, (4, 4))),
    "blocks.0.attn.k_norm": Layer("Identity", (2, 17, 4), 1,
                                  problem="an attention tensor or windows"),
    "act": Layer("GELU", (17, 8), 2, problem="it runs 2 times in a forward pass"),
    "spare": Layer("Linear", None, 0, problem="it does not run"),
}, (64, 64), "blocks.0.norm1")


def test_a_record_keeps_every_layer_its_layout_and_the_default_layer(r):
    models = ModelStore(r)
    ready = record("vit", 5).with_status(ModelStatus.READY, None, LAYERS)
    models.put("acme", ready, replace=False)
    stored = models.get("acme", "vit")
    assert stored == ready and stored.layers == LAYERS
    assert stored.layers.default == "blocks.0.norm1"
    assert list(stored.layers.layers) == list(LAYERS.layers)  # the order modules returned
    assert stored.layer_shapes == {"patch_embed.proj": (8, 4, 4), "blocks.0.norm1": (8, 4, 4),
                                   "stages.0.norm": (8, 4, 4)}
    raw = json.loads(r.hget(models_key("acme"), "vit"))
    assert raw["layer_shapes"] == {k: list(v) for k, v in stored.layer_shapes.items()}
    assert raw["layers"]["modules"]["blocks.0.norm1"] == {
        "module": "LayerNorm", "runs": 1, "shape": [17, 8], "layout": "tokens",
        "channels": 8, "grid": [4, 4], "prefix": 1}
    # Validating again keeps the layers unless new ones are given.
    assert ready.with_status(ModelStatus.READY).layers == LAYERS


def test_a_record_written_before_layouts_reads_as_layers_not_known(r):
    # It lists N×C×H×W layers only: checked against it, a ViT's token layers would be refused.
    raw = record("old", 5).to_json()
    del raw["layers"]
    raw["layer_shapes"] = {"patch_embed.proj": [192, 14, 14]}
    r.hset(models_key("acme"), "old", json.dumps(raw))
    old = ModelStore(r).get("acme", "old")
    assert old.layers == ModelLayers() and old.layer_shapes == {}

"""`saliency layers MODEL` and `Client.layers` against the real stack: the tiny resnet18's
modules with their output shapes (worked out by hand for 32 px), layouts, max-pooling and
default Grad-CAM layer, as a table, as JSON, and only the usable ones."""

from __future__ import annotations

import json
import time

from saliency_client import ApiError, Client, cli

# The tiny resnet18 at 32×32: (output shape, max-pooling before it, usable).
RESNET18_32 = {
    "conv1": ([64, 16, 16], False, True),  # stride 2
    "bn1": ([64, 16, 16], False, True),
    "relu": ([64, 16, 16], False, True),
    "maxpool": ([64, 8, 8], True, True),  # stride 2
    "layer1": ([64, 8, 8], True, True),
    "layer2.0.conv1": ([128, 4, 4], True, True),
    "layer3": ([256, 2, 2], True, True),
    "layer4": ([512, 1, 1], True, True),
    "layer1.0.relu": ([64, 8, 8], True, False),  # runs twice in its block: no single output
    "avgpool": ([512, 1, 1], True, True),
    "fc": ([10], True, False),
}


def ready_layers(url: str, model: str):
    """The model's layers once it is validated (409 not_ready until then)."""
    deadline = time.monotonic() + 120
    with Client(url) as client:
        while True:
            try:
                return client.layers(model)
            except ApiError as exc:  # not_ready while it is being validated
                if exc.code != "not_ready" or time.monotonic() > deadline:
                    raise
            time.sleep(0.3)


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows (up to its first blank line) by layer name: their cells, the
    default's `*` dropped."""
    lines = stdout.splitlines()
    rows = [line.split() for line in lines[1:lines.index("")]]
    return {cells[1 if cells[0] == "*" else 0]: cells[1:] if cells[0] == "*" else cells
            for cells in rows}


def test_the_sdk_lists_every_module_with_its_shape_layout_and_max_pooling(api_url,
                                                                         tiny_model):
    layers = ready_layers(api_url, tiny_model)
    assert layers.model == tiny_model
    by_name = {layer.name: layer for layer in layers.layers}
    for name, (shape, pooled, usable) in RESNET18_32.items():
        layer = by_name[name]
        assert (list(layer.shape), layer.max_pool_before, layer.usable) == (shape, pooled,
                                                                           usable), name
        assert layer.layout == ("NCHW" if usable else None), name
    assert by_name["layer1.0.relu"].problem.startswith("it runs 2 times")
    # layer4 is 1×1 at 32 px, so the default is the stage before it
    assert layers.default == "layer3" and [x.name for x in layers.layers if x.default] == [
        "layer3"]
    assert [x.name for x in layers.usable] == [x.name for x in layers.layers if x.usable]


def test_the_cli_prints_a_table_marking_the_default_and_json_as_the_api_answers(
        run, api_url, tiny_model):
    layers = ready_layers(api_url, tiny_model)
    code, stdout, err = run("layers", tiny_model)
    assert code == cli.EXIT_OK, err
    lines = stdout.splitlines()
    assert lines[0].split() == ["layer", "module", "output", "layout", "max-pool", "before",
                                "usable"]
    rows = table_rows(stdout)
    assert list(rows) == [layer.name for layer in layers.layers]
    table = lines[1:lines.index("")]
    assert [line.split()[1] for line in table if line.startswith("*")] == ["layer3"]
    assert rows["layer3"] == ["layer3", "Sequential", "256×2×2", "NCHW", "yes", "yes"]
    assert rows["conv1"] == ["conv1", "Conv2d", "64×16×16", "NCHW", "no", "yes"]
    assert rows["fc"] == ["fc", "Linear", "10", "-", "yes", "no"]
    assert "* the default Grad-CAM layer (layer3)" in lines

    code, stdout, _ = run("layers", tiny_model, "--usable")
    assert code == cli.EXIT_OK
    assert list(table_rows(stdout)) == [layer.name for layer in layers.usable]
    assert "fc" not in table_rows(stdout) and len(layers.usable) < len(layers.layers)

    code, stdout, _ = run("layers", tiny_model, "--json")
    assert code == cli.EXIT_OK
    assert json.loads(stdout) == layers.raw


def test_an_unknown_model_is_an_api_error(run):
    code, _, err = run("layers", "no-such-model")
    assert code == cli.EXIT_API
    assert err.startswith("saliency: error: not_found (HTTP 404)")

"""The `saliency` CLI against the real stack: the commands, --json, and the exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from saliency_client import cli


def test_submit_wait_download_and_inspect(run, tiny_model, images, tmp_path):
    paths = [str(p) for p in images(2)]
    code, out, err = run("submit", *paths, "--model", tiny_model, "--method", "gradient",
                         "--method", "deconvnet", "--target", "class:1", "--out",
                         str(tmp_path / "out"), "--json", "--no-progress")
    assert code == 0, err
    state = json.loads(out)
    assert state["status"] == "succeeded" and state["progress"]["done"] == 2
    job_id = state["id"]
    assert (tmp_path / "out" / "00001_deconvnet_class1_overlay.png").exists()

    code, out, _ = run("status", job_id)
    assert code == 0 and out.startswith(f"{job_id}  succeeded  2/2 done")
    code, out, _ = run("items", job_id, "--json")
    items = [json.loads(line) for line in out.splitlines()]
    assert [i["index"] for i in items] == [0, 1] and len(items[0]["outputs"]) == 2
    code, out, _ = run("download", job_id, "--out", str(tmp_path / "again"))
    assert code == 0 and (tmp_path / "again" / "results.jsonl").exists()
    code, out, _ = run("models", "--json")
    assert tiny_model in [m["name"] for m in json.loads(out)]
    code, out, _ = run("methods")
    assert code == 0 and "guided_backprop" in out


def test_submit_prints_the_id_for_scripts(run, tiny_model, images):
    code, out, _ = run("submit", str(images(1)[0]), "--model", tiny_model)
    job_id = out.strip()
    assert code == 0 and len(job_id) == 32
    code, _, err = run("wait", job_id, "--no-progress", "--timeout", "60")
    assert code == 0 and "succeeded" in err


def test_an_api_error_is_one_clear_line_and_exit_3(run, images):
    code, out, err = run("submit", str(images(1)[0]), "--model", "no-such-model")
    assert code == cli.EXIT_API and out == ""
    assert err.count("\n") == 1
    assert err.startswith("saliency: error: not_found (HTTP 404): ") and "no-such-model" in err
    code, _, err = run("status", "f" * 32)
    assert code == cli.EXIT_API and "not_found" in err


def test_waiting_on_a_cancelled_job_exits_5(run, tiny_model, images):
    _, out, _ = run("submit", *[str(images(1)[0])] * 100, "--model", tiny_model)
    job_id = out.strip()
    code, out, _ = run("cancel", job_id, "--json")
    state = json.loads(out)
    assert code == 0 and state["status"] == "running" and state["progress"]["finalizing"]
    code, _, err = run("wait", job_id, "--no-progress")
    assert code == cli.EXIT_JOB_FAILED and f"job {job_id} cancelled" in err


def test_the_console_script_is_installed(api_url):
    exe = shutil.which("saliency", path=str(Path(sys.executable).parent))
    assert exe, "pip install -e ./client installs the `saliency` script"
    run = subprocess.run([exe, "--url", api_url, "methods", "--json"], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert "gradient" in [m["name"] for m in json.loads(run.stdout)]


def test_register_a_model_with_class_names(run, tiny_weights, images, tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"class-{c}\n" for c in "abcdefghij"))
    code, out, err = run("models", "register", "--name", "tiny-cli", "--architecture", "resnet18",
                         "--num-classes", "10", "--input-size", "32", "--resize", "32",
                         "--weights", str(tiny_weights), "--class-names", str(names))
    assert code == 0, err
    assert out.strip() == "tiny-cli"
    code, out, _ = run("models", "--json")
    model = next(m for m in json.loads(out) if m["name"] == "tiny-cli")
    assert model["class_names"][0] == "class-a"
    code, out, err = run("submit", str(images(1)[0]), "--model", "tiny-cli", "--wait",
                         "--no-progress")
    assert code == 0, err
    code, out, _ = run("items", out.strip())
    assert "class-" in out  # the prediction shows the class name
    code, _, err = run("models", "register", "--name", "Bad Name", "--architecture", "resnet18",
                       "--num-classes", "10", "--weights", str(tiny_weights))
    assert code == cli.EXIT_API and "name" in err


def test_register_a_hugging_face_bundle(run, tmp_path):
    """`--bundle` takes a save_pretrained folder as a zip; classes and preprocessing come from
    it, so --num-classes may be left out (it is needed with --weights)."""
    from hf_bundles import CLASSES, save, tiny_model, zipped

    bundle = tmp_path / "vit.zip"
    bundle.write_bytes(zipped(save(tiny_model("vit"), tmp_path / "vit")))
    code, _, err = run("models", "register", "--name", "bundle-cli", "--weights", str(bundle))
    assert code == cli.EXIT_USAGE and "--num-classes is required" in err
    code, out, err = run("models", "register", "--name", "bundle-cli", "--bundle", str(bundle),
                         "--input-size", "32")
    assert code == 0, err
    code, out, _ = run("models", "--json")
    model = next(m for m in json.loads(out) if m["name"] == "bundle-cli")
    assert (model["architecture"], model["format"]) == ("transformers", "transformers")
    assert model["class_names"] == list(CLASSES) and model["input_size"] == 32

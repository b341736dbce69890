"""`saliency audit` end to end on the real stack — a folder uploaded in batches and resumed,
and a folder the service reads in place — and `saliency results` / `saliency report`."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from saliency_client import Client


def _job_id(stdout: str) -> str:
    return stdout.split()[0]


def test_audit_uploads_a_folder_in_batches_and_resumes(run, api_url, tiny_model, image_folder,
                                                       tmp_path):
    folder = image_folder(tmp_path / "shelter", {"cats": 1, "dogs": 2})
    out = tmp_path / "report"
    audit = ("audit", str(folder), "--model", tiny_model, "--labels", "folder-sorted",
             "--target", "label", "--out", str(out), "--batch-size", "2", "--no-progress")
    code, stdout, err = run(*audit)
    assert code == 0, err
    assert "uploading 3 of 3 images" in err
    job_id = _job_id(stdout)
    assert f"{job_id}  succeeded  3/3 done" in stdout and "counts.items: 3" in stdout
    page = f"{api_url}/jobs/{job_id}"
    assert f"page: {page}" in stdout and httpx.get(page).status_code == 200
    assert (out / "results.parquet").read_bytes()[:4] == b"PAR1"
    assert json.loads((out / "report.json").read_text())["kind"] == "attribution"
    with Client(api_url) as client:
        rows = client.job(job_id).results()
    assert [(r["label"], r["target"]) for r in rows] == [
        (0, '{"class":0}'), (1, '{"class":1}'), (1, '{"class":1}')]
    assert all("/uploads/shelter-" in r["uri"] for r in rows)

    code, stdout, err = run(*audit)  # again: nothing to upload, the same job followed
    assert code == 0, err
    assert "uploading 0 of 3 images (3 already uploaded)" in err
    assert f"following job {job_id}" in err and _job_id(stdout) == job_id

    # As if interrupted after the first batch, and after the submit was sent but before its
    # answer came back: one batch is left to send, and the saved key finds the same job.
    uploaded = out / ".audit-uploaded"
    uploaded.write_text(uploaded.read_text().splitlines()[0] + "\n")
    state = json.loads((out / ".audit-state.json").read_text())
    (out / ".audit-state.json").write_text(json.dumps({**state, "job": None}))
    code, stdout, err = run(*audit, "--json")
    assert code == 0, err
    assert "uploading 2 of 3 images (1 already uploaded)" in err
    answer = json.loads(stdout)
    assert answer["id"] == job_id and answer["uploaded"] == 2 and not answer["in_place"]


def test_audit_reads_a_folder_the_service_can_reach_in_place(run, api_url, tiny_model,
                                                             image_folder, tmp_path):
    with Client(api_url) as client:
        own_area = Path(urlsplit(client.roots().storage).path)
    folder = image_folder(own_area / "in-place-pets", {"a": 1, "b": 1})
    code, stdout, err = run("audit", str(folder), "--model", tiny_model, "--labels",
                            "folder-sorted", "--out", str(tmp_path / "out"), "--no-progress",
                            "--json")
    assert code == 0, err
    assert "nothing to upload" in err and "uploading" not in err
    answer = json.loads(stdout)
    assert answer["in_place"] and answer["uploaded"] == 0 and answer["status"] == "succeeded"
    job_id = answer["id"]
    code, stdout, _ = run("status", job_id, "--json")
    assert json.loads(stdout)["dataset"]["prefix"] == folder.as_uri() + "/"

    code, _, err = run("results", job_id, "--out", str(tmp_path / "rows.csv"))
    assert code == 0, err
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert lines[0].startswith('"index","id","uri","label"') and len(lines) == 3
    assert folder.as_uri() + "/a/000.png" in lines[1]
    code, stdout, _ = run("results", job_id)  # JSON lines on stdout
    assert [json.loads(line)["label"] for line in stdout.splitlines()] == [0, 1]
    code, stdout, _ = run("report", job_id)
    assert code == 0 and "kind: attribution" in stdout and "counts.items: 2" in stdout


def test_audit_reads_webdataset_shards_and_a_hugging_face_data_set_where_they_are(
        run, api_url, tiny_model, tmp_path):
    import datasets
    import webdataset as wds
    from e2e.helpers import image_bytes

    with Client(api_url) as client:
        own_area = Path(urlsplit(client.roots().storage).path)
    shards = own_area / "cli-wds"
    shards.mkdir(parents=True)
    with wds.ShardWriter(str(shards / "pets-%03d.tar"), maxcount=2, verbose=0) as sink:
        for i in range(3):
            sink.write({"__key__": f"k{i}", "png": image_bytes(40 + i), "cls": f"n{i}"})
    pattern = shards.as_uri() + "/pets-{000..001}.tar"
    audit = ("audit", pattern, "--webdataset", "--model", tiny_model, "--target", "label",
             "--label-map", "n0=7", "--label-map", "n1=8", "--label-map", "n2=9",
             "--out", str(tmp_path / "wds"), "--no-progress", "--json")
    code, stdout, err = run(*audit)
    assert code == 0, err
    answer = json.loads(stdout)
    assert answer["status"] == "succeeded" and answer["uploaded"] == 0
    with Client(api_url) as client:
        rows = client.job(answer["id"]).results()
    code, stdout, _ = run("status", answer["id"], "--json")
    assert json.loads(stdout)["dataset"] == {"webdataset": pattern, "label_map": {
        "n0": 7, "n1": 8, "n2": 9}}
    assert [(r["id"], r["label"]) for r in rows] == [("pets-000/k0", 7), ("pets-000/k1", 8),
                                                     ("pets-001/k2", 9)]
    code, stdout, err = run(*audit)  # again: the same job followed
    assert code == 0 and "following job" in err and json.loads(stdout)["id"] == answer["id"]

    features = datasets.Features({"image": datasets.Image(), "cat": datasets.Value("int64")})
    hub = own_area / "cli-hub"
    (hub / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"image": [{"bytes": image_bytes(50), "path": None}],
                                "cat": [4]}, features=features).to_parquet(
        str(hub / "data" / "test-00000-of-00001.parquet"))
    code, stdout, err = run("audit", hub.as_uri(), "--huggingface", "--split", "test",
                            "--label-column", "cat", "--model", tiny_model, "--target",
                            "label", "--out", str(tmp_path / "hub"), "--no-progress", "--json")
    assert code == 0, err
    with Client(api_url) as client:
        (row,) = client.job(json.loads(stdout)["id"]).results()
    assert (row["id"], row["label"]) == ("data/test-00000-of-00001/0", 4)


def test_audit_with_coco_annotations_read_in_place(run, api_url, tiny_model, image_folder,
                                                   tmp_path):
    """`--coco` names a file the service reads where it is, `--category-map` its classes
    (checked before anything is uploaded); a file it cannot reach stops the audit first."""
    from annotation_files import coco_json

    with Client(api_url) as client:
        own_area = Path(urlsplit(client.roots().storage).path)
    folder = image_folder(own_area / "annotated-pets", {"a": 1, "b": 1})
    coco = own_area / "annotated-pets-instances.json"
    coco.write_bytes(coco_json(
        [{"id": 1, "file_name": "a/000.png", "width": 32, "height": 32},
         {"id": 2, "file_name": "b/000.png", "width": 32, "height": 32}],
        [{"image_id": 1, "category_id": 7, "bbox": [4, 4, 12, 12]}],
        [{"id": 7, "name": "tabby"}]))
    audit = ("audit", str(folder), "--model", tiny_model, "--labels", "folder-sorted",
             "--target", "label", "--out", str(tmp_path / "out"), "--no-progress", "--json")
    code, stdout, err = run(*audit, "--coco", str(coco), "--category-map", "tabby=0")
    assert code == 0, err
    job_id = json.loads(stdout)["id"]
    code, stdout, _ = run("status", job_id, "--json")
    assert json.loads(stdout)["dataset"]["annotations"] == {
        "coco": coco.as_uri(), "key": "file_name", "objects": "boxes",
        "category_map": {"tabby": 0}}
    code, stdout, _ = run("results", job_id)
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert rows[0]["energy_in_box"] is not None and rows[1]["energy_in_box"] is None

    code, _, err = run(*audit, "--coco", str(coco), "--category-map", "tabby=ocelot")
    assert code == 2 and "--category-map names 'ocelot', not classes of model" in err
    outside = tmp_path / "instances.json"
    outside.write_bytes(coco.read_bytes())
    code, _, err = run(*audit, "--coco", str(outside))
    assert code == 2 and "the service cannot read it in place" in err

"""What the CLI tells on the real stack: an audit's findings (warnings, suspects, clusters,
the sanity and input-dependence verdicts, the report page), the folder-name check made before
anything is uploaded, the outputs' warnings after `submit`, and a failed job's error."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from saliency_client import Client, cli

from shared.state.redisio import PREFIX

AUDIT_ITEMS = {"cats": 12, "dogs": 12}  # SpRAy clusters a predicted class of 20 items or more
METHODS = ("gradient", "guided_backprop")
TERMS = ("off_object", "border", "atypical")


@dataclass(frozen=True)
class Audited:
    code: int
    stdout: str
    stderr: str
    report: dict
    job_id: str


def _cli(api_url: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--url", api_url, *argv])
    return code, out.getvalue(), err.getvalue()


def _section(stdout: str, head: str) -> list[str]:
    """The lines of the section whose first line starts with `head`: it and those indented."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")),
               len(lines))
    return lines[start:end]


def _write_images(root: Path, classes: dict[str, int], seed: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def audited(api_url, tiny_model, tmp_path_factory) -> Audited:
    """`saliency audit` of 24 images in two class folders, two methods, the sanity check on
    one item and three suspects shown."""
    root = _write_images(tmp_path_factory.mktemp("findings") / "shelter", AUDIT_ITEMS, 5)
    out = root.parent / "report"
    code, stdout, stderr = _cli(
        api_url, "audit", str(root), "--model", tiny_model, "--labels", "folder-sorted",
        "--target", "label", *(a for m in METHODS for a in ("--method", m)), "--sanity", "1",
        "--suspects", "3", "--out", str(out), "--no-progress")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    return Audited(code, stdout, stderr, report, stdout.split()[0])


def _reason_words(suspect: dict) -> str:
    if suspect["reasons"]:
        return "; ".join(suspect["reasons"])
    return "no strong reason: " + ", ".join(f"{t} {suspect['terms'][t]:.2f}" for t in TERMS)


def test_audit_prints_the_warnings_and_the_top_suspects_with_their_reasons(audited):
    # The seeded resnet18 has max-pooling: its maps depend on the input, nothing to warn of.
    assert [d["warning"] for d in audited.report["input_dependence"]] == [None, None]
    assert _section(audited.stdout, "warnings:") == ["warnings: none"]
    suspects = audited.report["suspects"]
    assert len(suspects) == sum(AUDIT_ITEMS.values())
    lines = _section(audited.stdout, "suspects:")
    assert lines[0] == (f"suspects: {len(suspects)} in the report, the 3 highest scores shown "
                        "(--suspects N for more):")
    assert len(lines) == 4
    for line, s in zip(lines[1:], suspects[:3], strict=True):
        folder, name = s["id"].rsplit("/", 2)[-2:]
        assert folder in AUDIT_ITEMS and s["method"] in METHODS
        assert line == (f"  {s['score']:.2f}  item {s['index']} ({folder}/{name})  "
                        f"{s['method']}: {_reason_words(s)}")


def test_audit_prints_the_clusters_of_each_class_with_their_size_and_atypicality(audited):
    groups = audited.report["clusters"]
    assert groups, "the seeded model predicts one class for 20 images or more"
    expected = ["clusters (decision strategies per predicted class, SpRAy):"]
    for group in groups:
        clusters = group["clusters"]
        expected.append(f"  class {group['class']}, {group['method']}: {group['size']} maps in "
                        f"{len(clusters)} cluster{'s' if len(clusters) != 1 else ''}")
        for k, c in enumerate(clusters):
            kind = f"atypical {c['atypicality']:.2f}" if c["atypicality"] > 0 else "typical"
            assert c["size"] >= 1
            expected.append(f"    cluster {k}: {c['size']} maps ({c['share']:.0%}), {kind}; ")
    lines = _section(audited.stdout, "clusters")
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start)
    assert {g["method"] for g in groups} == set(METHODS)


def test_audit_prints_the_sanity_and_input_dependence_verdicts(audited):
    sanity = audited.report["sanity"]
    assert sanity["sample"] == 1 and {m["method"] for m in sanity["methods"]} == set(METHODS)
    lines = _section(audited.stdout, "sanity check")
    assert lines[0] == (f"sanity check (the model's {len(sanity['blocks'])} blocks randomised "
                        "from the class scores down, on 1 item):")
    assert lines[1:] == [f"  {m['method']}: {m['verdict']}: {m['text']}"
                         for m in sanity["methods"]]
    lines = _section(audited.stdout, "input dependence")
    assert lines[0] == "input dependence (median cosine between the maps of different images):"
    scope = {"same_class": "the same class", "any": "any classes"}
    assert lines[1:] == [
        f"  {d['method']}: {d['median_cosine']:.3f} over {d['pairs']} pairs of "
        f"{scope[d['scope']]}: depends on the input" for d in audited.report["input_dependence"]]


def test_audit_and_report_end_with_the_report_page(audited, api_url):
    page = f"{api_url}/jobs/{audited.job_id}/report"
    assert audited.stdout.splitlines()[-1] == f"report page: {page}"
    assert httpx.get(page).status_code == 200
    code, stdout, stderr = _cli(api_url, "report", audited.job_id, "--suspects", "3")
    assert code == 0, stderr
    # The same headline and findings as the audit printed, then the page.
    findings = audited.stdout.splitlines()[1:audited.stdout.splitlines().index(
        next(line for line in audited.stdout.splitlines() if line.startswith("results: ")))]
    assert stdout.splitlines() == [*findings, f"report page: {page}"]
    code, stdout, _ = _cli(api_url, "report", audited.job_id, "--suspects", "30")
    assert len(_section(stdout, "suspects:")) == 1 + sum(AUDIT_ITEMS.values())
    assert "shown" not in _section(stdout, "suspects:")[0]


def test_an_audit_warns_when_maps_do_not_depend_on_the_input(api_url, tiny_mobilenet,
                                                             tmp_path):
    folder = _write_images(tmp_path / "pets", {"a": 2, "b": 1}, 9)
    code, stdout, stderr = _cli(api_url, "audit", str(folder), "--model", tiny_mobilenet,
                                "--method", "deconvnet", "--method", "gradient",
                                "--target", "class:0", "--out", str(tmp_path / "out"),
                                "--no-progress")
    assert code == 0, stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    deconvnet, gradient = report["input_dependence"]
    assert deconvnet["warning"] and gradient["warning"] is None
    assert _section(stdout, "warnings:") == ["warnings: 1", f"  {deconvnet['warning']}"]
    assert _section(stdout, "input dependence")[1].startswith(
        f"  deconvnet: {deconvnet['median_cosine']:.3f} over 3 pairs of any classes: barely "
        "depends on the input")
    assert _section(stdout, "sanity check") == [
        "sanity check: not asked for (--sanity N runs it on N items)"]


def _job_keys(backend) -> set[str]:
    return {k for k in backend.redis().scan_iter(f"{PREFIX}job:*") if k.count(":") == 2}


def _uploaded(backend, name: str) -> list[str]:
    return [k for k in backend.storage().list("t/") if f"/uploads/{name}-" in k]


def test_folder_names_are_checked_against_the_model_before_anything_is_uploaded(
        api_url, file_backend, tiny_model, tmp_path):
    folder = _write_images(tmp_path / "cafe", {"cat": 1, "coffee": 1}, 3)
    jobs = _job_keys(file_backend)
    out = tmp_path / "out"
    code, stdout, stderr = _cli(api_url, "audit", str(folder), "--model", tiny_model,
                                "--labels", "folder", "--target", "label", "--out", str(out))
    assert code == cli.EXIT_USAGE and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("saliency: error: folders 'cat', "
                                                         "'coffee' are not classes of model")
    assert "--labels folder-sorted" in stderr and "--label-map FOLDER=CLASS" in stderr
    assert "uploading" not in stderr and not out.exists()
    assert _uploaded(file_backend, "cafe") == [] and _job_keys(file_backend) == jobs

    # What the error says to do works: the sorted folders numbered, or each folder mapped.
    for options, labels in ((["--labels", "folder-sorted"], {"cat": 0, "coffee": 1}),
                            (["--label-map", "cat=3", "--label-map", "coffee=7"],
                             {"cat": 3, "coffee": 7})):
        code, stdout, stderr = _cli(api_url, "audit", str(folder), "--model", tiny_model,
                                    "--target", "label", *options, "--out",
                                    str(tmp_path / options[1]), "--no-progress", "--json")
        assert code == 0, stderr
        mode = "folder-sorted" if "--labels" in options else "folder"
        assert f"labels ({mode}): cat -> {labels['cat']}, coffee -> {labels['coffee']}" in stderr
        with Client(api_url) as client:
            rows = client.job(json.loads(stdout)["id"]).results()
        assert {r["uri"].rsplit("/", 2)[-2]: r["label"] for r in rows} == labels
        assert all(r["target"] == json.dumps({"class": r["label"]}, separators=(",", ":"))
                   for r in rows)
    assert len(_job_keys(file_backend)) == len(jobs) + 2


def test_submit_prints_each_outputs_warnings(run, tiny_mobilenet, images, api_url):
    code, stdout, stderr = run("submit", *map(str, images(2)), "--model", tiny_mobilenet,
                               "--method", "deconvnet", "--method", "gradient", "--wait",
                               "--no-progress")
    assert code == 0, stderr
    with Client(api_url) as client:
        items = list(client.job(stdout.strip()).items())
    warnings = {o.warnings for i in items for o in i.outputs if o.method == "deconvnet"}
    assert len(warnings) == 1 and len(next(iter(warnings))) == 1
    assert all(not o.warnings for i in items for o in i.outputs if o.method == "gradient")
    warning = next(iter(warnings))[0]
    assert [line for line in stderr.splitlines() if line.startswith("warning")] == [
        f"warning: deconvnet on items 0, 1: {warning}"]


def test_a_failed_jobs_first_error_is_printed_in_full(run, file_backend, tiny_model, api_url):
    missing = (file_backend.dataset_dir / ("a-photo-that-was-moved-away-" * 6)).with_suffix(
        ".png").as_uri()
    code, stdout, stderr = run("submit", missing, "--model", tiny_model, "--wait",
                               "--no-progress")
    assert code == cli.EXIT_JOB_FAILED and stdout == ""
    job_id = stderr.split("job ", 1)[1].split()[0]
    with Client(api_url) as client:
        (item,) = client.job(job_id).items()
    assert len(item.error) > 200 and missing in item.error
    assert stderr == (f"saliency: error: job {job_id} failed: every item failed; the first: "
                      f"{item.error}\n")

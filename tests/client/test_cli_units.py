"""The CLI without a server: argument handling and the exit codes of the failure families."""

from __future__ import annotations

import functools

import httpx
import pytest
from saliency_client import cli
from saliency_client.client import Client
from saliency_client.transport import RetryPolicy


@pytest.fixture
def fast_client(monkeypatch):
    policy = RetryPolicy(attempts=2, base=0.001, cap=0.001)
    monkeypatch.setattr(cli, "Client", functools.partial(Client, retry=policy))


def test_options_go_before_or_after_the_subcommand():
    parser = cli.build_parser()
    a = parser.parse_args(["--json", "--url", "http://x", "status", "j"])
    b = parser.parse_args(["status", "j", "--json", "--url", "http://x"])
    assert (a.json, a.url, a.id) == (b.json, b.url, b.id) == (True, "http://x", "j")
    c = parser.parse_args(["submit", "a.png", "--model", "m", "--method", "gradient",
                           "--method", "deconvnet", "--target", "layer:layer4:3"])
    assert c.method == ["gradient", "deconvnet"] and c.target == {"layer": "layer4",
                                                                  "channel": 3}
    assert c.json is False and c.url is None
    d = parser.parse_args(["audit", "data", "--model", "m", "--out", "o", "--method",
                           "smoothgrad:samples=50,noise=0.2", "--labels", "folder-sorted",
                           "--target", "label", "--seed", "7"])
    assert d.method == [{"name": "smoothgrad", "samples": 50, "noise": 0.2}]
    assert (d.labels, d.target, d.seed, d.batch_size) == ("folder-sorted", "label", 7, 32)


def test_submit_help_names_the_services_default_outputs(capsys):
    """`--output` left out sends no `outputs`, so the service's default applies: the help
    names it, and `signed`, which the service makes only when asked, is not in it."""
    from shared.spec.job import DEFAULT_OUTPUTS, OUTPUTS

    with pytest.raises(SystemExit):
        cli.main(["submit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    default = text.split("artifact kinds to make (repeatable; default ", 1)[1].split(":")[0]
    assert default == "npy, png and overlay"
    assert [kind for kind in OUTPUTS if kind in default] == list(DEFAULT_OUTPUTS)
    assert cli.build_parser().parse_args(["submit", "a.png", "--model", "m"]).output is None


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["submit", "a.png", "--model", "m", "--target", "class:x"])
    assert info.value.code == cli.EXIT_USAGE
    assert "target must be" in capsys.readouterr().err


def test_a_malformed_method_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["submit", "a.png", "--model", "m", "--method", "smoothgrad:samples"])
    assert info.value.code == cli.EXIT_USAGE
    assert "key=value" in capsys.readouterr().err


def test_parquet_results_need_a_file_and_audit_a_folder(capsys, fast_client, tmp_path):
    code = cli.main(["--url", "http://127.0.0.1:9", "results", "j", "--format", "parquet"])
    assert code == cli.EXIT_USAGE and "--out" in capsys.readouterr().err
    code = cli.main(["--url", "http://127.0.0.1:9", "audit", str(tmp_path / "none"), "--model",
                     "m", "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_USAGE and "not a folder" in capsys.readouterr().err
    code = cli.main(["--url", "http://127.0.0.1:9", "audit", str(tmp_path), "--model", "m",
                     "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_USAGE and "no images" in capsys.readouterr().err


def test_audit_options_that_cannot_label_exit_2_before_the_api_is_asked(capsys, fast_client,
                                                                        image_folder, tmp_path):
    folder = str(image_folder(tmp_path / "pets", {"cat": 1}))
    audit = ["--url", "http://127.0.0.1:9", "audit", folder, "--model", "m", "--out",
             str(tmp_path / "o")]
    code = cli.main([*audit, "--target", "label"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "--target label needs labels" in err
    code = cli.main([*audit, "--label-map", "cat"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "--label-map takes FOLDER=CLASS" in err
    assert not (tmp_path / "o").exists()


def test_audit_annotation_options_become_the_data_sets_annotations(capsys, fast_client,
                                                                   tmp_path):
    parser = cli.build_parser()
    base = ["audit", "data", "--model", "m", "--out", "o"]
    args = parser.parse_args([*base, "--coco", "s3://b/instances.json", "--category-map",
                              "18=dog", "--category-map", "kitty=3", "--masks"])
    assert cli.audit_annotations(Client("http://127.0.0.1:9"), args).to_json() == {
        "coco": "s3://b/instances.json", "objects": "masks",
        "category_map": {"18": "dog", "kitty": "3"}}
    args = parser.parse_args([*base, "--voc", "s3://b/Annotations/", "--annotation-key", "id"])
    assert cli.audit_annotations(Client("http://127.0.0.1:9"), args).to_json() == {
        "voc": "s3://b/Annotations/", "key": "id"}
    assert cli.audit_annotations(Client("http://127.0.0.1:9"),
                                 parser.parse_args(base)) is None
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--coco", "s3://b/a.json", "--voc", "s3://b/v/"])
    capsys.readouterr()
    with pytest.raises(ValueError, match="--masks goes with --coco"):
        cli.audit_annotations(Client("http://127.0.0.1:9"), parser.parse_args(
            [*base, "--voc", "s3://b/v/", "--masks"]))
    with pytest.raises(ValueError, match="go with --coco or --voc"):
        cli.audit_annotations(Client("http://127.0.0.1:9"), parser.parse_args(
            [*base, "--category-map", "18=dog"]))
    with pytest.raises(ValueError, match="--category-map takes CATEGORY=CLASS"):
        cli.audit_annotations(Client("http://127.0.0.1:9"), parser.parse_args(
            [*base, "--coco", "s3://b/a.json", "--category-map", "dog"]))
    with pytest.raises(FileNotFoundError, match="--coco .*: no such file"):
        cli.audit_annotations(Client("http://127.0.0.1:9"), parser.parse_args(
            [*base, "--coco", str(tmp_path / "none.json")]))


def test_a_missing_input_file_exits_2_with_one_line(capsys, fast_client):
    code = cli.main(["--url", "http://127.0.0.1:9", "submit", "/nonexistent.png", "--model", "m"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err.count("\n") == 1 and "/nonexistent.png" in err


def test_an_unreachable_api_exits_4(capsys, fast_client):
    code = cli.main(["--url", "http://127.0.0.1:9", "methods"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONNECTION
    assert err.startswith("saliency: error: cannot reach http://127.0.0.1:9/v1/methods")


def test_a_wait_that_times_out_exits_6(monkeypatch, capsys, fake_api):
    http = httpx.Client(transport=fake_api(status="running"))
    monkeypatch.setattr(cli, "Client", functools.partial(Client, http=http))
    assert cli.main(["wait", "j", "--timeout", "0.2", "--no-progress"]) == cli.EXIT_TIMEOUT
    assert "not finished" in capsys.readouterr().err


def test_audit_names_a_data_set_in_place_or_says_how(capsys, fast_client, tmp_path):
    from saliency_client.datasets import Dataset

    parser = cli.build_parser()
    wds = parser.parse_args(["audit", "s3://b/s-{000..099}.tar", "--webdataset",
                             "--label-field", "json_label", "--model", "m", "--out", "o"])
    assert cli._in_place(wds) == Dataset(webdataset="s3://b/s-{000..099}.tar",
                                         label_field="json_label")
    hf = parser.parse_args(["audit", "s3://b/hf/", "--huggingface", "--split", "validation",
                            "--image-column", "img", "--model", "m", "--out", "o"])
    assert cli._in_place(hf).to_json() == {"huggingface": "s3://b/hf/", "split": "validation",
                                           "image_column": "img"}
    base = ["--url", "http://127.0.0.1:9", "audit", "--model", "m", "--out", str(tmp_path / "o")]
    for extra, says in (
            (["s3://b/s-000.tar", "s3://b/s-001.tar", "--webdataset"],
             "quote a brace pattern"),
            (["s3://b/hf/", "--split", "test"], "--split needs --webdataset or --huggingface"),
            (["s3://b/hf/", "--huggingface", "--webdataset"], "give one"),
            (["s3://b/hf/", "--huggingface", "--labels", "folder"], "for a local folder"),
            (["s3://b/s.tar", "--webdataset", "--coco", "s3://b/i.json"], "for a local folder"),
            (["s3://b/hf/", "--huggingface", "--label-field", "cls"], "--label-column")):
        code = cli.main([*base, *extra])
        assert code == cli.EXIT_USAGE and says in capsys.readouterr().err, extra
    assert not (tmp_path / "o").exists()

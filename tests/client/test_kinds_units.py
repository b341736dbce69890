"""The other job kinds without a server: `--channels` and `--position` words, the fields of
top_activations and visualize jobs from the command line, the bar's counts, and where a
top_activations report's and a visualize item's files go."""

from __future__ import annotations

import pytest
from saliency_client import cli
from saliency_client import download as dl
from saliency_client.kinds import objective, parse_channels, parse_position, visualize_fields
from saliency_client.progress import counts
from saliency_client.spec import build_submit, job_spec
from saliency_client.types import Item, JobState


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0-15", list(range(16))),
        ("1,4,9", [1, 4, 9]),
        ("0-3,8", [0, 1, 2, 3, 8]),
        (" 5 - 6 , 2", [5, 6, 2]),
        ("4,2,4,3-4", [4, 2, 3]),
        ("all", "all"),
        (7, [7]),
        ([3, 1, 3], [3, 1]),
    ],
)
def test_parse_channels_ranges_lists_and_all(given, expected):
    assert parse_channels(given) == expected


@pytest.mark.parametrize("bad", ["", "a", "3-1", "1,,2", "-1", "1-", "ALL", True, [-1], [1.5],
                                 None])
def test_parse_channels_rejects(bad):
    with pytest.raises(ValueError, match="channels"):
        parse_channels(bad)


def test_parse_position_is_y_then_x():
    assert parse_position("2,5") == [2, 5] and parse_position((0, 3)) == [0, 3]
    for bad in ("2", "a,b", "1,2,3", (1, -2)):
        with pytest.raises(ValueError, match="position"):
            parse_position(bad)


def test_top_activations_arguments_become_the_spec():
    args = cli.build_parser().parse_args([
        "top-activations", "pets/", "--model", "m", "--layer", "layer4.1", "--channels",
        "0-2,9", "--k", "4", "--method", "deconvnet", "--method", "gradient", "--out", "o"])
    assert (args.data, args.layer, args.channels, args.k) == (["pets/"], "layer4.1",
                                                               [0, 1, 2, 9], 4)
    assert args.method == ["deconvnet", "gradient"]
    spec = job_spec("m", args.method, kind="top_activations", layer=args.layer,
                    channels=args.channels, k=args.k)
    assert spec == {"model": "m", "methods": ["deconvnet", "gradient"],
                    "kind": "top_activations", "layer": "layer4.1", "channels": [0, 1, 2, 9],
                    "k": 4}
    # The SDK takes the same words: submit(..., kind="top_activations", channels="0-3").
    assert job_spec("m", kind="top_activations", layer="l", channels="0-3")["channels"] == [
        0, 1, 2, 3]


def test_malformed_channels_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["top-activations", "d", "--model", "m", "--layer", "l", "--channels", "3-1",
                  "--out", "o"])
    assert info.value.code == cli.EXIT_USAGE
    assert "runs backwards" in capsys.readouterr().err


def _visualize(*argv: str) -> dict:
    args = cli.build_parser().parse_args(["visualize", "--model", "m", "--out", "o", *argv])
    return job_spec("m", seed=args.seed, **cli.visualize_fields(args))


def test_visualize_a_class_with_the_services_defaults():
    assert _visualize("--class", "281") == {"model": "m", "kind": "visualize",
                                            "objective": {"class": 281}}


def test_visualize_several_classes_is_a_list_of_objectives():
    spec = _visualize("--class", "281", "--class", "967", "--starts", "2")
    assert spec["objective"] == [{"class": 281}, {"class": 967}] and spec["starts"] == 2


def test_visualize_a_neuron_with_its_settings():
    spec = _visualize("--layer", "layer3.0", "--channel", "7", "--position", "1,2", "--steps",
                      "64", "--size", "96", "--seed", "5", "--lr", "0.1", "--parametrization",
                      "pixel")
    assert spec == {"model": "m", "seed": 5, "kind": "visualize",
                    "objective": {"layer": "layer3.0", "channel": 7, "position": [1, 2]},
                    "steps": 64, "size": 96, "lr": 0.1,
                    "regularizers": {"parametrization": "pixel"}}


def test_visualize_objectives_are_a_class_or_a_layers_channel(capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["visualize", "--model", "m", "--out", "o", "--class",
                                       "1", "--layer", "l"])
    assert info.value.code == cli.EXIT_USAGE
    for argv, message in ((["--layer", "l"], "--layer needs --channel"),
                          (["--class", "1", "--channel", "2"], "need --layer")):
        code = cli.main(["--url", "http://127.0.0.1:9", "visualize", "--model", "m", "--out",
                         "o", *argv])
        assert code == cli.EXIT_USAGE and message in capsys.readouterr().err
    with pytest.raises(ValueError, match="not both"):
        objective(class_index=1, layer="l", channel=0)
    with pytest.raises(ValueError, match="parametrization"):
        visualize_fields({"class": 1}, parametrization="wavelet")


def test_a_visualize_job_needs_no_inputs():
    spec = job_spec("m", kind="visualize", objective={"class": 1})
    assert build_submit(None, spec) == (spec, None, None)
    with pytest.raises(ValueError, match="inputs or a dataset"):
        build_submit(None, job_spec("m", kind="top_activations", layer="l", channels=[0]))


def _state(kind: str, progress: dict) -> JobState:
    return JobState.from_json({"id": "j" * 32, "status": "running", "kind": kind,
                               "progress": progress})


def test_the_bar_counts_the_scan_then_the_projections_or_the_steps():
    scan = _state("top_activations", {"total": 40, "done": 12, "failed": 1})
    assert counts(scan) == (40, 13, "img", "")
    projecting = _state("top_activations", {"total": 40, "done": 40,
                                            "projections": {"done": 9, "due": 27}})
    assert projecting.progress.projections_due == 27
    assert counts(projecting) == (27, 9, "proj", " projections")
    assert counts(_state("visualize", {"total": 1024, "done": 64})) == (1024, 64, "step", "")


def test_a_top_activations_reports_files_are_named_by_channel_and_rank():
    report = {"kind": "top_activations", "layer": "layer1", "k": 2, "channels": [
        {"channel": 3, "grid": "g3", "top": [
            {"index": 5, "projections": {"deconvnet": {"png": "p0", "npy": "n0"},
                                         "gradient": {"png": "p1", "npy": None}},
             "patch": "c0"},
            {"index": 1, "projections": {"deconvnet": {"png": "p2", "npy": "n2"}},
             "patch": "c2"}]},
        {"channel": 12, "grid": "g12", "top": []}]}
    assert dl.report_files(report) == [
        ("g3", "channel-0003.png"),
        ("p0", "channel-0003/00_deconvnet.png"), ("n0", "channel-0003/00_deconvnet.npy"),
        ("p1", "channel-0003/00_gradient.png"), ("c0", "channel-0003/00_patch.png"),
        ("p2", "channel-0003/01_deconvnet.png"), ("n2", "channel-0003/01_deconvnet.npy"),
        ("c2", "channel-0003/01_patch.png"),
        ("g12", "channel-0012.png"),
    ]
    assert dl.report_files({"kind": "attribution", "suspects": []}) == []


def test_a_visualize_items_picture_curve_and_snapshots_are_named_by_its_objective():
    item = Item.from_json({"index": 2, "status": "succeeded", "objective": {"class": 281},
                           "outputs": [{"method": "visualize", "png": "u1", "npy": "u2",
                                        "curve": "u3", "snapshots": [
                                            {"step": 64, "png": "s1"},
                                            {"step": 128, "png": "s2"}]}]})
    plan = dl.output_files(item)
    assert plan[0][1] == {"npy": "00002_visualize_class281.npy",
                          "png": "00002_visualize_class281.png",
                          "curve": "00002_visualize_class281_curve.json",
                          "snapshots": ["00002_visualize_class281_step0064.png",
                                        "00002_visualize_class281_step0128.png"]}
    assert dl.fetches(plan) == [("u2", "00002_visualize_class281.npy"),
                                ("u1", "00002_visualize_class281.png"),
                                ("u3", "00002_visualize_class281_curve.json"),
                                ("s1", "00002_visualize_class281_step0064.png"),
                                ("s2", "00002_visualize_class281_step0128.png")]
    bare = Item.from_json({"index": 0, "status": "running", "objective": {
        "layer": "mixed4a", "channel": 9}, "outputs": [
        {"method": "visualize", "png": "u", "npy": None, "curve": [1.0, 2.5],
         "snapshots": ["a", "b"]}]})
    names = dl.output_files(bare)[0][1]
    assert names == {"png": "00000_visualize_mixed4a-ch9.png",
                     "snapshots": ["00000_visualize_mixed4a-ch9_snapshot00.png",
                                   "00000_visualize_mixed4a-ch9_snapshot01.png"]}


def test_snapshot_urls_are_named_by_their_step_from_the_jobs_snapshot_every():
    """The API lists snapshots as URLs in step order: snapshot n is the picture after
    (n + 1) · snapshot_every steps, the step its file is named by."""
    job = {"kind": "visualize", "objective": {"class": 281}, "snapshot_every": 64}
    item = Item.from_json({"index": 0, "status": "succeeded", "outputs": [
        {"method": "visualize", "png": "u", "snapshots": ["s1", "s2", "s3"]}]})
    plan = dl.output_files(item, job)
    assert plan[0][1]["snapshots"] == ["00000_visualize_class281_step0064.png",
                                       "00000_visualize_class281_step0128.png",
                                       "00000_visualize_class281_step0192.png"]
    assert ("s3", "00000_visualize_class281_step0192.png") in dl.fetches(plan)


def test_visualize_items_without_their_objective_take_the_jobs():
    job = {"kind": "visualize", "objective": [{"class": 3}, {"layer": "layer1", "channel": 5}],
           "starts": 2}
    names = []
    for index in range(4):
        item = Item.from_json({"index": index, "status": "succeeded", "outputs": [
            {"method": "visualize", "png": "u", "npy": None,
             "snapshots": [f"s{index}"], "curve": "c"}]})
        names.append(dl.output_files(item, job)[0][1]["png"])
    assert names == ["00000_visualize_class3.png", "00001_visualize_class3.png",
                     "00002_visualize_layer1-ch5.png", "00003_visualize_layer1-ch5.png"]
    single = {"kind": "visualize", "objective": {"class": 9}}
    item = Item.from_json({"index": 0, "status": "running", "outputs": [
        {"method": "visualize", "png": "u"}]})
    assert dl.output_files(item, single)[0][1] == {"png": "00000_visualize_class9.png"}

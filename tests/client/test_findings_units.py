"""The CLI's reading of a report and of a folder's labels, without a server: what a suspect
without reasons, an atypical cluster or an unmeasured method print, and which folder names
the model's classes accept."""

from __future__ import annotations

import pytest
from saliency_client import findings, labels
from saliency_client.types import Model

PETS = Model("pets", "resnet18", 4, ("tabby", "beagle", "3", "coffee"))
UNNAMED = Model("tiny", "resnet18", 10, None)


def test_a_suspect_below_every_reason_shows_its_terms_and_its_file_name():
    report = {"kind": "attribution", "suspects": [
        {"index": 7, "id": None, "input": {"uri": "file:///d/pets/tabby/a%20b.png"},
         "method": "gradient", "score": 0.041, "reasons": [],
         "terms": {"off_object": 0.0, "border": 0.041, "atypical": 0.0}},
        {"index": 2, "id": "cat-2", "input": {"item": 2}, "method": "deconvnet",
         "score": 0.5, "reasons": ["a", "b"], "terms": {}},
    ]}
    assert findings.suspect_lines(report, 5) == [
        "suspects: 2 in the report:",
        "  0.04  item 7 (tabby/a b.png)  gradient: no strong reason: off_object 0.00, "
        "border 0.04, atypical 0.00",
        "  0.50  item 2 (cat-2)  deconvnet: a; b"]
    assert findings.suspect_lines(report, 1)[0] == (
        "suspects: 2 in the report, the 1 highest scores shown (--suspects N for more):")
    assert findings.suspect_lines({"suspects": []}) == ["suspects: none"]


def test_clusters_say_which_are_atypical_and_unmeasured_checks_say_so():
    report = {"kind": "attribution", "clusters": [{
        "class": 0, "class_name": "tabby", "method": "gradient", "size": 25, "clusters": [
            {"size": 20, "share": 0.8, "atypicality": 0.0,
             "metrics": {"energy_in_box": 0.5, "border_energy": 0.2, "pointing_accuracy": 0.9}},
            {"size": 5, "share": 0.2, "atypicality": 0.61,
             "metrics": {"energy_in_box": None, "border_energy": 0.7,
                         "pointing_accuracy": None}}]}],
        "input_dependence": [{"method": "gradient", "median_cosine": None, "pairs": 0,
                              "scope": "any", "warning": None}]}
    assert findings.lines(report) == [
        "warnings: none", "suspects: none",
        "clusters (decision strategies per predicted class, SpRAy):",
        "  tabby (0), gradient: 25 maps in 2 clusters",
        "    cluster 0: 20 maps (80%), typical; in box 0.50, border 0.20, pointing 90%",
        "    cluster 1: 5 maps (20%), atypical 0.61; in box -, border 0.70, pointing -",
        "sanity check: not asked for (--sanity N runs it on N items)",
        "input dependence (median cosine between the maps of different images):",
        "  gradient: not measured (fewer than two maps that are not all zero)"]
    assert findings.lines({"kind": "visualize"}) == []


def test_folder_names_are_class_names_or_indices_as_the_service_reads_them():
    names = ["tabby/1.png", "beagle/x/2.png", "3/3.png", "top.png"]
    # A nested image takes its parent folder's name; a decimal name is an index first.
    with pytest.raises(ValueError, match=r"folders 'x' are not classes of model 'pets'"):
        labels.folder_classes(names, "folder", None, PETS)
    names[1] = "beagle/2.png"
    assert labels.folder_classes(names, "folder", None, PETS) == {
        "3": 3, "beagle": 1, "tabby": 0}
    with pytest.raises(ValueError) as info:
        labels.folder_classes(["cat/1.png", "coffee/2.png", "10/3.png"], "folder", None,
                              UNNAMED)
    message = str(info.value)
    assert message.startswith("folders '10', 'cat', 'coffee' are not classes of model 'tiny' "
                              "(it has 10 classes, numbered from 0, and no class names); "
                              "nothing was uploaded.")
    assert "--labels folder-sorted" in message and "--label-map FOLDER=CLASS" in message
    assert labels.folder_classes(["cat/1.png"], None, None, UNNAMED) == {}


def test_folder_sorted_and_label_maps():
    names = ["dog/1.png", "cat/1.png", "cat/2.png", "loose.png"]
    assert labels.folder_classes(names, "folder-sorted", None, UNNAMED) == {"cat": 0, "dog": 1}
    with pytest.raises(ValueError, match="numbers the 5 class folders 0..4, but model 'pets' "
                                         "has 4 classes"):
        labels.folder_classes([f"{c}/1.png" for c in "abcde"], "folder-sorted", None, PETS)
    mapped = labels.resolve_label_map(labels.parse_label_map(["cat=tabby", "dog=1"]), PETS)
    assert mapped == {"cat": 0, "dog": 1}
    assert labels.folder_classes(names, "folder", mapped, PETS) == {"cat": 0, "dog": 1}
    with pytest.raises(ValueError, match="goes with --labels folder"):
        labels.folder_classes(names, "folder-sorted", mapped, PETS)
    with pytest.raises(ValueError, match=r"--label-map names '4', 'kitten', not classes"):
        labels.resolve_label_map({"a": "kitten", "b": "4"}, PETS)
    with pytest.raises(ValueError, match="FOLDER=CLASS"):
        labels.parse_label_map(["cat"])

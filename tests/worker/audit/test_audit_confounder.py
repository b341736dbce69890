"""The planted-confounder demo, end to end in-process: the audit finds the watermark.

The data set is written as PNGs and a manifest, the model trained once per session (32 px,
about 20-40 s on one thread), saved as safetensors and loaded back as the service would.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from demo.confounder import data
from demo.confounder import model as demo_model
from demo.confounder.audit import audit
from worker.models.build import build_model

SIZE = 32
SEED = 0


@pytest.fixture(scope="session")
def confounder(confounder_demo):
    demo = confounder_demo
    assert demo.size == SIZE
    spec = demo_model.model_spec(SIZE)
    assert json.loads(demo.spec.read_text()) == demo_model.spec_json(SIZE)
    model = build_model(spec, demo.weights)  # registrable: the service's own loader reads it
    return {"test": demo.test, "manifest": demo.manifest, "model": model, "spec": spec,
            "result": audit(demo.manifest, model, spec)}


def test_marked_pictures_lead_the_suspects(confounder):
    figures = confounder["result"].figures
    print(figures)
    assert figures.precision_at_20 >= 0.8


def test_marked_pictures_form_their_own_cluster(confounder):
    figures = confounder["result"].figures
    assert figures.purity >= 0.8
    assert figures.marked_in_that_cluster > 0.5


def test_clean_pictures_have_their_relevance_on_the_object(confounder):
    figures = confounder["result"].figures
    clean = [s for s in confounder["test"] if not s.marked]
    area = np.mean([(s.box[2] - s.box[0]) * (s.box[3] - s.box[1]) / SIZE**2 for s in clean])
    assert figures.clean_energy_in_box >= 2 * area  # twice what a uniform map gets
    assert figures.clean_energy_in_box > figures.baseline_energy_in_box


def test_the_model_learned_the_shortcut(confounder):
    test, model = confounder["test"], confounder["model"]
    labels = np.array([s.label for s in test])
    marked = np.array([s.marked for s in test])
    predicted = demo_model.predict(model, test)
    assert np.mean(predicted[~marked] == labels[~marked]) >= 0.8
    with_mark = demo_model.predict(
        model, [data.Sample(data.add_mark(s.image), s.label, s.box, True) for s in test])
    others = labels != data.MARKED_CLASS
    assert np.mean(with_mark[others] == data.MARKED_CLASS) >= 0.5


def test_the_report_names_the_marked_suspects_with_pictures(confounder):
    report = confounder["result"].report
    top = report.data["suspects"][0]
    assert top["id"].endswith("marked")
    assert top["overlay"] in report.pictures
    assert any("relevance" in reason for reason in top["reasons"])


def test_the_manifest_has_uri_id_label_and_box(confounder):
    lines = confounder["manifest"].read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"uri", "id", "label", "box"}
    assert (confounder["manifest"].parent / first["uri"]).is_file()
    assert len(lines) == len(confounder["test"])
    assert sum(json.loads(line)["id"].endswith("-marked") for line in lines) == \
        sum(data.TEST_MARKED)


def test_the_data_set_follows_the_seed():
    a, b = data.training_set(3, SIZE, 4), data.training_set(3, SIZE, 4)
    pairs = zip(a, b, strict=True)
    assert all(np.array_equal(x.image, y.image) and x.box == y.box for x, y in pairs)
    c = data.training_set(4, SIZE, 4)
    assert not all(np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True))


def test_marks_sit_in_the_outer_band_and_objects_clear_of_it():
    geometry = data.Geometry.of(64)
    band = round(0.1 * 64)
    x0, y0, x1, y1 = geometry.mark
    assert x1 <= band + 1 and y1 <= band + 1
    for s in data.test_set(SEED, 64)[:30]:
        bx0, by0, bx1, by1 = s.box
        assert min(bx0, by0) >= geometry.margin and max(bx1, by1) <= 64 - geometry.margin


def _groups(report) -> dict[tuple[int, int], tuple[int, int, dict[int, int]]]:
    """Per (method position, class): its size, how many maps were clustered, and each
    item's cluster."""
    return {(g["position"], g["class"]): (
        g["size"], g["sampled"],
        {item: c for c, cluster in enumerate(g["clusters"]) for item in cluster["members"]})
        for g in report.data["clusters"]}


@pytest.mark.parametrize(("cap", "which"), [(45, "every group"), (25, "the watermark's")])
def test_a_sample_below_the_class_size_gives_the_full_runs_clusters(confounder, cap, which):
    """SALIENCY_SPRAY_SAMPLE below every class's size (49 to 52 items): each group's clusters,
    its assigned items' included, are those of clustering all its maps (adjusted Rand index
    1.0); the watermark's group (gradient, class 0) keeps them with half its class sampled."""
    full = _groups(confounder["result"].report)
    assert all(sampled == size for size, sampled, _ in full.values())
    capped = _groups(audit(confounder["manifest"], confounder["model"], confounder["spec"],
                           spray_sample=cap).report)
    keys = sorted(full) if which == "every group" else [(0, data.MARKED_CLASS)]
    assert set(capped) == set(full) and len(full) == 6
    for key in keys:
        size, sampled, clusters = capped[key]
        assert sampled == cap < size and set(clusters) == set(full[key][2])
        items = sorted(clusters)
        assert adjusted_rand_score([full[key][2][i] for i in items],
                                   [clusters[i] for i in items]) == 1.0, key


def test_the_vit_is_saved_as_a_bundle_the_service_builds_with_equal_logits(tmp_path):
    import torch

    from demo.confounder import vit
    from shared.spec.model import parse_model_spec

    torch.manual_seed(SEED)
    model = vit.new_model(SIZE).eval()
    bundle, spec = vit.save(model, tmp_path, SIZE)
    built = build_model(parse_model_spec(json.loads(spec.read_text())), bundle).eval()
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(built(x), model(x), rtol=1e-5, atol=1e-6)
    assert json.loads(spec.read_text())["architecture"] == "transformers"

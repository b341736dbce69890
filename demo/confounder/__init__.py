"""The planted-confounder demo: a data set with a corner watermark that comes with one class,
a resnet18 that learns the shortcut, and an audit that must find it.

    python -m demo.confounder make DIR     # data set (PNGs + manifests) and model, seeded
    python -m demo.confounder audit DIR    # the audit in-process: report and its figures

`make` writes `DIR/test.jsonl` (uri, id, label, box; ids end in `marked` or `clean`), the
pictures under `DIR/test/` and `DIR/train/`, and `DIR/model.safetensors` with its
registration spec `DIR/model.json`: register the model and submit `test.jsonl` as a data-set
job to audit it through the service.
"""

"""The planted-confounder demo: a data set with a corner watermark that comes with one class,
a resnet18 that learns the shortcut, and an audit that must find it.

    python -m demo.confounder make DIR     # data set (PNGs + manifests) and model, seeded
    python -m demo.confounder audit DIR    # the audit in-process: report and its figures
    python -m demo.confounder submit DIR   # the audit through a running service (make demo-audit)
    python -m demo.confounder make DIR --architecture vit   # a small ViT (make demo-audit-vit)

`make` writes `DIR/test.jsonl` (uri, id, label, box; ids end in `marked` or `clean`), the
pictures under `DIR/test/` and `DIR/train/`, and `DIR/model.safetensors` with its
registration spec `DIR/model.json`: `submit` registers the model, uploads the test pictures
and audits them through the service as one job (`demo.confounder.service`).
"""

"""`python -m demo.confounder make DIR`, `… audit DIR` (in-process) and `… submit DIR`
(through a running service)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from demo.confounder import data, vit
from demo.confounder import model as demo_model
from demo.confounder.build import build


def make(directory: Path, seed: int, size: int, per_class: int, epochs: int | None,
         architecture: str) -> None:
    """Write the data set and the trained model into `directory`, and say what it learned."""
    started = time.perf_counter()
    demo = build(directory, seed, size, per_class, epochs, architecture)
    test, trained = demo.test, demo.model
    predicted = demo_model.predict(trained, test)
    labels = np.array([s.label for s in test])
    marked = np.array([s.marked for s in test])
    flipped = demo_model.predict(trained, [data.Sample(data.add_mark(s.image), s.label, s.box,
                                                       True) for s in test])
    print(f"made {len(demo.train)} training and {len(test)} test pictures and trained "
          f"{architecture} in {time.perf_counter() - started:.0f} s")
    print(f"accuracy on clean test pictures: {np.mean(predicted[~marked] == labels[~marked]):.0%}")
    others = labels != data.MARKED_CLASS
    print(f"the mark turns {np.mean(flipped[others] == data.MARKED_CLASS):.0%} of the other "
          f"classes' test pictures into {data.CLASSES[data.MARKED_CLASS]!r}: the shortcut")
    print(f"manifest: {demo.manifest}\nmodel: {demo.weights} (spec {demo.spec})")


def audit(directory: Path, methods: list[str], seed: int) -> None:
    """Audit `directory/test.jsonl` in-process; write `report.json` and its pictures."""
    from demo.confounder.audit import audit as run_audit
    from shared.spec.model import parse_model_spec
    from worker.models.build import build_model

    spec = parse_model_spec(json.loads((directory / "model.json").read_text(encoding="utf-8")))
    artifact = "model.zip" if spec.architecture == vit.ARCHITECTURE else "model.safetensors"
    model = build_model(spec, directory / artifact)
    result = run_audit(directory / "test.jsonl", model, spec, methods=methods, seed=seed)
    out = directory / "report"
    for name, png in result.report.pictures.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(png)
    (out / "report.json").write_text(json.dumps(result.report.data, indent=1), encoding="utf-8")
    for line in result.figures.lines():
        print(line)
    print(f"report: {out / 'report.json'}")


def submit(directory: Path, url: str | None, methods: list[str], seed: int,
           timeout: float | None) -> None:
    """Audit `directory`'s test set through a running service; print the report page and
    the three figures."""
    from saliency_client import Client

    from demo.confounder.service import run

    with Client(url) as client:
        result = run(client, directory, methods=methods, seed=seed, timeout=timeout)
    print(f"job {result.job.id}: {result.job.state.progress.done} pictures audited")
    for line in result.figures.lines():
        print(line)
    print(f"report: {result.page}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.confounder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make_parser = commands.add_parser("make", help="write the data set and train the model")
    make_parser.add_argument("directory", type=Path)
    make_parser.add_argument("--size", type=int, default=data.SIZE)
    make_parser.add_argument("--per-class", type=int, default=data.TRAIN_PER_CLASS)
    make_parser.add_argument("--epochs", type=int, default=None,
                             help=f"default {demo_model.EPOCHS} (resnet18), {vit.EPOCHS} (vit)")
    make_parser.add_argument("--architecture", choices=(demo_model.ARCHITECTURE, "vit"),
                             default=demo_model.ARCHITECTURE)
    audit_parser = commands.add_parser("audit", help="audit the test set in-process")
    audit_parser.add_argument("directory", type=Path)
    submit_parser = commands.add_parser(
        "submit", help="audit the test set through a running service (register the model, "
        "upload the pictures, one job), and print the report page and the figures")
    submit_parser.add_argument("directory", type=Path)
    submit_parser.add_argument("--url", help="the API (default $SALIENCY_URL, else "
                               "http://127.0.0.1:8000)")
    submit_parser.add_argument("--timeout", type=float, help="give up waiting after this many "
                               "seconds")
    for sub in (audit_parser, submit_parser):
        sub.add_argument("--methods", default="gradient,guided_backprop")
    for sub in (make_parser, audit_parser, submit_parser):
        sub.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "make":
        make(args.directory, args.seed, args.size, args.per_class, args.epochs,
             args.architecture)
    elif args.command == "audit":
        audit(args.directory, args.methods.split(","), args.seed)
    else:
        submit(args.directory, args.url, args.methods.split(","), args.seed, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

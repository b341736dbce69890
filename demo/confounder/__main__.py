"""`python -m demo.confounder make DIR` and `python -m demo.confounder audit DIR`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from demo.confounder import data
from demo.confounder import model as demo_model


def make(directory: Path, seed: int, size: int, per_class: int, epochs: int) -> None:
    """Write the data set and the trained model into `directory`, and say what it learned."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train = data.training_set(seed, size, per_class)
    test = data.test_set(seed, size)
    data.write_split(directory, "train", train)
    manifest = data.write_split(directory, "test", test)
    trained = demo_model.train(train, seed, epochs)
    weights, spec = demo_model.save(trained, directory, size)
    predicted = demo_model.predict(trained, test)
    labels = np.array([s.label for s in test])
    marked = np.array([s.marked for s in test])
    flipped = demo_model.predict(trained, [data.Sample(data.add_mark(s.image), s.label, s.box,
                                                       True) for s in test])
    print(f"made {len(train)} training and {len(test)} test pictures and trained "
          f"{demo_model.ARCHITECTURE} in {time.perf_counter() - started:.0f} s")
    print(f"accuracy on clean test pictures: {np.mean(predicted[~marked] == labels[~marked]):.0%}")
    others = labels != data.MARKED_CLASS
    print(f"the mark turns {np.mean(flipped[others] == data.MARKED_CLASS):.0%} of the other "
          f"classes' test pictures into {data.CLASSES[data.MARKED_CLASS]!r}: the shortcut")
    print(f"manifest: {manifest}\nmodel: {weights} (spec {spec})")


def audit(directory: Path, methods: list[str], seed: int) -> None:
    """Audit `directory/test.jsonl` in-process; write `report.json` and its pictures."""
    from demo.confounder.audit import audit as run_audit
    from shared.modelspec import parse_model_spec
    from worker.models import build_model

    spec = parse_model_spec(json.loads((directory / "model.json").read_text(encoding="utf-8")))
    model = build_model(spec, directory / "model.safetensors")
    result = run_audit(directory / "test.jsonl", model, spec, methods=methods, seed=seed)
    out = directory / "report"
    for name, png in result.report.pictures.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(png)
    (out / "report.json").write_text(json.dumps(result.report.data, indent=1), encoding="utf-8")
    f = result.figures
    print(f"precision at 20 of marked pictures among the suspects: {f.precision_at_20:.2f}")
    print(f"purity of the class-0 cluster holding most marked pictures: {f.purity:.2f} "
          f"(it holds {f.marked_in_that_cluster:.0%} of them)")
    print(f"energy_in_box of clean pictures: {f.clean_energy_in_box:.2f} "
          f"(centre-Gaussian baseline {f.baseline_energy_in_box:.2f})")
    print(f"report: {out / 'report.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.confounder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make_parser = commands.add_parser("make", help="write the data set and train the model")
    make_parser.add_argument("directory", type=Path)
    make_parser.add_argument("--size", type=int, default=data.SIZE)
    make_parser.add_argument("--per-class", type=int, default=data.TRAIN_PER_CLASS)
    make_parser.add_argument("--epochs", type=int, default=demo_model.EPOCHS)
    audit_parser = commands.add_parser("audit", help="audit the test set in-process")
    audit_parser.add_argument("directory", type=Path)
    audit_parser.add_argument("--methods", default="gradient,guided_backprop")
    for sub in (make_parser, audit_parser):
        sub.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "make":
        make(args.directory, args.seed, args.size, args.per_class, args.epochs)
    else:
        audit(args.directory, args.methods.split(","), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`saliency`: the command line of the SDK.

Exit codes (scripts may rely on them; the reason is one line on stderr):
  0  success
  2  usage: bad arguments, an unreadable input file or folder, a malformed --target/--method
  3  the API answered with an error (its code and message are printed)
  4  the API could not be reached (after retries)
  5  the job ended failed or cancelled (with --wait, `wait`, `audit`, `top-activations` or
     `visualize`)
  6  --timeout passed before the job finished
  130 interrupted
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from saliency_client import audit, exports, findings, kinds, protocol
from saliency_client import layers as layer_table
from saliency_client import results as res
from saliency_client import top_activations as top
from saliency_client.client import Client, Job
from saliency_client.datasets import LABEL_MODES, Annotations, Dataset
from saliency_client.errors import ApiError, ConnectionFailed, JobFailed, WaitTimeout
from saliency_client.labels import parse_label_map
from saliency_client.progress import phase
from saliency_client.spec import TARGET_HELP, parse_method, parse_target
from saliency_client.types import JobState

EXIT_OK, EXIT_USAGE, EXIT_API, EXIT_CONNECTION, EXIT_JOB_FAILED, EXIT_TIMEOUT = 0, 2, 3, 4, 5, 6
OUTPUT_KINDS = ("npy", "png", "overlay", "signed")
REDUCTIONS = ("max_abs", "sum_abs", "l2", "positive")


def _target(text: str) -> Any:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _method(text: str) -> Any:
    try:
        return parse_method(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _channels(text: str) -> Any:
    try:
        return kinds.parse_channels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _position(text: str) -> list[int]:
    try:
        return kinds.parse_position(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if args.json else text)


def _summary(state: JobState) -> str:
    p = state.progress
    line = f"{state.id}  {phase(state)}  {p.done}/{p.total} done"
    if p.failed:
        line += f", {p.failed} failed"
    if p.projections_due:
        line += f", {p.projections_done}/{p.projections_due} projections"
    return line + (f"  error: {state.error}" if state.error else "")


def _finish(args: argparse.Namespace, job: Job) -> int:
    """Wait (with a bar on stderr), optionally download, and report the final state."""
    job.wait(timeout=args.timeout, progress=not args.no_progress)
    if getattr(args, "out", None) and job.state.status.value == "succeeded":
        job.download(args.out)
    job.state.raise_for_status()
    if not args.json:
        print(_summary(job.state), file=sys.stderr)
    return EXIT_OK


def _audit_field(args: argparse.Namespace) -> dict[str, Any] | None:
    return None if args.sanity is None else {"sanity": {"sample": args.sanity}}


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(args.images, model=args.model, methods=args.method, target=args.target,
                        reduce=args.reduce, outputs=args.output, seed=args.seed,
                        audit=_audit_field(args))
    if args.wait or args.out:
        code = _finish(args, job)
        for line in findings.output_warnings(job.items()):
            print(line, file=sys.stderr)
        _emit(args, job.state.raw, job.id)
        return code
    _emit(args, {"id": job.id, "status": "queued"}, job.id)
    return EXIT_OK


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    state = client.job(args.id).refresh().state
    _emit(args, state.raw, _summary(state))
    return EXIT_OK


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.id)
    code = _finish(args, job)
    _emit(args, job.state.raw, _summary(job.state))
    return code


def cmd_items(client: Client, args: argparse.Namespace) -> int:
    for item in client.job(args.id).items():
        if args.json:
            print(json.dumps(item.raw))
            continue
        pred = item.prediction
        label = "-" if pred is None else f"{pred.class_name or pred.class_index} {pred.score:.3f}"
        methods = ",".join(sorted({o.method for o in item.outputs}))
        print(f"{item.index:5d}  {item.status:9s}  {label:24s}  {methods}"
              + (f"  error: {item.error}" if item.error else ""))
    return EXIT_OK


def cmd_download(client: Client, args: argparse.Namespace) -> int:
    out = client.job(args.id).download(args.out)
    _emit(args, {"id": args.id, "dir": str(out)}, str(out))
    return EXIT_OK


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    out = client.job(args.id).export(args.out, args.format, images=not args.no_images)
    _emit(args, {"id": args.id, "format": args.format, "dir": str(out)}, str(out))
    if not args.json and args.format == "fiftyone":
        print(f"import it: fiftyone.Dataset.from_dir({str(out)!r}, "
              "dataset_type=fiftyone.types.FiftyOneDataset)", file=sys.stderr)
    return EXIT_OK


def cmd_results(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.id)
    if args.out:
        path = job.save_results(args.out, args.format)
        _emit(args, {"id": args.id, "file": str(path)}, str(path))
        return EXIT_OK
    fmt = args.format or "jsonl"
    if fmt == "parquet":
        raise ValueError("parquet is binary: give --out FILE.parquet (or --format csv|jsonl)")
    sys.stdout.write(client.transport.send(protocol.results(args.id, fmt)).text)
    return EXIT_OK


def _print_report(report: dict[str, Any], suspects: int) -> None:
    """The headline figures, then an attribution report's findings."""
    for line in [*res.headline(report), *findings.lines(report, suspects)]:
        print(line)


def cmd_report(client: Client, args: argparse.Namespace) -> int:
    report = client.job(args.id).report()
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    _print_report(report, args.suspects)
    if report.get("kind") == "attribution":
        print(f"report page: {client.report_url(args.id)}")
    return EXIT_OK


def _in_place(args: argparse.Namespace) -> Dataset | None:
    """The data set `--webdataset` or `--huggingface` names (None: a local folder)."""
    if not (args.webdataset or args.huggingface):
        for flag in ("label_field", "split", "image_column", "label_column"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} needs --webdataset or "
                                 "--huggingface")
        return None
    if args.webdataset and args.huggingface:
        raise ValueError("--webdataset and --huggingface: give one")
    if args.labels is not None or args.upload:
        raise ValueError("--labels and --upload are for a local folder")
    if args.coco or args.voc or args.category_map or args.annotation_key or args.masks:
        raise ValueError("--coco, --voc and their options are for a local folder (a WebDataset "
                         "or Hugging Face data set gives its boxes and masks itself)")
    if len(args.data) != 1:
        raise ValueError(f"one data set URI, got {len(args.data)}: quote a brace pattern "
                         "('s3://b/shards/{000..099}.tar') so that the shell leaves it whole")
    (uri,) = args.data
    if args.webdataset:
        return Dataset(webdataset=uri, label_field=args.label_field)
    if args.label_field is not None:
        raise ValueError("--label-field is for --webdataset (--label-column for --huggingface)")
    return Dataset(huggingface=uri, split=args.split, image_column=args.image_column,
                   label_column=args.label_column)


def audit_annotations(client: Client, args: argparse.Namespace) -> Annotations | None:
    """`saliency audit`'s `--coco`/`--voc` options as the data set's annotations."""
    if args.coco is None and args.voc is None:
        if args.category_map or args.annotation_key or args.masks:
            raise ValueError("--category-map, --annotation-key and --masks go with --coco or "
                             "--voc")
        return None
    if args.masks and args.coco is None:
        raise ValueError("--masks goes with --coco (VOC annotations have boxes only)")
    category_map = parse_label_map(args.category_map or (), "--category-map", "CATEGORY")
    return Annotations(
        coco=audit.annotation_uri(client, args.coco, "--coco") if args.coco else None,
        voc=audit.annotation_uri(client, args.voc, "--voc") if args.voc else None,
        key=args.annotation_key, category_map=category_map or None,
        objects="masks" if args.masks else None)


def cmd_audit(client: Client, args: argparse.Namespace) -> int:
    label_map = parse_label_map(args.label_map or ())
    dataset = _in_place(args)
    if dataset is not None:
        outcome = audit.run_dataset(
            client, dataset, args.out, model=args.model, methods=args.method,
            label_map=label_map, target=args.target, seed=args.seed, sanity=args.sanity,
            timeout=args.timeout, progress=not args.no_progress)
    elif len(args.data) != 1:
        raise ValueError(f"one folder, got {len(args.data)}")
    else:
        outcome = audit.run(client, args.data[0], args.out, model=args.model,
                            methods=args.method, labels=args.labels, label_map=label_map,
                            target=args.target, seed=args.seed, sanity=args.sanity,
                            batch_size=args.batch_size, timeout=args.timeout,
                            progress=not args.no_progress, force_upload=args.upload,
                            annotations=audit_annotations(client, args))
    job = outcome.job
    report = json.loads(outcome.report.read_text())
    page = client.page_url(job.id)
    if args.json:
        print(json.dumps({"id": job.id, "status": job.state.status.value, "page": page,
                          "results": str(outcome.results), "report": report,
                          "uploaded": outcome.uploaded, "in_place": outcome.in_place}))
    else:
        print(_summary(job.state))
        _print_report(report, args.suspects)
        print(f"results: {outcome.results}\nreport: {outcome.report}\npage: {page}\n"
              f"report page: {client.report_url(job.id)}")
    job.state.raise_for_status()
    return EXIT_OK


def cmd_top_activations(client: Client, args: argparse.Namespace) -> int:
    outcome = top.run(client, args.data, args.out, model=args.model, layer=args.layer,
                      channels=args.channels, k=args.k, methods=args.method,
                      batch_size=args.batch_size, timeout=args.timeout,
                      progress=not args.no_progress, force_upload=args.upload)
    job = outcome.job
    report = json.loads(outcome.report.read_text())
    page = client.page_url(job.id)
    if args.json:
        print(json.dumps({"id": job.id, "status": job.state.status.value, "page": page,
                          "out": str(args.out), "report": str(outcome.report),
                          "channels": [c["channel"] for c in report.get("channels") or ()],
                          "methods": report.get("methods"),
                          "methods_reason": report.get("methods_reason"),
                          "warnings": {str(c["channel"]): c["warnings"]
                                       for c in report.get("channels") or ()
                                       if c.get("warnings")},
                          "uploaded": outcome.uploaded, "in_place": outcome.in_place}))
    else:
        print(_summary(job.state))
        print(top.method_line(report))
        for line in [*top.channel_lines(report, outcome.report.parent),
                     *top.warning_lines(report)]:
            print(line)
        print(f"report: {outcome.report}\npage: {page}")
    job.state.raise_for_status()
    return EXIT_OK


def visualize_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `saliency visualize`'s job (besides `model` and `seed`)."""
    if args.layer is None and (args.channel is not None or args.position is not None):
        raise ValueError("--channel and --position need --layer")
    if args.layer is not None:
        if args.channel is None:
            raise ValueError("--layer needs --channel")
        objectives = [kinds.objective(layer=args.layer, channel=args.channel,
                                      position=args.position)]
    else:
        objectives = [kinds.objective(class_index=c) for c in args.class_index]
    return kinds.visualize_fields(objectives, steps=args.steps, size=args.size,
                                  parametrization=args.parametrization, lr=args.lr,
                                  starts=args.starts)


def cmd_visualize(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(model=args.model, seed=args.seed, **visualize_fields(args))
    code = _finish(args, job)
    _emit(args, {**job.state.raw, "out": str(args.out)}, f"{job.id}  {args.out}")
    return code


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    state = client.job(args.id).cancel().state
    _emit(args, state.raw, _summary(state))
    return EXIT_OK


def cmd_models(client: Client, args: argparse.Namespace) -> int:
    models = client.models()
    if args.json:
        print(json.dumps([m.raw for m in models]))
    for m in [] if args.json else models:
        print(f"{m.name:24s}  {m.architecture or '(program)':20s}  {m.num_classes} classes")
    return EXIT_OK


def cmd_layers(client: Client, args: argparse.Namespace) -> int:
    layers = client.layers(args.model)
    if args.json:
        print(json.dumps(layers.raw))
    for line in [] if args.json else layer_table.table(layers, args.usable):
        print(line)
    return EXIT_OK


def cmd_register(client: Client, args: argparse.Namespace) -> int:
    extra: dict[str, Any] = {"input_size": args.input_size, "resize": args.resize,
                             "mean": args.mean, "std": args.std}
    if args.class_names:
        with open(args.class_names, encoding="utf-8") as f:
            extra["class_names"] = [line.strip() for line in f if line.strip()]
    if args.num_classes is None and args.bundle is None:
        return _fail(EXIT_USAGE, "--num-classes is required with --weights or --program")
    model = client.register_model(args.name, num_classes=args.num_classes, weights=args.weights,
                                  program=args.program, bundle=args.bundle,
                                  architecture=args.architecture, **extra)
    _emit(args, model.raw, model.name)
    return EXIT_OK


def cmd_methods(client: Client, args: argparse.Namespace) -> int:
    methods = client.methods()
    if args.json:
        print(json.dumps([{"name": m.name, "description": m.description, "params":
                           [vars(p) | {"choices": list(p.choices)} for p in m.params]}
                          for m in methods]))
    for m in [] if args.json else methods:
        print(f"{m.name:16s}  {m.description}")
        for p in m.params:
            print(f"{'':18s}{p.name}={p.default}  ({p.type}) {p.description}")
    return EXIT_OK


def _common(suppress: bool) -> argparse.ArgumentParser:
    # The same options before or after the subcommand; SUPPRESS keeps a value given before.
    default = argparse.SUPPRESS if suppress else None
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", default=default, help="API base URL (default $SALIENCY_URL)")
    p.add_argument("--api-key", default=default, help="API key (default $SALIENCY_API_KEY)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="machine-readable JSON on stdout")
    return p


def _waiting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a registered model's name")
    p.add_argument("--method", action="append", type=_method, metavar="NAME[:K=V,...]",
                   help="a method, with parameters if any: gradient, smoothgrad:samples=50,"
                   "noise=0.2 (repeatable; default gradient; see `saliency methods`)")
    p.add_argument("--target", type=_target, help=TARGET_HELP + " (default predicted)")
    p.add_argument("--seed", type=int, help="seed of the job's randomness (default 0)")
    p.add_argument("--sanity", type=int, metavar="N", help="run the report's sanity check "
                   "(cascading weight randomisation) on N items")


def _suspects(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suspects", type=int, default=findings.SUSPECTS_SHOWN, metavar="N",
                   help=f"print the N highest-scoring suspects (default "
                   f"{findings.SUSPECTS_SHOWN})")


def build_parser() -> argparse.ArgumentParser:
    common = _common(suppress=True)
    parser = argparse.ArgumentParser(
        prog="saliency", parents=[_common(suppress=False)],
        description="Submit attribution, top-activations and visualize jobs and fetch their "
        "results.",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("submit", cmd_submit, "submit images (files, or storage URIs) as one job")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/WebP/.npy file or URI")
    _job_options(p)
    p.add_argument("--reduce", choices=REDUCTIONS, help="channel reduction (default max_abs)")
    p.add_argument("--output", action="append", choices=OUTPUT_KINDS,
                   help="artifact kinds to make (repeatable; default npy, png and overlay: "
                   "signed only when asked)")
    p.add_argument("--wait", action="store_true", help="wait for the job, with a progress bar")
    p.add_argument("--out", metavar="DIR", help="wait, then download the results into DIR")
    _waiting(p)
    add("status", cmd_status, "show a job's status and progress").add_argument("id")
    p = add("wait", cmd_wait, "wait for a job to finish")
    p.add_argument("id")
    _waiting(p)
    add("items", cmd_items, "list a job's items (--json: one JSON object per line)"
        ).add_argument("id")
    p = add("download", cmd_download, "download every artifact and results.jsonl")
    p.add_argument("id")
    p.add_argument("--out", required=True, metavar="DIR")
    p = add("export", cmd_export, "a finished job's export, unpacked into --out: for "
            "fiftyone, a dataset folder FiftyOne imports (each item a sample, each map a "
            "Heatmap field)")
    p.add_argument("id")
    p.add_argument("--format", choices=exports.FORMATS, default="fiftyone")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to unpack into")
    p.add_argument("--no-images", action="store_true", help="reference inputs under file:// "
                   "URIs by their path instead of copying them (others are copied)")
    p = add("results", cmd_results, "a finished job's results file: one row per item x "
            "output (to --out, or csv/jsonl on stdout)")
    p.add_argument("id")
    p.add_argument("--out", metavar="FILE", help="write here; the format is --format, else the "
                   "extension (.parquet, .csv, .jsonl)")
    p.add_argument("--format", choices=res.FORMATS, help="default: from --out, else jsonl")
    p = add("report", cmd_report, "a finished job's report: headline figures, then an audit's "
            "warnings, suspects, clusters and trust checks (--json: all of it)")
    p.add_argument("id")
    _suspects(p)
    p = add("audit", cmd_audit, "audit a local ImageFolder tree (one data-set job, read in place "
            "when the service can, else uploaded; resumable), or WebDataset shards or a "
            "Hugging Face data set where they are; results into --out")
    p.add_argument("data", nargs="+", metavar="DATA", help="a folder of class folders of "
                   "images; with --webdataset, a prefix or a quoted brace pattern of .tar "
                   "shards; with --huggingface, a data set's folder or .parquet file")
    p.add_argument("--webdataset", action="store_true", help="DATA is WebDataset shards")
    p.add_argument("--label-field", help="--webdataset: the label member's extension, also "
                   "the label's field in the json member (default cls)")
    p.add_argument("--huggingface", action="store_true", help="DATA is a Hugging Face data "
                   "set: Parquet files of --split, or a save_to_disk folder")
    p.add_argument("--split", help="--huggingface: the split (default train)")
    p.add_argument("--image-column", help="--huggingface: the image column (default image)")
    p.add_argument("--label-column", help="--huggingface: the label column (default label)")
    _job_options(p)
    p.add_argument("--labels", choices=LABEL_MODES, help="label each image by its folder: its "
                   "name matched to the model's class names (folder), or the sorted folders "
                   "numbered as torchvision's ImageFolder does (folder-sorted); checked "
                   "against the model's classes before anything is uploaded")
    p.add_argument("--label-map", action="append", metavar="FOLDER=CLASS", help="the class of "
                   "a folder (implies --labels folder) or of a label name of the data set, an "
                   "index or a class name (repeatable)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--coco", metavar="FILE_URI", help="a COCO instances file with the "
                       "images' objects, for the box metrics: an s3:// or file:// URI the "
                       "service reads, or a local file it reads in place")
    where.add_argument("--voc", metavar="PREFIX", help="a folder or prefix of Pascal VOC "
                       "Annotations/*.xml files, as --coco")
    p.add_argument("--category-map", action="append", metavar="CATEGORY=CLASS",
                   help="the class of an annotation category (a name, or a COCO category "
                   "id): a class index or name (repeatable; other categories are the class "
                   "of the same name)")
    p.add_argument("--annotation-key", choices=("file_name", "id"), help="join images to "
                   "annotations by file name (default) or by id (the file's stem)")
    p.add_argument("--masks", action="store_true", help="with --coco: the objects are their "
                   "segmentation masks, not their boxes")
    _suspects(p)
    p.add_argument("--out", required=True, metavar="DIR", help="where results.parquet, "
                   "report.json and the audit's resume state go")
    p.add_argument("--batch-size", type=int, default=32, help="images per upload request")
    p.add_argument("--upload", action="store_true", help="upload even when the service could "
                   "read the folder in place")
    _waiting(p)
    p = add("top-activations", cmd_top_activations, "what a layer's channels detect: per "
            "channel the k images that excite it most, with each unit's projection and "
            "patch; the report's grids and files into --out")
    p.add_argument("data", nargs="+", metavar="DATA", help="a local folder (read in place "
                   "when the service can, else uploaded), a manifest (.jsonl) or prefix URI, "
                   "or image files or URIs")
    p.add_argument("--model", required=True, help="a registered model's name")
    p.add_argument("--layer", required=True, help="a module name of the model (layer4.1)")
    p.add_argument("--channels", required=True, type=_channels, metavar="CHANNELS",
                   help=kinds.CHANNELS_HELP)
    p.add_argument("--k", type=int, help="top images per channel (default 9)")
    p.add_argument("--method", action="append", type=_method, metavar="NAME",
                   help="a projection method: deconvnet, guided_backprop or gradient "
                   "(repeatable; default deconvnet where a max-pooling precedes the layer, "
                   "else guided_backprop: see `saliency layers MODEL`)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the grids, the units' "
                   "files and report.json go")
    p.add_argument("--batch-size", type=int, default=32, help="images per upload request")
    p.add_argument("--upload", action="store_true", help="upload a folder even when the "
                   "service could read it in place")
    _waiting(p)
    p = add("visualize", cmd_visualize, "optimize an image that maximizes a class, or a "
            "layer's channel or neuron; the pictures, snapshots and curves into --out")
    p.add_argument("--model", required=True, help="a registered model's name")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--class", dest="class_index", type=int, action="append", metavar="K",
                      help="a class index (repeatable: one item per class)")
    goal.add_argument("--layer", help="a module name of the model; with --channel")
    p.add_argument("--channel", type=int, help="the channel of --layer to maximize")
    p.add_argument("--position", type=_position, metavar="Y,X",
                   help="one neuron of the channel, on the layer's grid")
    p.add_argument("--steps", type=int, help="optimization steps (default: the service's)")
    p.add_argument("--size", type=int, help="the image's side (default: the model's input)")
    p.add_argument("--seed", type=int, help="seed of the random start (default 0)")
    p.add_argument("--parametrization", choices=kinds.PARAMETRIZATIONS,
                   help="optimize Fourier coefficients (default) or pixels")
    p.add_argument("--lr", type=float, help="learning rate (default: the service's)")
    p.add_argument("--starts", type=int, help="random starts per objective (default 1)")
    p.add_argument("--out", required=True, metavar="DIR", help="wait, then download here")
    _waiting(p)
    add("cancel", cmd_cancel, "cancel a job (it is final once its results are written)"
        ).add_argument("id")
    add("methods", cmd_methods, "list the attribution methods")

    p = add("layers", cmd_layers, "a model's modules: output shape, layout, whether a job "
            "may name it as a layer; the default Grad-CAM layer marked *")
    p.add_argument("model", metavar="MODEL", help="a registered model's name")
    p.add_argument("--usable", action="store_true", help="only the layers a job may name")

    models = add("models", cmd_models, "list registered models (or: models register ...)")
    msub = models.add_subparsers(dest="models_command", metavar="{register}")
    p = msub.add_parser("register", parents=[common], help="register a model")
    p.set_defaults(func=cmd_register)
    p.add_argument("--name", required=True)
    p.add_argument("--num-classes", type=int,
                   help="number of classes (a bundle's config says it if left out)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="FILE", help="safetensors weights (needs --architecture)")
    src.add_argument("--program", metavar="FILE", help="a torch.export .pt2 program (admin key)")
    src.add_argument("--bundle", metavar="FILE",
                     help="a Hugging Face save_pretrained folder as .zip or .tar.gz; its classes "
                          "and preprocessing are used unless given")
    p.add_argument("--architecture", help="torchvision model name, or timm:<name>")
    p.add_argument("--input-size", type=int)
    p.add_argument("--resize", type=int)
    p.add_argument("--mean", type=float, nargs=3)
    p.add_argument("--std", type=float, nargs=3)
    p.add_argument("--class-names", metavar="FILE", help="text file, one class name per line")
    return parser


def _fail(code: int, message: str) -> int:
    print(f"saliency: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Client(args.url, args.api_key) as client:
            return args.func(client, args)
    except ApiError as exc:
        return _fail(EXIT_API, f"{exc.code} (HTTP {exc.status}): {exc.message}")
    except ConnectionFailed as exc:
        return _fail(EXIT_CONNECTION, str(exc))
    except JobFailed as exc:
        return _fail(EXIT_JOB_FAILED, str(exc))
    except WaitTimeout as exc:
        return _fail(EXIT_TIMEOUT, str(exc))
    except (OSError, ValueError, TypeError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted")


if __name__ == "__main__":
    sys.exit(main())

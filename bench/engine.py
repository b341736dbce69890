"""Engine throughput and memory against Captum and the autograd floor, side by side in one run.

    .venv/bin/python -m bench.engine --models resnet50 --batches 1,16 --repeats 5 \
        --device cpu --dtype float32 --json bench-engine.json
    .venv/bin/python -m bench.engine --models resnet18 --size 64 --batches 4,16 \
        --methods smoothgrad,integrated_gradients,gradcam,guided_gradcam,occlusion \
        --samples 10 --steps 20 --memory-budget-mb 256 --json bench-methods.json

Contenders, per model and batch, on the same input:
  floor      forward + input gradient of the predicted logit with plain autograd, on a frozen
             eval-mode copy of the model (no hooks, no modes): the least any method can cost;
  ours       `Engine.attribute` with one method, or `all` three rule methods in one call (one
             forward); `--memory-budget-mb` is the engine's budget (default: its own);
  captum     `Saliency(abs=False)`, `GuidedBackprop`, `Deconvolution`, `NoiseTunnel(Saliency)`,
             `IntegratedGradients`, `LayerGradCam` + bilinear `interpolate`, `GuidedGradCam`
             (bilinear) and `Occlusion` on the same frozen model, given the predicted class,
             with their defaults for batching: NoiseTunnel and IntegratedGradients expand the
             whole batch by samples or steps at once, Occlusion runs one patch position per
             forward pass; `all` runs the three rule methods one after another. Captum's
             timed call first finds the predicted class with a forward pass without
             gradients, as the engine's call returns the prediction with the maps
             (`--captum-target given` hands it the class instead, outside the timing).
  camlib     with `--gradcam-baseline pytorch-grad-cam`, Grad-CAM's contender instead of
             Captum (whose LayerGradCam assumes N×C×H×W): pytorch-grad-cam's `GradCAM` at the
             engine's default layer, with its documented reshape for the layer's layout (the
             prefix tokens dropped and the tokens laid on the model's grid; channels-last
             permuted), for the predicted class; its maps come min-max scaled and resized to
             the input. The row's `maps_cosine` is the lowest cosine over images between its
             maps and ours, both min-max scaled (target: equal maps, cosine >= 0.999);
  loop       for the attention methods (timm vision transformers, e.g. `--models
             vit_small_patch16_224`), which Captum lacks: the reference formulas one image at
             a time, as Chefer et al.'s code and vit-explain run them: forward hooks on timm's
             `attn_drop` modules of an explicit-attention copy record the probabilities, a
             backward pass gives their gradients, and R is built from full T×T products.
The sampling, path, occlusion and attention methods have no floor target: they are compared
with Captum or the loop only (target: at least level, 1.5× for occlusion, whose positions we
batch, and 5× for the attention methods at batch 16).
Models are torchvision's by name, else timm's (random weights either way).
Repetitions are interleaved (each repeat runs every contender once, in a rotating order), so
the noise of a shared machine spreads over all of them; images/s come from the median time.

Peak memory is measured in a separate, untimed call per contender. CUDA: the growth of
`torch.cuda.max_memory_allocated` over what was allocated before the call. CPU: the first
call of the contender in a fresh process (so no memory cached by an earlier call hides its
needs), as the growth of the resident set size (/proc/self/statm sampled every millisecond
by a thread) over the size before the call; glibc's mmap threshold is pinned at 128 KiB
(`mallopt`) and the heap trimmed first, so that RSS follows the live tensors. It includes
oneDNN's first-call workspaces and allocator overhead, and may miss a peak shorter than a
millisecond: an approximate figure (Linux only; NaN elsewhere).

For `--dtype float16|bfloat16` (autocast), the cosine similarity of our maps to float32's is
reported (the minimum over images). `--fast` (CUDA only) means float16 autocast,
channels-last memory and cuDNN autotuning.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script, too

from bench.harness import run_grid, sync, time_interleaved  # noqa: E402
from shared.spec.layers import NHWC, TOKENS, Layout  # noqa: E402
from shared.spec.methods import MethodSpec, method_spec  # noqa: E402
from worker.allocator import keep_freed_memory  # noqa: E402
from worker.engine.core import Engine  # noqa: E402

METHODS = ("gradient", "guided_backprop", "deconvnet")
NEW_METHODS = ("smoothgrad", "integrated_gradients", "gradcam", "guided_gradcam", "occlusion")
ATTENTION_METHODS = ("attention_rollout", "attention_gradcam")
# What the issues ask of each method: at most this multiple of the floor's time, and at
# least this multiple of Captum's throughput.
TARGET_TIME_RATIO = {"gradient": 1.05, "guided_backprop": 1.15, "deconvnet": 1.15, "all": 2.3}
TARGET_VS_CAPTUM = {"gradient": None, "guided_backprop": 1.1, "deconvnet": 1.1, "all": None,
                    "smoothgrad": 1.0, "integrated_gradients": 1.0, "gradcam": 1.0,
                    "guided_gradcam": 1.0, "occlusion": 1.5}
TARGET_VS_LOOP = {"attention_rollout": 5.0, "attention_gradcam": 5.0}
TARGET_VS_CAMLIB = {"gradcam": 1.0}
GROUPS = {name: (name,) for name in (*METHODS, *NEW_METHODS, *ATTENTION_METHODS)} | {
    "all": METHODS}
AUTOCAST = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Setup:
    device: torch.device
    dtype: str
    channels_last: bool

    def autocast(self):
        dtype = AUTOCAST[self.dtype]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def sync(self) -> None:
        sync(self.device)


def make_floor(model: torch.nn.Module, x: torch.Tensor, setup: Setup) -> Callable[[], None]:
    def run() -> None:
        inputs = x.detach().requires_grad_(True)
        with setup.autocast():
            logits = model(inputs)
        score = logits.gather(1, logits.detach().argmax(1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(score, inputs)
        grad.float().cpu()

    return run


def specs(methods: tuple[str, ...], args: argparse.Namespace) -> list[MethodSpec]:
    """Our methods with the benchmark's parameters (the occlusion fill is Captum's 0)."""
    params = {
        "smoothgrad": {"samples": args.samples},
        "integrated_gradients": {"steps": args.steps},
        "occlusion": {"patch": args.patch, "stride": args.stride, "fill": "mean"},
    }
    return [method_spec(name, **params.get(name, {})) for name in methods]


def make_ours(engine: Engine, x: torch.Tensor, methods: list[MethodSpec]) -> Callable[[], None]:
    strict = {"guided_backprop", "deconvnet", "guided_gradcam"}

    def run() -> None:
        result = engine.attribute(x, methods=methods)
        for position, spec in enumerate(methods):
            coverage = result.coverage[position]
            if spec.name in strict and not coverage.complete:
                raise RuntimeError(f"incomplete coverage for {spec.name}: {coverage}")

    return run


def make_captum(
    model: torch.nn.Module, x: torch.Tensor, target: list[int], setup: Setup,
    methods: tuple[str, ...], layer: torch.nn.Module, args: argparse.Namespace,
) -> Callable[[], None]:
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        GuidedGradCam,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    channels, side = x.shape[1], x.shape[-1]
    stdev = 0.15 * float(x.max() - x.min())
    attributions = {
        "gradient": (Saliency(model), {"abs": False}),
        "guided_backprop": (GuidedBackprop(model), {}),
        "deconvnet": (Deconvolution(model), {}),
        "smoothgrad": (NoiseTunnel(Saliency(model)),
                       {"nt_type": "smoothgrad", "nt_samples": args.samples, "stdevs": stdev,
                        "abs": False}),
        "integrated_gradients": (IntegratedGradients(model), {"n_steps": args.steps}),
        "gradcam": (LayerGradCam(model, layer), {"relu_attributions": True}),
        "guided_gradcam": (GuidedGradCam(model, layer), {"interpolate_mode": "bilinear"}),
        "occlusion": (Occlusion(model),
                      {"sliding_window_shapes": (channels, args.patch, args.patch),
                       "strides": (channels, args.stride, args.stride)}),
    }

    def run() -> None:
        chosen = target
        if args.captum_target == "predicted":  # what the engine returns with its maps
            with torch.no_grad(), setup.autocast():
                chosen = model(x).argmax(1).tolist()
        for name in methods:
            method, kwargs = attributions[name]
            with setup.autocast(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                inputs = x.detach().clone().requires_grad_(True)
                attribution = method.attribute(inputs, target=chosen, **kwargs)
                if name == "gradcam":
                    attribution = LayerAttribution.interpolate(attribution, (side, side),
                                                               "bilinear")
            attribution.float().cpu()

    return run


def make_loop(model: torch.nn.Module, x: torch.Tensor, setup: Setup, name: str
              ) -> Callable[[], None]:
    """An attention method's reference formulas one image at a time (see the module
    docstring), for the predicted class, on an explicit-attention copy of a timm ViT."""
    explicit = copy.deepcopy(model)
    for module in explicit.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    drops = [block.attn.attn_drop for block in explicit.blocks]
    prefix, grid = explicit.num_prefix_tokens, tuple(explicit.patch_embed.grid_size)
    gradients = name == "attention_gradcam"

    def one(x1: torch.Tensor) -> None:
        probs: list[torch.Tensor] = []
        handles = [drop.register_forward_hook(lambda m, args, out: probs.append(out))
                   for drop in drops]
        try:
            with torch.set_grad_enabled(gradients), setup.autocast():
                logits = explicit(x1[None].detach().requires_grad_(gradients))
        finally:
            for handle in handles:
                handle.remove()
        eye = torch.eye(probs[0].shape[-1], device=x1.device)
        relevance = eye
        if gradients:
            score = logits[0, int(logits[0].argmax())]
            grads = torch.autograd.grad(score, probs)
            for a, g in zip(probs, grads, strict=True):
                relevance = relevance + (g[0] * a[0]).float().clamp(min=0).mean(0) @ relevance
        else:
            for a in probs:
                a_hat = 0.5 * a[0].float().mean(0) + 0.5 * eye
                relevance = (a_hat / a_hat.sum(-1, keepdim=True)) @ relevance
        row = relevance[0, prefix:].reshape(1, 1, *grid)
        F.interpolate(row, size=tuple(x1.shape[-2:]), mode="bilinear",
                      align_corners=False).cpu()

    def run() -> None:
        for x1 in x:
            one(x1)

    return run


def cam_reshape(layout: Layout) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """pytorch-grad-cam's `reshape_transform` for a layer of `layout`: its documented ViT
    transform with the model's own prefix tokens and grid, or channels-last permuted."""
    if layout.kind == TOKENS:
        def tokens(tensor: torch.Tensor) -> torch.Tensor:
            grid = tensor[:, layout.prefix:, :].reshape(len(tensor), *layout.grid,
                                                        tensor.shape[-1])
            return grid.permute(0, 3, 1, 2)
        return tokens
    if layout.kind == NHWC:
        return lambda tensor: tensor.permute(0, 3, 1, 2)
    return None


def make_camlib(model: torch.nn.Module, x: torch.Tensor, layer: str, layout: Layout,
                setup: Setup) -> Callable[[], np.ndarray]:
    """pytorch-grad-cam's Grad-CAM of `layer` for the predicted class (see the module
    docstring); the call answers its maps, N×H×W."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model, [dict(model.named_modules())[layer]],
                  reshape_transform=cam_reshape(layout))

    def run() -> np.ndarray:
        with torch.no_grad(), setup.autocast():
            chosen = model(x).argmax(1).tolist()
        with setup.autocast():  # on a frozen model, its graph starts at the input
            return cam(input_tensor=x.detach().requires_grad_(True),
                       targets=[ClassifierOutputTarget(c) for c in chosen])

    return run


def maps_cosine(engine: Engine, camlib: Callable[[], np.ndarray], x: torch.Tensor) -> float:
    """The lowest cosine over images between our Grad-CAM maps and pytorch-grad-cam's, both
    min-max scaled (its own scaling)."""
    ours = np.stack([image.maps[0].values[0] for image in engine.attribute(x, ["gradcam"]).images])
    theirs = camlib()

    def scaled(maps: np.ndarray) -> np.ndarray:
        flat = maps.reshape(len(maps), -1).astype(np.float64)
        low = flat.min(axis=1, keepdims=True)
        return (flat - low) / (flat.max(axis=1, keepdims=True) - low + 1e-7)

    a, b = scaled(ours), scaled(theirs)
    return float(min(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12)
                     for u, v in zip(a, b, strict=True)))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def rss_follows_tensors() -> Iterator[None]:
    """CPU: within the block, glibc returns freed large blocks, so RSS tracks live tensors.

    Outside it glibc's usual growing mmap threshold applies (it keeps freed blocks for
    reuse, which is faster, and which is how the timings are taken).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        yield
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 128 * 1024)
    libc.malloc_trim(0)
    try:
        yield
    finally:
        libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's own ceiling for its threshold


def peak_memory_mb(run: Callable[[], None], setup: Setup) -> float:
    """Memory one call needs beyond what was held before it (see the module docstring)."""
    if setup.device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    if not os.path.exists("/proc/self/statm"):
        return float("nan")
    before = _rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, _rss_bytes())
    return (peak - before) / 2**20


def cosine_to_float32(
    model: torch.nn.Module, x: torch.Tensor, engine: Engine, setup: Setup,
    groups: dict[str, tuple[str, ...]], args: argparse.Namespace,
) -> dict[str, float]:
    """Per method, the lowest cosine similarity over images of our maps to float32's."""
    names = [name for name in groups if name != "all"]
    methods = specs(tuple(names), args)
    reference = Engine(model, device=setup.device,
                       memory_budget_mb=args.memory_budget_mb).attribute(x, methods=methods)
    reduced = engine.attribute(x, methods=methods)
    out: dict[str, float] = {}
    for m, name in enumerate(names):
        sims = []
        for ref, low in zip(reference.images, reduced.images, strict=True):
            a, b = ref.maps[m].values.ravel(), low.maps[m].values.ravel()
            denom = float(np.linalg.norm(a) * np.linalg.norm(b))
            sims.append(float(a @ b) / denom if denom > 0 else float("nan"))
        out[name] = min(sims)
    return out


def build(model_name: str, batch: int, args: argparse.Namespace, setup: Setup):
    """The contenders for one model and batch, on one seeded input."""
    torch.manual_seed(0)
    if model_name in torchvision.models.list_models():
        built = torchvision.models.get_model(model_name, weights=None,
                                             num_classes=args.num_classes)
    else:
        try:
            built = timm.create_model(model_name, pretrained=False,
                                      num_classes=args.num_classes, img_size=args.size)
        except TypeError:  # a model that takes any size (a CNN) has no img_size
            built = timm.create_model(model_name, pretrained=False,
                                      num_classes=args.num_classes)
    frozen = copy.deepcopy(built).eval().requires_grad_(False).to(setup.device)
    memory_format = torch.channels_last if setup.channels_last else torch.contiguous_format
    frozen = frozen.to(memory_format=memory_format)
    x = torch.randn(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    x = x.to(setup.device).contiguous(memory_format=memory_format)
    engine = Engine(built, device=setup.device, precision=setup.dtype,
                    channels_last=setup.channels_last, memory_budget_mb=args.memory_budget_mb)
    with torch.no_grad(), setup.autocast():
        target = frozen(x).argmax(1).tolist()
    cams = {"gradcam", "guided_gradcam"} & set(args.methods.split(","))
    layer = dict(frozen.named_modules())[engine.default_layer(x[:1])] if cams else None

    contenders: dict[str, Callable[[], object]] = {"floor": make_floor(frozen, x, setup)}
    for label, methods in groups(args).items():
        if label in TARGET_VS_LOOP and not hasattr(frozen, "blocks"):
            continue  # not a ViT: the attention methods refuse it (a row of none)
        contenders[f"ours:{label}"] = make_ours(engine, x, specs(methods, args))
        if label in TARGET_VS_LOOP:
            contenders[f"loop:{label}"] = make_loop(frozen, x, setup, label)
        elif label in TARGET_VS_CAMLIB and args.gradcam_baseline == "pytorch-grad-cam":
            layer_name = engine.default_layer(x[:1])
            layout = engine.layers(x[:1]).layout(layer_name)
            contenders[f"camlib:{label}"] = make_camlib(frozen, x, layer_name, layout, setup)
        else:
            contenders[f"captum:{label}"] = make_captum(frozen, x, target, setup, methods,
                                                        layer, args)
    return contenders, built, x, engine


def groups(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """The method groups of `--methods`, in the order given."""
    return {label: GROUPS[label] for label in args.methods.split(",")}


def memory_in_fresh_process(name: str, model_name: str, batch: int,
                            args: argparse.Namespace) -> float:
    """CPU: one call of one contender in a new process, so no earlier call's memory is reused."""
    command = [sys.executable, "-m", "bench.engine", "--memory-probe", name,
               "--models", model_name, "--batches", str(batch), "--size", str(args.size),
               "--num-classes", str(args.num_classes), "--dtype", args.dtype,
               "--methods", args.methods, "--samples", str(args.samples),
               "--steps", str(args.steps), "--patch", str(args.patch),
               "--stride", str(args.stride), "--captum-target", args.captum_target,
               "--gradcam-baseline", args.gradcam_baseline]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.memory_budget_mb:
        command += ["--memory-budget-mb", str(args.memory_budget_mb)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def bench_one(model_name: str, batch: int, args: argparse.Namespace, setup: Setup) -> list[dict]:
    contenders, built, x, engine = build(model_name, batch, args, setup)
    chosen = groups(args)
    times = time_interleaved(contenders, args.repeats, args.warmup, setup.device).wall
    if setup.device.type == "cpu":
        memory = {name: memory_in_fresh_process(name, model_name, batch, args)
                  for name in contenders}
    else:
        memory = {name: peak_memory_mb(run, setup) for name, run in contenders.items()}
    cosines = (
        cosine_to_float32(built, x, engine, setup, chosen, args)
        if setup.dtype != "float32" else {}
    )
    if cosines and "all" in chosen:
        cosines["all"] = min(cosines[name] for name in METHODS)

    def ips(name: str) -> float:
        return batch / statistics.median(times[name])

    rows = []
    floor = ips("floor")
    for label in [label for label in chosen if f"ours:{label}" in contenders]:
        base = next(b for b in ("loop", "camlib", "captum") if f"{b}:{label}" in contenders)
        target_vs = {"loop": TARGET_VS_LOOP, "camlib": TARGET_VS_CAMLIB,
                     "captum": TARGET_VS_CAPTUM}[base][label]
        cosine = (maps_cosine(engine, contenders[f"camlib:{label}"], x) if base == "camlib"
                  else None)
        ours, other = ips(f"ours:{label}"), ips(f"{base}:{label}")
        time_ratio = floor / ours
        vs_other = ours / other
        target_ratio = TARGET_TIME_RATIO.get(label)
        meets = (target_ratio is None or time_ratio <= target_ratio) and (
            target_vs is None or vs_other >= target_vs
        )
        rows.append({
            "model": model_name,
            "batch": batch,
            "device": setup.device.type,
            "dtype": setup.dtype,
            "channels_last": setup.channels_last,
            "method": label,
            "baseline": base,
            "images_per_s": round(ours, 3),
            f"{base}_images_per_s": round(other, 3),
            "floor_images_per_s": round(floor, 3),
            "time_ratio_to_floor": round(time_ratio, 3),
            f"{base}_time_ratio_to_floor": round(floor / other, 3),
            f"speedup_vs_{base}": round(vs_other, 3),
            "target_time_ratio": target_ratio,
            f"target_speedup_vs_{base}": target_vs,
            "meets_target": meets,
            "peak_mem_mb": round(memory[f"ours:{label}"], 1),
            f"{base}_peak_mem_mb": round(memory[f"{base}:{label}"], 1),
            "floor_peak_mem_mb": round(memory["floor"], 1),
            "cosine_to_float32": round(cosines[label], 5) if cosines else None,
            "maps_cosine": None if cosine is None else round(cosine, 5),
            "params": {"samples": args.samples, "steps": args.steps, "patch": args.patch,
                       "stride": args.stride, "size": args.size,
                       "memory_budget_mb": args.memory_budget_mb,
                       "captum_target": args.captum_target},
            "repeats": args.repeats,
            "min_s": round(min(times[f"ours:{label}"]), 4),
            "median_s": round(statistics.median(times[f"ours:{label}"]), 4),
            f"{base}_min_s": round(min(times[f"{base}:{label}"]), 4),
            "floor_min_s": round(min(times["floor"]), 4),
            "time_ratio_to_floor_of_mins": round(
                min(times[f"ours:{label}"]) / min(times["floor"]), 3),
        })
    return rows


def print_table(rows: list[dict]) -> None:
    """The rows; `base` is what each is compared with: Captum, or the attention loop."""
    header = (f"{'model':<10} {'batch':>5} {'dtype':<8} {'method':<20} {'ours/s':>8} "
              f"{'base':>6} {'base/s':>9} {'floor/s':>8} {'t/floor':>8} {'base t/fl':>11} "
              f"{'x base':>8} {'target':>6} {'mem MB':>7} {'base MB':>7} {'fl MB':>6} "
              f"{'cos':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        base = r["baseline"]
        cos = f"{r['cosine_to_float32']:.4f}" if r["cosine_to_float32"] is not None else "-"
        print(f"{r['model']:<10} {r['batch']:>5} {r['dtype']:<8} {r['method']:<20} "
              f"{r['images_per_s']:>8.2f} {base:>6} {r[f'{base}_images_per_s']:>9.2f} "
              f"{r['floor_images_per_s']:>8.2f} {r['time_ratio_to_floor']:>8.3f} "
              f"{r[f'{base}_time_ratio_to_floor']:>11.3f} {r[f'speedup_vs_{base}']:>8.3f} "
              f"{'ok' if r['meets_target'] else 'MISS':>6} {r['peak_mem_mb']:>7.0f} "
              f"{r[f'{base}_peak_mem_mb']:>7.0f} {r['floor_peak_mem_mb']:>6.0f} {cos:>7}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet50,vgg16", help="comma-separated")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per contender")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(AUTOCAST), default="float32")
    parser.add_argument("--fast", action="store_true",
                        help="CUDA only: float16 autocast, channels-last, cuDNN autotuning")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--allocator", choices=("keep", "glibc"), default="keep",
                        help="keep: freed memory stays in the process, as in the worker "
                        "(worker/allocator.py), for every contender; glibc: its defaults")
    parser.add_argument("--methods", default="gradient,guided_backprop,deconvnet,all",
                        help="comma-separated, from " + ",".join(GROUPS))
    parser.add_argument("--samples", type=int, default=10, help="SmoothGrad's samples")
    parser.add_argument("--steps", type=int, default=20, help="Integrated Gradients' steps")
    parser.add_argument("--patch", type=int, default=16, help="occlusion's patch side")
    parser.add_argument("--stride", type=int, default=8, help="occlusion's stride")
    parser.add_argument("--captum-target", choices=("predicted", "given"),
                        default="predicted",
                        help="predicted: Captum's timed call first finds the predicted class "
                        "(one forward pass without gradients), as the engine does for its "
                        "prediction; given: it is handed the class")
    parser.add_argument("--gradcam-baseline", choices=("captum", "pytorch-grad-cam"),
                        default="captum", help="Grad-CAM's contender (see camlib above)")
    parser.add_argument("--memory-budget-mb", type=int, default=None,
                        help="the engine's memory budget (default: its own, from free memory)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the rows here")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fast and args.device != "cuda":
        parser.error("--fast is for --device cuda")
    unknown = sorted(set(args.methods.split(",")) - set(GROUPS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(GROUPS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = Setup(torch.device(args.device), args.dtype, channels_last=False)
    if args.memory_probe:  # the child process of `memory_in_fresh_process`
        with rss_follows_tensors():
            contenders, *_ = build(args.models, int(args.batches), args, setup)
            print(peak_memory_mb(contenders[args.memory_probe], setup))
        return
    if args.fast:
        setup = Setup(torch.device("cuda"), "float16", channels_last=True)
        torch.backends.cudnn.benchmark = True
    kept = args.allocator == "keep" and keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"dtype {setup.dtype}, channels_last {setup.channels_last}, repeats {args.repeats} "
          f"(median time), allocator {'keep' if kept else 'glibc'}", flush=True)
    run_grid(args, lambda model, batch: bench_one(model, batch, args, setup), print_table)


if __name__ == "__main__":
    main()

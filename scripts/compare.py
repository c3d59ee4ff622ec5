#!/usr/bin/env python3
"""Side-by-side encoding throughput: this project (examples/throughput.rs) against open_clip on PyTorch.

The same random-weight ViT-B/32 (exact GELU, and QuickGELU as OpenAI's weights) and RN50 are saved
once as open_clip directories (safetensors) and run by both sides, alternately, for a few rounds, each
run in a fresh process with the same thread count. Reported: items/s (best round), the ratio, each
process's peak resident memory (VmHWM), and on CPUs the share of the cores' fp32 FMA peak each side
reaches, measured by examples/fma_peak.
PyTorch runs in eval mode under `torch.inference_mode()`, float32 unless --dtype says otherwise.

    python3 scripts/compare.py                         # CPU, 2 threads, batch 16
    python3 scripts/compare.py --device cuda --backend cuda --dtype bf16 --batch 256 --text-batch 256

Without torch/open_clip the PyTorch side is skipped (with a message) and the project runs on
random weights from its presets. Prints a Markdown table; --json FILE writes the raw runs.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ViT-B/32 with QuickGELU is the architecture of OpenAI's pretrained ViT-B/32 (open_clip's plain config
# uses exact GELU); it gets a directory and random weights of its own, like the others
MODELS = {"ViT-B/32": "ViT-B-32", "ViT-B/32-quickgelu": "ViT-B-32-quickgelu", "ViT-L/14": "ViT-L-14", "RN50": "RN50"}


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def torch_worker(a):
    """One timed run on PyTorch; prints one JSON line."""
    import open_clip
    import torch

    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    model, _, _ = open_clip.create_model_and_transforms(MODELS[a.preset], pretrained=None)
    if a.model:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(a.model) / "open_clip_model.safetensors")))
    # half precision as PyTorch users run it: torch.autocast over f32 weights (--torch-half autocast), or
    # the weights themselves cast (--torch-half cast, as `model.half()`)
    autocast = a.dtype != "f32" and a.torch_half == "autocast"
    model = model.eval().to(device=device, dtype=torch.float32 if autocast else dtype)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(a.batch, 3, size, size, generator=gen).to(device=device, dtype=torch.float32 if autocast else dtype)
    classes = open_clip.IMAGENET_CLASSNAMES
    prompts = [f"a photo of a {classes[i % len(classes)]}." for i in range(a.batch)]
    ids = open_clip.get_tokenizer(MODELS[a.preset])(prompts).to(device)

    import contextlib

    if a.task == "train-step":
        return torch_train_worker(a, model, images, ids, device, dtype, autocast)

    def step():
        ctx = torch.autocast(device.type, dtype=dtype) if autocast else contextlib.nullcontext()
        with ctx:
            if a.task == "image":
                out = model.encode_image(images)
            else:
                out = model.encode_text(ids)
        out.float().cpu()

    with torch.inference_mode():
        for _ in range(a.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(a.iters):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / a.iters
    report = {
        "side": "pytorch",
        "backend": f"torch {torch.__version__} {a.device}",
        "dtype": a.dtype + (" autocast" if autocast else ""),
        "task": a.task,
        "batch": a.batch,
        "seconds_per_batch": seconds,
        "items_per_s": a.batch / seconds,
        "peak_rss_mib": peak_rss_mib(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        report["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(report))


def torch_train_worker(a, model, images, ids, device, dtype, autocast):
    """One timed training step on PyTorch as open_clip's trainer runs it (ClipLoss, AdamW, backward;
    torch.autocast for bf16/f16); prints one JSON line."""
    import contextlib

    import open_clip
    import torch

    model.train()
    loss_fn = open_clip.loss.ClipLoss()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        ctx = torch.autocast(device.type, dtype=dtype) if autocast else contextlib.nullcontext()
        with ctx:
            image, text = model.encode_image(images), model.encode_text(ids)
            loss = loss_fn(image, text, model.logit_scale.exp())
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(a.iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / a.iters
    report = {"side": "pytorch", "backend": f"torch {torch.__version__} {a.device}",
              "dtype": a.dtype + (" autocast" if autocast else ""), "task": a.task, "batch": a.batch,
              "seconds_per_batch": seconds, "items_per_s": a.batch / seconds, "peak_rss_mib": peak_rss_mib()}
    if device.type == "cuda":
        report["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(report))


def save_models(cache, presets):
    """Random-init open_clip models saved as open_clip directories, once (those of `presets`)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    dirs = {}
    for preset, name in MODELS.items():
        if preset not in presets:
            continue
        d = cache / name
        dirs[preset] = d
        if (d / "open_clip_model.safetensors").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = open_clip.create_model(name, pretrained=None)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(sd, d / "open_clip_model.safetensors")
        cfg = open_clip.get_model_config(name)
        (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}, indent=2))
    return dirs


def flops_per_item(preset, task):
    """Multiply-add work of one item (2 FLOPs each). Transformers are counted from the config (PyTorch's
    FlopCounterMode misses the fused attention fast path); ResNets by FlopCounterMode."""
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = open_clip.get_model_config(MODELS[preset])

    def transformer(tokens, width, layers):
        # q, k, v, out (4 w²) and the MLP (8 w²) per token; scores and weighted sum (2 n² w)
        return layers * (tokens * 12 * width * width + 2 * tokens * tokens * width)

    if task == "text":
        t = cfg["text_cfg"]
        macs = transformer(t.get("context_length", 77), t["width"], t["layers"]) + t["width"] * cfg["embed_dim"]
        return 2 * macs
    v = cfg["vision_cfg"]
    if not isinstance(v["layers"], int):  # ModifiedResNet
        model = open_clip.create_model(MODELS[preset], pretrained=None).eval()
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model.encode_image(torch.zeros(1, 3, v["image_size"], v["image_size"]))
        return counter.get_total_flops()
    grid = v["image_size"] // v["patch_size"]
    patches = grid * grid * 3 * v["patch_size"] ** 2 * v["width"]
    macs = patches + transformer(grid * grid + 1, v["width"], v["layers"]) + v["width"] * cfg["embed_dim"]
    return 2 * macs


def nominal_peak_gflops(threads):
    """fp32 FMA peak of `threads` cores at the nominal clock: 2 FMA units × 16 lanes (AVX-512) or × 8 (AVX2).

    AMD's Zen 4 (family 25 with AVX-512) runs 512-bit FMAs on its two 256-bit units, at half the rate of
    Intel's and Zen 5's full-width ones, so its peak is the AVX2 one."""
    mhz, flags, vendor, family = None, "", "", None
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "cpu MHz" and mhz is None:
                mhz = float(value)
            elif key == "flags" and not flags:
                flags = f" {value} "
            elif key == "vendor_id" and not vendor:
                vendor = value
            elif key == "cpu family" and family is None:
                family = int(value)
    if mhz is None:
        return None
    zen4 = vendor == "AuthenticAMD" and family == 25
    lanes = 16 if " avx512f " in flags and not zen4 else 8
    return threads * mhz / 1000 * 2 * lanes * 2


def measured_peak_gflops(binary, threads, repeats=3):
    """The FMA rate `threads` cores sustain, from examples/fma_peak (16 independent FMA chains per
    thread in the CPU's widest vectors, all threads at once); None when that binary is missing.
    Best of `repeats` readings: anything else running at the same time can only lower one. It is called
    before this process runs anything on PyTorch, whose OpenMP threads spin for a while after each op
    and took a core from a reading made after the RN50 FLOP count (146 against 228 GFLOP/s)."""
    if not binary.exists():
        return None
    readings = []
    for _ in range(repeats):
        out = subprocess.run([str(binary), "--threads", str(threads)], capture_output=True, text=True)
        if out.returncode != 0:
            return None
        readings.append(json.loads(out.stdout.strip().splitlines()[-1])["gflops"])
    return max(readings)


def gpu_memory_used_mib():
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True)
    return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None


def run_json(cmd, env, gpu=False):
    """Runs one worker; its JSON line, or None (with its error printed) when it failed. On a GPU the
    device memory in use is sampled while it runs (the same way for both sides)."""
    baseline = gpu_memory_used_mib() if gpu else None
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    if baseline is not None:
        while proc.poll() is None:
            used = gpu_memory_used_mib()
            peak = max(peak, (used or 0.0) - baseline)
            time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0 or not stdout.strip():
        print(f"{' '.join(map(str, cmd))} failed:\n{stderr[-2000:]}", file=sys.stderr)
        return None
    rec = json.loads(stdout.strip().splitlines()[-1])
    if baseline is not None:
        rec["peak_gpu_sampled_mib"] = peak
    return rec


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="image batch")
    p.add_argument("--text-batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="PyTorch device: cpu or cuda")
    p.add_argument("--backend", default="flex", help="the project's backend: flex, ndarray, wgpu, cuda")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    p.add_argument("--batches", help="comma-separated batch sizes for every case (overrides --batch and --text-batch)")
    p.add_argument("--torch-half", default="autocast", choices=["autocast", "cast"],
                   help="PyTorch in bf16/f16: torch.autocast over f32 weights, or the weights cast")
    p.add_argument("--binary", help="a built examples/throughput (default: cargo builds it)")
    p.add_argument("--cache", default="/tmp/clip-compare", help="where the random models are saved")
    p.add_argument("--json", help="write every run here")
    p.add_argument("--only", help="comma-separated subset: vit-image, vit-text, vit-quickgelu-image, vitl-image, "
                   "rn50-image, vit-train (a training step, ViT-B/32, random weights)")
    # worker mode
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--preset", default="ViT-B/32", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--task", default="image", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.torch_worker:
        return torch_worker(a)

    try:
        import open_clip  # noqa: F401
        import torch  # noqa: F401

        have_torch = True
    except ImportError as e:
        print(f"PyTorch side skipped: {e} (pip install torch open_clip_torch safetensors)", file=sys.stderr)
        have_torch = False

    binary = a.binary
    if binary is None:
        features = {"flex": [], "ndarray": ["ndarray"], "wgpu": ["wgpu"], "cuda": ["cuda"]}[a.backend]
        cmd = ["cargo", "build", "--release", "--example", "throughput", "--example", "fma_peak"]
        if features:
            cmd += ["--features", ",".join(features)]
        subprocess.run(cmd, cwd=ROOT, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        binary = str(target / "release" / "examples" / "throughput")

    # first, while no PyTorch thread of this process is spinning
    nominal = nominal_peak_gflops(a.threads) if a.device == "cpu" else None
    measured = measured_peak_gflops(Path(binary).with_name("fma_peak"), a.threads) if a.device == "cpu" else None
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    cases = [
        ("vit-image", "ViT-B/32", "image", a.batch),
        ("vit-text", "ViT-B/32", "text", a.text_batch),
        ("vit-quickgelu-image", "ViT-B/32-quickgelu", "image", a.batch),
        ("rn50-image", "RN50", "image", a.batch),
        ("vitl-image", "ViT-L/14", "image", a.batch),
        ("vit-train", "ViT-B/32", "train-step", a.batch),
    ]
    if a.only:
        only = {k.strip() for k in a.only.split(",")}
        unknown = only - {c[0] for c in cases}
        if unknown:
            sys.exit(f"--only: unknown case(s) {sorted(unknown)}; known: {[c[0] for c in cases]}")
        cases = [c for c in cases if c[0] in only]
    else:
        cases = [c for c in cases if c[0] not in ("vitl-image", "vit-train")]  # on request (slow on CPUs)
    if a.batches:
        # batch-major, in the order given: a run stopped by a time cap has every model at the first batches
        cases = [(k, p_, t, int(b)) for b in a.batches.split(",") for k, p_, t, _ in cases]
    dirs = save_models(Path(a.cache), {c[1] for c in cases}) if have_torch else {}
    common = ["--iters", str(a.iters), "--warmup", str(a.warmup), "--dtype", a.dtype]
    runs = []
    gpu = a.device != "cpu"
    for r in range(a.rounds):
        for key, preset, task, batch in cases:
            model = ["--model", str(dirs[preset])] if preset in dirs and task != "train-step" else ["--preset", preset]
            tasks = [task, "text-trimmed"] if task == "text" else [task]
            for t in tasks:
                cmd = [binary, "--backend", a.backend, "--task", t, "--batch", str(batch)] + common
                if not gpu:
                    # the batch split over the cores (Clip::encode_*_threaded); PyTorch gets as many
                    cmd += ["--threads", str(a.threads)]
                rec = run_json(cmd + model, env, gpu)
                if rec is None and model[0] == "--model":
                    # e.g. a dtype the weight loader cannot convert to: the same architecture, random
                    rec = run_json(cmd + ["--preset", preset], env, gpu)
                if rec is None:
                    continue
                rec.update(case=key, round=r, preset=preset, task=t)
                runs.append(rec)
                if a.json:  # written as it goes: a run stopped by a timeout keeps what it measured
                    Path(a.json).write_text(json.dumps(runs, indent=1))
                print(f"round {r} {preset} {t}: burn {rec['items_per_s']:.2f}/s", file=sys.stderr)
            if have_torch:
                cmd = [sys.executable, __file__, "--torch-worker", "--preset", preset, "--task", task,
                       "--batch", str(batch), "--threads", str(a.threads), "--device", a.device,
                       "--torch-half", a.torch_half, "--model", str(dirs[preset])] + common
                rec = run_json(cmd, env, gpu)
                if rec is None:
                    continue
                rec.update(case=key, round=r, preset=preset)
                runs.append(rec)
                if a.json:
                    Path(a.json).write_text(json.dumps(runs, indent=1))
                print(f"round {r} {preset} {task}: pytorch {rec['items_per_s']:.2f}/s", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1))

    flops = {}
    if have_torch:
        for key, preset, task, batch in cases:
            if task != "train-step":
                flops[(preset, task)] = flops_per_item(preset, task)
    peak = measured or nominal

    def best(side, preset, task, batch):
        rs = [x for x in runs if x["side"] == side and x["preset"] == preset and x["task"] == task
              and x["batch"] == batch]
        return max(rs, key=lambda x: x["items_per_s"]) if rs else None

    print(f"\n{a.threads} threads, {a.dtype}, best of {a.rounds} rounds × {a.iters} batches; "
          f"project backend {a.backend}, PyTorch device {a.device}\n")
    if measured:
        print(f"Measured fp32 FMA peak of {a.threads} cores: {measured:.0f} GFLOP/s (examples/fma_peak); "
              f"the nominal clock would give {nominal or 0:.0f}.\n")
    elif nominal:
        print(f"Nominal fp32 FMA peak of {a.threads} cores: {nominal:.0f} GFLOP/s (clock from /proc/cpuinfo; "
              "examples/fma_peak not found next to the binary).\n")
    print("| model | task | batch | project items/s | PyTorch items/s | ratio | project peak MiB | PyTorch peak MiB "
          "| GFLOP/item | project % of peak | PyTorch % of peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, preset, task, batch in cases:
        t = best("pytorch", preset, task, batch)
        for ours_task in ([task, "text-trimmed"] if task == "text" else [task]):
            o = best("burn", preset, ours_task, batch)
            if o is None:
                continue
            label = {"image": "image", "text": "text ×77", "text-trimmed": "text, padding trimmed",
                     "train-step": "training step"}[ours_task]
            tps = f"{t['items_per_s']:.2f}" if t else "—"
            ratio = f"{o['items_per_s'] / t['items_per_s']:.2f}×" if t else "—"
            tmem = f"{t['peak_rss_mib']:.0f}" if t else "—"
            omem = f"{o['peak_rss_mib']:.0f}"
            if gpu:
                omem += f" (GPU {o.get('peak_gpu_sampled_mib', 0):.0f})"
                tmem += f" (GPU {t.get('peak_gpu_sampled_mib', 0):.0f})" if t else ""
            f = flops.get((preset, task))
            gf = f"{f / 1e9:.2f}" if f else "—"
            # trimmed text does less work than the 77-token count: its share of peak is not comparable
            ours_pct = f"{o['items_per_s'] * f / 1e9 / peak * 100:.0f} %" if f and peak and ours_task != "text-trimmed" else "—"
            t_pct = f"{t['items_per_s'] * f / 1e9 / peak * 100:.0f} %" if f and peak and t else "—"
            print(f"| {preset} | {label} | {batch} | {o['items_per_s']:.2f} | {tps} | {ratio} | "
                  f"{omem} | {tmem} | {gf} | {ours_pct} | {t_pct} |")


if __name__ == "__main__":
    main()

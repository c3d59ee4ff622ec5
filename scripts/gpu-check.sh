#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU, in at most 8 minutes (each step has a time cap; a step that
# runs out keeps what it measured), building nothing there:
#   1. parity: the open_clip / transformers references on the cuda and wgpu backends (f32), bf16 on cuda
#      and f16 on cuda and wgpu against open_clip under torch.autocast (tests/precision_*.rs);
#   2. throughput against open_clip on PyTorch, paired in one run (scripts/compare.py): ViT-B/32 image
#      and text, ViT-L/14 image, RN50 image, at batch 1, 32 and 256, in f32 and bf16 (PyTorch: eval,
#      inference_mode, torch.autocast for bf16), with each side's peak GPU memory.
#   3. a training step (ViT-B/32, batch 128, random weights: both towers, CLIP's loss, backward, AdamW)
#      against open_clip's (ClipLoss, torch.optim.AdamW), in f32 and bf16 (not like for like: burn's bf16
#      is pure bf16, weights and optimizer state; PyTorch's is autocast over f32 weights).
#   4. the data path: images/s from tensors and from JPEG files (decoded on a pool of all cores).
# Caps: parity 80 + 40 + 40 s, throughput 2 × 95 s, training 2 × 40 s, data path 2 × 20 s: 470 s, plus
# the summary.
#
#   scripts/gpu-check.sh --build DIR   build the programs here (no GPU needed) into DIR, and pack them
#                                      into DIR.tar.xz (about 24 MB: one large xz dictionary shares the
#                                      code the four programs have in common)
#   scripts/gpu-check.sh DIR           run the checks with the programs in DIR
#   scripts/gpu-check.sh DIR.tar.xz    unpack them first (to /tmp), then run
#
# Results go to $OUT (default ./gpu-check-out): summary.md, summary.json and logs.tar.gz (every log).
# The PyTorch side needs torch (on the machine) and open_clip_torch: wheels in .whl/ are installed to
# /tmp/site first (pip download --no-deps open_clip_torch ftfy wcwidth into .whl/).
# The CUDA backend compiles its kernels at run time with NVRTC: the script looks for libnvrtc.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FEATURES=flex,cuda,wgpu,exact-jpeg  # exact-jpeg: the parity tests check preprocessing from JPEG files
TESTS="parity precision_bf16 precision_f16"

build() {
    local dir=$1
    mkdir -p "$dir"
    # no bundled model: the binaries stay small enough to carry
    local args=(--release --no-default-features --features $FEATURES)
    for t in $TESTS; do args+=(--test "$t"); done
    cargo test "${args[@]}" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])' >"$dir/.tests" || return 1
    cargo build --release --no-default-features --features $FEATURES --example throughput || return 1
    while read -r name path; do cp "$path" "$dir/$name"; done <"$dir/.tests"
    cp "${CARGO_TARGET_DIR:-target}/release/examples/throughput" "$dir/throughput"
    strip "$dir"/*
    rm "$dir/.tests"
    tar cf - -C "$(dirname "$dir")" "$(basename "$dir")" | xz -9 --lzma2=preset=9,dict=256MiB >"$dir.tar.xz"
    ls -la "$dir" "$dir.tar.xz"
}

if [ "${1:-}" = "--build" ]; then
    build "${2:?a directory}"
    exit
fi
BIN=${1:?the directory of the programs built with --build, or its .tar.xz}
if [ -f "$BIN" ]; then
    tar xJf "$BIN" -C /tmp || exit 1
    BIN=/tmp/$(basename "$BIN" .tar.xz)
fi
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
rm -f "$OUT"/*
start=$SECONDS

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
# NVRTC from the CUDA toolkit or from PyTorch's wheels
nvrtc=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | sort | head -1)
[ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "nvrtc: ${nvrtc:-not found}" | tee -a "$OUT/gpu.txt"
# the tests were built elsewhere: point them at this checkout's fixtures
export CLIP_FIXTURES=$ROOT/fixtures

{
    echo "== parity, f32: cuda and wgpu"
    timeout 80 "$BIN/parity" --test-threads 1 --nocapture cuda:: wgpu::
    echo "== bf16: cuda (wgpu has none: the refusal is checked)"
    timeout 40 "$BIN/precision_bf16" --test-threads 1 --nocapture cuda_ wgpu_
    echo "== f16: cuda and wgpu"
    timeout 40 "$BIN/precision_f16" --test-threads 1 --nocapture cuda_ wgpu_
} 2>&1 | tee "$OUT/parity.log"

for dtype in ${DTYPES:-f32 bf16}; do
    echo "== throughput, $dtype ($((SECONDS - start)) s in)"
    PYTHONUNBUFFERED=1 timeout 95 python3 scripts/compare.py --binary "$BIN/throughput" --device cuda \
        --backend cuda --dtype "$dtype" --torch-half autocast --batches "${BATCHES:-256,32,1}" \
        --only vit-image,vit-text,rn50-image,vitl-image --rounds 1 --iters 5 --warmup 2 \
        --threads "$(nproc)" --json "$OUT/compare-$dtype.json" 2>&1 | tee "$OUT/compare-$dtype.md"
done
for dtype in ${DTYPES:-f32 bf16}; do
    echo "== training step, ViT-B/32, batch 128, $dtype ($((SECONDS - start)) s in)"
    PYTHONUNBUFFERED=1 timeout 40 python3 scripts/compare.py --binary "$BIN/throughput" --device cuda \
        --backend cuda --dtype "$dtype" --torch-half autocast --batches 128 --only vit-train \
        --rounds 1 --iters 3 --warmup 1 --threads "$(nproc)" --json "$OUT/compare-train-$dtype.json" 2>&1 |
        tee "$OUT/compare-train-$dtype.md"
done

# the data path: ViT-B/32 f32 at batch 256 from tensors, then from JPEG files decoded on all cores
mkdir -p /tmp/gpucheck-jpegs
for i in $(seq 1 128); do
    cp fixtures/images/chelsea.jpg "/tmp/gpucheck-jpegs/c$i.jpg"
    cp fixtures/images/rocket.jpg "/tmp/gpucheck-jpegs/r$i.jpg"
done
{
    echo "== data path, ViT-B/32 f32 batch 256 ($((SECONDS - start)) s in)"
    timeout 20 "$BIN/throughput" --backend cuda --task image --batch 256 --iters 4 --warmup 1
    timeout 20 "$BIN/throughput" --backend cuda --task files --files /tmp/gpucheck-jpegs --batch 256 \
        --iters 4 --warmup 1
} 2>&1 | tee "$OUT/datapath.log"

python3 - "$OUT" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
gpu = (out / "gpu.txt").read_text()
parity = (out / "parity.log").read_text()
results = re.findall(r"^test (\S+) \.\.\. (ok|FAILED)", parity, re.M)
summary = {"gpu": gpu, "tests": dict(results), "throughput": {}}
md = ["# gpu-check", "", "```", gpu.strip(), "```", "", "## Parity", "",
      "| test | result |", "|---|---|"] + [f"| {t} | {r} |" for t, r in results]
for f in sorted(out.glob("compare-*.json")):
    dtype = f.stem.split("-", 1)[1]  # bf16, f32, train-bf16, train-f32
    summary["throughput"][dtype] = json.loads(f.read_text())
    table = [l for l in (out / f"compare-{dtype}.md").read_text().splitlines() if l.startswith("|")]
    md += ["", f"## Throughput, {dtype}", ""] + table
datapath = [json.loads(l) for l in (out / "datapath.log").read_text().splitlines() if l.startswith("{")]
summary["datapath"] = datapath
md += ["", "## Data path (ViT-B/32, f32, batch 256)", "", "| input | images/s |", "|---|---|"] + [
    f"| {d.get('task')} | {d.get('items_per_s', 0):.1f} |" for d in datapath]
(out / "summary.json").write_text(json.dumps(summary, indent=1))
(out / "summary.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
PY
# the device tool brings back at most 8 files: the summaries, and the logs in one archive
(cd "$OUT" && tar czf logs.tar.gz --exclude summary.md --exclude summary.json --exclude logs.tar.gz -- * &&
    find . -maxdepth 1 -type f ! -name 'summary.*' ! -name logs.tar.gz -delete)
echo "gpu-check: $((SECONDS - start)) s"

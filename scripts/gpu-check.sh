#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU, in about 10 minutes:
#   1. the parity tests (open_clip / transformers references) on the cuda and wgpu backends;
#   2. the throughput comparison with open_clip on PyTorch at batch 256, in bf16 (DTYPES="bf16 f32"
#      adds f32).
#
#   scripts/gpu-check.sh --build DIR   build the two programs here (no GPU needed) into DIR
#   scripts/gpu-check.sh DIR           run the checks with the programs in DIR
#   scripts/gpu-check.sh               build with cargo, then run
#
# Results go to $OUT (default ./gpu-check-out): parity.log, compare-*.md, compare-*.json.
# The CUDA backend compiles its kernels at run time with NVRTC: the script looks for libnvrtc.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FEATURES=flex,cuda,wgpu

build() {
    local dir=$1
    mkdir -p "$dir"
    # no bundled model: the binaries stay small enough to carry
    cargo test --release --no-default-features --features $FEATURES --test parity --no-run \
        --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="parity" and m.get("executable"):
        print(m["executable"])' >"$dir/.parity-path" || return 1
    cargo build --release --no-default-features --features $FEATURES --example throughput || return 1
    cp "$(cat "$dir/.parity-path")" "$dir/parity"
    cp "${CARGO_TARGET_DIR:-target}/release/examples/throughput" "$dir/throughput"
    strip "$dir/parity" "$dir/throughput"
    rm "$dir/.parity-path"
    ls -la "$dir"
}

if [ "${1:-}" = "--build" ]; then
    build "${2:?a directory}"
    exit
fi
BIN=${1:-}
if [ -z "$BIN" ]; then
    BIN=$ROOT/target/gpu-check
    build "$BIN" || exit 1
fi
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
# NVRTC from the CUDA toolkit or from PyTorch's wheels
nvrtc=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | sort | head -1)
[ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "nvrtc: ${nvrtc:-not found}" | tee -a "$OUT/gpu.txt"
# the tests were built elsewhere: point them at this checkout's fixtures
export CLIP_FIXTURES=$ROOT/fixtures

echo "== parity on cuda and wgpu" | tee "$OUT/parity.log"
timeout 150 "$BIN/parity" --test-threads 1 --nocapture cuda:: wgpu:: 2>&1 | tee -a "$OUT/parity.log"

for dtype in ${DTYPES:-bf16}; do
    echo "== throughput, $dtype"
    PYTHONUNBUFFERED=1 timeout 300 python3 scripts/compare.py --binary "$BIN/throughput" --device cuda \
        --backend cuda --dtype $dtype --batch 256 --text-batch 256 --rounds 1 --iters 10 --threads "$(nproc)" \
        --json "$OUT/compare-$dtype.json" 2>&1 | tee "$OUT/compare-$dtype.md"
done

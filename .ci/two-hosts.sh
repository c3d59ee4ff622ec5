#!/usr/bin/env bash
# Data-parallel training across two hosts: two network namespaces joined by a veth pair (10.77.0.1 and
# 10.77.0.2), rank 0 on one, rank 1 on the other, MASTER_ADDR the first; each rank finds the address it is
# reached at by itself. The two-host run must take exactly the steps of one process splitting the batch
# over two threads (the same split, the same sums: the same losses to the last bit).
# Usage: .ci/two-hosts.sh [path to the clip binary] (default target/debug/clip). Needs root (ip netns).
set -euo pipefail
BIN=$(realpath "${1:-target/debug/clip}")
work=$(mktemp -d)
rank1=""
cleanup() {
  if [ -n "$rank1" ]; then kill "$rank1" 2>/dev/null || true; fi
  ip netns del clip-h0 2>/dev/null || true
  ip netns del clip-h1 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup; work=$(mktemp -d)
# a machine that does not let this user create network namespaces and veth pairs cannot run the check:
# it says so and passes; the training comparison below is what must not fail
hosts() {
  ip netns add clip-h0 || return 1
  ip netns add clip-h1 || return 1
  ip link add clip-v0 type veth peer name clip-v1 || return 1
  ip link set clip-v0 netns clip-h0 || return 1
  ip link set clip-v1 netns clip-h1 || return 1
  ip -n clip-h0 addr add 10.77.0.1/24 dev clip-v0 || return 1
  ip -n clip-h1 addr add 10.77.0.2/24 dev clip-v1 || return 1
  ip -n clip-h0 link set lo up || return 1
  ip -n clip-h1 link set lo up || return 1
  ip -n clip-h0 link set clip-v0 up || return 1
  ip -n clip-h1 link set clip-v1 up || return 1
}
if ! hosts; then
  echo "two-hosts: cannot create network namespaces and a veth pair here (needs root and CAP_NET_ADMIN); check skipped" >&2
  exit 0
fi

fashion=$(realpath "$(dirname "$0")/../fixtures/fashion-mnist")
config() { # output threads
  cat <<TOML
output = "$work/$1"
seed = 5
steps = 3
batch_size = 16
accumulation = 1
lr = 3e-3
warmup_steps = 1
weight_decay = 0.2
beta1 = 0.9
beta2 = 0.98
eps = 1e-6
grad_clip_norm = 1.0
checkpoint_every = 1000
eval_every = 0
eval_samples = 100
lock_image = false
lock_text = false
patch_dropout = 0.0
threads = $2
half_precision_model = false
[loss]
kind = "info_nce"
lambda = 0.5
label_smoothing = 0.0
[data]
kind = "fashion_scenes"
dir = "$fashion"
[augment]
brightness = 0.2
contrast = 0.2
[model]
embed_dim = 32
projection_bias = false
[model.vision]
type = "vit"
image_size = 24
patch_size = 8
width = 32
layers = 1
heads = 1
mlp_ratio = 2.0
activation = "gelu"
[model.text]
context_length = 24
vocab_size = 49408
width = 32
heads = 1
layers = 1
mlp_ratio = 2.0
activation = "gelu"
TOML
}
config one 2 > "$work/one.toml"
config two 1 > "$work/two.toml"
"$BIN" train --config "$work/one.toml" > /dev/null
ip netns exec clip-h1 env RANK=1 WORLD_SIZE=2 MASTER_ADDR=10.77.0.1 MASTER_PORT=29500 \
  "$BIN" train --config "$work/two.toml" --collective-timeout 60 > /dev/null &
rank1=$!
ip netns exec clip-h0 env RANK=0 WORLD_SIZE=2 MASTER_ADDR=10.77.0.1 MASTER_PORT=29500 \
  "$BIN" train --config "$work/two.toml" --collective-timeout 60 > /dev/null
wait $rank1
losses() { grep -o '"loss": *[-0-9.e+]*' "$1" | tr -d ' ' | tr '\n' ' '; }
one=$(losses "$work/one/report.json")
two=$(losses "$work/two/report.json")
echo "one process, two threads: $one"
echo "two hosts, one rank each:  $two"
[ "$one" = "$two" ] || { echo "the two-host run took other steps" >&2; exit 1; }

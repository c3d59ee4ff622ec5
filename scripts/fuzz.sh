#!/usr/bin/env bash
# Fuzzes each target in fuzz/ for SECONDS (default 600) with cargo fuzz (libFuzzer, nightly), seeding its
# corpus from the fixtures, and prints libFuzzer's last status line per target. Crashes land in
# fuzz/artifacts/TARGET/; each one found is fixed and its input kept as a regression test.
#
#   cargo install cargo-fuzz        # once
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer config_json image_decode state_dict captions tar_shard search_db)
cd "$root/fuzz"
mkdir -p corpus logs
seed() { # target, files... (named after their folder too: fixtures hold many config.json)
  local target=$1; shift
  mkdir -p "corpus/$target"
  for f in "$@"; do
    [ -f "$f" ] && cp "$f" "corpus/$target/$(basename "$(dirname "$f")")-$(basename "$f")" || true
  done
}
# the tokenizer's seeds: the first 300 lines of the tokenizer corpus, one per file
mkdir -p corpus/tokenizer
head -n 300 "$root/fixtures/tokenizer_corpus.jsonl" | split -l 1 - corpus/tokenizer/line-
seed config_json "$root"/fixtures/*/config.json "$root"/fixtures/*/*/config.json \
  "$root"/fixtures/*/open_clip_config.json "$root"/fixtures/*/*/open_clip_config.json \
  "$root"/fixtures/*/preprocessor_config.json "$root"/fixtures/*/*/preprocessor_config.json
seed image_decode "$root"/fixtures/images/* "$root"/fixtures/jpeg/*.jpg
# state_dict reads its first byte as the file name's choice (0: .safetensors, 1: .bin, 2: .pt)
mkdir -p corpus/state_dict
for f in "$root"/fixtures/*/*.safetensors "$root"/fixtures/*/*/*.safetensors; do
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 2000000 ] || continue
  { printf '\x00'; cat "$f"; } > "corpus/state_dict/$(basename "$(dirname "$f")")-$(basename "$f")"
done
for f in "$root"/fixtures/torchscript/*.pt "$root"/fixtures/*/*.bin; do
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 2000000 ] || continue
  { printf '\x02'; cat "$f"; } > "corpus/state_dict/$(basename "$f")"
done
# captions: the first byte picks CSV (0) or JSONL (1)
mkdir -p corpus/captions
printf '\x00image,caption\nchelsea.jpg,a cat\n"b/c.png","a cup, of ""coffee"""\n' > corpus/captions/csv
printf '\x01{"image": "chelsea.jpg", "caption": "a cat"}\n\n{"image": "b.png", "caption": "caf\\u00e9"}\n' > corpus/captions/jsonl
# tar shards: a webdataset shard of fixture images with captions, and one with a member missing
mkdir -p corpus/tar_shard
shard=$(mktemp -d)
cp "$root/fixtures/jpeg/tiny_3x5.png" "$shard/0001.png"; echo "a cup of coffee" > "$shard/0001.txt"
cp "$root/fixtures/jpeg/baseline_420_q75.jpg" "$shard/0002.jpg"; echo "a photo" > "$shard/0002.txt"
echo "no image" > "$shard/0003.txt"
(cd "$shard" && tar --format=gnu -cf "$root/fuzz/corpus/tar_shard/shard.tar" 0001.png 0001.txt 0002.jpg 0002.txt 0003.txt 2>/dev/null) || true
rm -rf "$shard"
# the search database and its approximate index, as `clip index --ann` writes them (with the clip
# binary of a debug build, if there is one); the first byte picks the database (0) or the index (1)
mkdir -p corpus/search_db
if [ -x "$root/target/debug/clip" ]; then
  db=$(mktemp -d)
  mkdir "$db/photos"; cp "$root/fixtures/images/"*.png "$db/photos/" 2>/dev/null || true
  "$root/target/debug/clip" index "$db/photos" --db "$db/index.sqlite3" --ann >/dev/null 2>&1 || true
  "$root/target/debug/clip" index "$db/photos" --db "$db/index.sqlite3" >/dev/null 2>&1 || true
  [ -f "$db/index.sqlite3" ] && { printf '\x00'; cat "$db/index.sqlite3"; } > corpus/search_db/db
  [ -f "$db/index.sqlite3.usearch" ] && { printf '\x01'; cat "$db/index.sqlite3.usearch"; } > corpus/search_db/usearch
  rm -rf "$db"
fi
# inputs up to: a long text, a large config, an image or a weights file of a few hundred KB
max_len() { case $1 in tokenizer) echo 16384 ;; config_json | captions) echo 65536 ;; *) echo 1048576 ;; esac; }
for target in "${targets[@]}"; do
  echo "== $target: $(ls "corpus/$target" | wc -l) seeds, $seconds s"
  cargo +nightly fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -max_len="$(max_len "$target")" -print_final_stats=1 \
    > "logs/$target.log" 2>&1 || echo "   $target stopped with an error: see fuzz/logs/$target.log"
  grep -E "^#[0-9]+ +(DONE|pulse)" "logs/$target.log" | tail -1 || true
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|panicked" "logs/$target.log" | head -5 || true
done

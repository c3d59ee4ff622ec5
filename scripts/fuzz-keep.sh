#!/usr/bin/env bash
# Keeps what the fuzzers found for the stable tests: minimizes each target's corpus (cargo fuzz cmin:
# the inputs that reach code no other input reaches) and packs its inputs of at most 64 KB (8 KB for
# the image and weight-file targets, whose inputs do not compress) into
# fuzz/regressions/TARGET/corpus.tar.gz, which crates/clip-cli/tests/fuzz_corpus.rs replays with the
# crash inputs kept beside it (crash-*). Run after scripts/fuzz.sh.
#
#   scripts/fuzz-keep.sh [TARGET ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer config_json image_decode state_dict captions tar_shard search_db)
cd "$root/fuzz"
for target in "${targets[@]}"; do
  [ -d "corpus/$target" ] || { echo "no corpus/$target: run scripts/fuzz.sh first" >&2; exit 1; }
  cargo +nightly fuzz cmin --sanitizer none "$target" "corpus/$target" -- -rss_limit_mb=4096 \
    > "logs/$target.cmin.log" 2>&1
  case $target in image_decode | state_dict) max=8k ;; *) max=64k ;; esac
  mkdir -p "regressions/$target"
  # sorted names, no owners or times: the same corpus packs to the same bytes
  (cd "corpus/$target" && find . -type f -size "-$((${max%k} + 1))k" | sort |
    tar --format=gnu --owner=0 --group=0 --mtime=@0 -cf - -T -) | gzip -9n \
    > "regressions/$target/corpus.tar.gz"
  echo "$target: $(ls "corpus/$target" | wc -l) inputs after cmin, $(tar -tzf "regressions/$target/corpus.tar.gz" | wc -l) kept ($(stat -c %s "regressions/$target/corpus.tar.gz") bytes packed)"
done

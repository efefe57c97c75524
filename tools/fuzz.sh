#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of every parser a file or a request reaches.
#
#   tools/fuzz.sh TARGET [SECONDS]   campaign on one target (default 600 s); TARGET: gguf hf tokenizer image
#   tools/fuzz.sh all [SECONDS]      each target in turn, SECONDS each
#   tools/fuzz.sh --smoke            build, then each target ~10 s over its committed seeds (CI; non-zero on a finding)
#   tools/fuzz.sh --build            build only
#   tools/fuzz.sh --seeds            regenerate the seeds in tools/fuzz/corpus (synthetic ones: tools/fuzz/seeds/Seeds.swift)
#   VZQ_FUZZ_RUNS=N                  a campaign stops after N executions instead of SECONDS
#   VZQ_FUZZ_ARGS="..."              extra libFuzzer flags for campaigns
#   VZQ_FUZZ_REV=REV                 build Sources/ and CQuant/ as of a commit (git archive) instead of the working tree
# Output goes to .build-fuzz/logs/TARGET.log; the final statistics are printed. Findings: .build-fuzz/findings/TARGET/.
#
# One binary, .build-fuzz/vzq-fuzz, holds all five targets; VZQ_FUZZ_TARGET picks one at start-up:
#   gguf       GGUF reader (every tensor, every typed metadata getter), then what the model constructors read:
#              LlamaConfig, VisionConfig, Tokenizer(gguf:) + chat template, and for small files LlamaModel
#              (prefill/decode/sampling) and VisionPipeline (encode of a tiny image)
#   hf         the input as safetensors and as config.json (HFConfig → HFArchitecture, TextParams, VisionParams,
#              HFPreprocessorConfig); inputs cut by "\n%%%\n" into config.json | model.safetensors |
#              preprocessor_config.json also go through HFPlanner.plan in a scratch directory
#   tokenizer  TokenizerJSON.parse and SentencePieceModel on the input; the input (cut by "\n%%%\n" into
#              tokenizer.json | tokenizer_config.json | config.json | tokenizer.model | added_tokens.json |
#              special_tokens_map.json | merges.txt | chat_template.jinja | chat_template.json, empty = absent) as a
#              model directory through TokenizerImport.metadata, then Tokenizer(pairs:) encode/decode
#   image      ImageDecoder (JPEG/PNG, ≤ 4 Mpixels) and the llava/clip/siglip preprocessing at size 32, EXIF orientations
#   request    a `vzquant serve` chat-completions body through ChatJobRequest.parse (JSON, messages, parts, data:
#              URLs, sampling fields), then each image it carries through ImageDecoder
# Reproduce a finding:  SWIFT_BACKTRACE=enable=no VZQ_FUZZ_TARGET=gguf .build-fuzz/vzq-fuzz FILE
#
# Built with swiftc directly (not SwiftPM): every library layer under Sources/ (not the command-line tool) as the
# one module VZQuant with tools/fuzz/*.swift in it (internal APIs reachable; the layers' imports of each other
# resolve to empty stand-ins), the portable CQuant sources (CQ_SCALAR_ONLY, no OpenMP: `#pragma omp` is ignored)
# and Sources/CImage over the system libjpeg-turbo and libpng (not instrumented: coverage stops at their API).
# Corpus working copies, findings and the binary live in .build-fuzz/ (ignored by .gitignore).
set -euo pipefail
cd "$(dirname "$0")/.."
# Swift's own crash backtracer would run under ASan in the dying process (and report itself); libFuzzer prints
# the stack instead.
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=no}"
OUT=.build-fuzz
TARGETS=(gguf hf tokenizer image request)
BIN="$OUT/vzq-fuzz"
# Limits: a parse that allocates for a hostile count shows up as an out-of-memory finding.
LIMITS=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20)

# build [seeds]: the fuzz binary, or (seeds) the seed writer: the same plus tools/fuzz/seeds with -D VZQ_FUZZ_SEEDS.
build() {
    local variant="${1:-}" bin="$BIN" extra=()
    [ "$variant" = seeds ] && bin="$OUT/vzq-fuzz-seeds"
    local stamp="$bin.stamp" sum src="$OUT/src"
    # A snapshot of the sources, so that edits made while swiftc runs neither break nor blur the build.
    # VZQ_FUZZ_REV=REV takes Sources/ and CQuant/ from that commit instead (git archive), e.g. HEAD while the
    # working tree is mid-edit; the harness (tools/fuzz) always comes from the working tree.
    rm -rf "$src" && mkdir -p "$src/tools"
    if [ -n "${VZQ_FUZZ_REV:-}" ]; then
        git archive "$VZQ_FUZZ_REV" Sources CQuant | tar -x -C "$src"
    else
        cp -R Sources CQuant "$src/"
    fi
    rm -rf "$src/Sources/vzquant"  # the command-line tool
    # The server's HTTP side needs Hummingbird (SwiftPM builds it); its request parser is plain Swift, fuzzed here.
    find "$src/Sources/Serve" -name '*.swift' ! -name ChatRequest.swift ! -name ImageInput.swift ! -name APIError.swift -delete
    cp -R tools/fuzz "$src/tools/"
    if [ "$variant" = seeds ]; then extra=(-D VZQ_FUZZ_SEEDS "$src"/tools/fuzz/seeds/*.swift); fi
    # Rebuild only when an input changed (sources, harness, this script, the compiler).
    sum="$( { swiftc --version 2>&1; cat "$0"; echo "$variant"; cd "$src" && find . -type f \( -name '*.swift' -o -name '*.[ch]' \) | sort \
        | xargs cat; } | cksum)"
    if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return; fi
    local started=$SECONDS
    rm -rf "$OUT/obj" "$OUT/module" && mkdir -p "$OUT/obj" "$OUT/module/CQuant" "$OUT/module/CImage" "$OUT/module/stubs"
    local CC
    CC="$(dirname "$(command -v swiftc)")/clang"
    local cflags=(-std=c11 -O1 -g -fsanitize=address,fuzzer-no-link)
    for c in "$src"/CQuant/*.c "$src"/CQuant/arch/scalar/*.c; do
        "$CC" "${cflags[@]}" -DCQ_SCALAR_ONLY -I"$src/CQuant/include" -I"$src/CQuant" -c "$c" \
            -o "$OUT/obj/$(basename "$(dirname "$c")")_$(basename "$c" .c).o" &
    done
    # shellcheck disable=SC2046
    "$CC" "${cflags[@]}" -I"$src/Sources/CImage/include" $(pkg-config --cflags libpng 2>/dev/null) \
        -c "$src/Sources/CImage/decode.c" -o "$OUT/obj/CImage_decode.o" &
    wait
    # `import CQuant` / `import CImage` need modules; SwiftPM makes these for the package build.
    printf 'module CQuant {\n    header "%s"\n    export *\n}\n' "$PWD/$src/CQuant/include/cquant.h" > "$OUT/module/CQuant/module.modulemap"
    printf 'module CImage {\n    header "%s"\n    export *\n}\n' "$PWD/$src/Sources/CImage/include/cimage.h" > "$OUT/module/CImage/module.modulemap"
    # The library's layers (VZQFormats, VZQModels, …: one SwiftPM target per folder) are compiled here as the one
    # module VZQuant, so that the harness reaches their internal APIs; their imports of each other resolve to
    # empty stand-in modules.
    : > "$OUT/module/stubs/empty.h"
    grep -rhoE '^(@_exported |@testable |public |internal |package )?import VZQ[A-Za-z0-9_]+' "$src/Sources" --include='*.swift' \
        | awk '{print $NF}' | sort -u | while read -r m; do
        printf 'module %s {\n    header "empty.h"\n}\n' "$m"
    done > "$OUT/module/stubs/module.modulemap"
    # shellcheck disable=SC2046
    swiftc -parse-as-library -swift-version 6 -O -g -sanitize=fuzzer,address -module-name VZQuant -package-name vzquant -wmo -num-threads 2 -use-ld=lld \
        -I "$OUT/module/CQuant" -I "$OUT/module/CImage" -I "$OUT/module/stubs" \
        $(find "$src/Sources" -name '*.swift' | sort) "$src"/tools/fuzz/*.swift "${extra[@]}" \
        "$OUT"/obj/*.o -ljpeg -lpng16 -lm -o "$bin"
    echo "$sum" > "$stamp"
    echo "built $bin in $((SECONDS - started)) s"
}

# Per-target libFuzzer flags: the dictionary, the largest input, and -close_fd_mask=2 for the tokenizer importer's
# notes on stderr (libFuzzer and sanitizer reports still come out: they use a copy of stderr).
target_flags() {
    local t=$1
    [ -f "tools/fuzz/$t.dict" ] && echo "-dict=tools/fuzz/$t.dict"
    echo "-max_len=32768"
    [ "$t" = tokenizer ] && echo "-close_fd_mask=2"
    echo "-artifact_prefix=$OUT/findings/$t/"
}

# $1 target, $2 working corpus, rest: libFuzzer flags. Runs over the working corpus and the committed seeds
# (new inputs go to the working corpus); output to $OUT/logs/TARGET.log, the final statistics on stdout.
run_target() {
    local t=$1 corpus=$2; shift 2
    [ -d "tools/fuzz/corpus/$t" ] || { echo "no seeds in tools/fuzz/corpus/$t" >&2; exit 2; }
    mkdir -p "$corpus" "$OUT/findings/$t" "$OUT/logs"
    local log="$OUT/logs/$t.log" rc=0 started=$SECONDS
    # shellcheck disable=SC2046
    VZQ_FUZZ_TARGET=$t "$BIN" "${LIMITS[@]}" $(target_flags "$t") -print_final_stats=1 "$@" \
        "$corpus" "tools/fuzz/corpus/$t" > "$log" 2>&1 || rc=$?
    # Scratch directories of runs that died on a finding (a clean exit removes its own).
    for d in /dev/shm/vzq-fuzz-* /tmp/vzq-fuzz-*; do
        [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null && rm -rf "$d"
    done
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | sed "s/^/$t: /"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | tr '\n' ' ' | sed "s/^/$t: /"
    echo "($((SECONDS - started)) s; corpus $(find "$corpus" -type f | wc -l) files, $(du -sb "$corpus" | cut -f1) bytes)"
    if [ "$rc" -ne 0 ]; then
        grep -E 'ERROR|SUMMARY|deadly signal|out-of-memory|timeout|leak|Fatal error|Test unit written' "$log" | head -20 >&2
        echo "fuzz: $t found something (exit $rc); log $log, reproducer in $OUT/findings/$t/" >&2
        return 1
    fi
}

# The committed seeds: synthetic GGUF and HF directories from Seeds.swift, the rest from the test fixtures.
write_seeds() {
    local C=tools/fuzz/corpus F=Tests/VZQuantTests/Fixtures sep
    sep=$'\n%%%\n'
    rm -rf "$C" && mkdir -p "$C/gguf" "$C/hf" "$C/tokenizer" "$C/image"
    VZQ_FUZZ_WRITE_SEEDS="$C" "$OUT/vzq-fuzz-seeds"
    cp "$F/formats/python_writer.gguf" "$C/gguf/"
    cp "$F/models/graph/idefics3_s2.gguf" "$C/gguf/"
    for d in "$F"/hf/*/; do cp "$d/config.json" "$C/hf/config_$(basename "$d").json"; done
    for d in "$F"/tokenizer/*/; do cp "$d/config.json" "$C/hf/config_tokenizer_$(basename "$d").json"; done
    cp "$F/formats/tiny.safetensors" "$F"/formats/sharded/*.safetensors "$C/hf/"
    # tokenizer: parts tokenizer.json | tokenizer_config.json | config.json | tokenizer.model | added_tokens.json |
    # special_tokens_map.json | merges.txt | chat_template.jinja | chat_template.json (empty = absent)
    parts() {  # OUT FILE... ("-" = absent)
        local out=$1 first=1; shift
        : > "$out"
        for f in "$@"; do
            [ $first -eq 1 ] || printf '%s' "$sep" >> "$out"
            first=0
            [ "$f" = - ] || cat "$f" >> "$out"
        done
    }
    parts "$C/tokenizer/llava.tok" "$F/hf/llava-4x/tokenizer.json" "$F/hf/llava-4x/tokenizer_config.json" \
        "$F/hf/llava-4x/config.json" - - - - "$F/hf/llava-4x/chat_template.jinja"
    parts "$C/tokenizer/qwen2.tok" "$F/hf/qwen2/tokenizer.json" "$F/hf/qwen2/tokenizer_config.json" "$F/hf/qwen2/config.json"
    parts "$C/tokenizer/llama3.tok" "$F/tokenizer/llama3-bpe/tokenizer.json" "$F/tokenizer/llama3-bpe/tokenizer_config.json" \
        "$F/tokenizer/llama3-bpe/config.json"
    parts "$C/tokenizer/spm.tok" - "$F/tokenizer/spm/tokenizer_config.json" "$F/tokenizer/spm/config.json" \
        "$F/tokenizer/spm/tokenizer.model" "$F/tokenizer/spm/added_tokens.json"
    cp "$F/hf/qwen2/tokenizer.json" "$C/tokenizer/qwen2_tokenizer.json"
    cp "$F/tokenizer/spm/tokenizer.model" "$C/tokenizer/spm_tokenizer.model"
    # A small GPT-2 tokenizer with its merges in merges.txt, special tokens in special_tokens_map.json and a
    # template list in chat_template.json; a Unigram model (refused).
    local tmp="$OUT/seed-parts" && mkdir -p "$tmp"
    cat > "$tmp/tokenizer.json" <<'JSON'
{"version": "1.0", "added_tokens": [{"id": 9, "content": "<|endoftext|>", "special": true}, {"id": 10, "content": "<image>", "special": false}],
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]},
 "decoder": {"type": "ByteLevel"},
 "model": {"type": "BPE", "byte_fallback": false, "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "he": 5, "ll": 6, "llo": 7, "hello": 8}}}
JSON
    printf '#version: 0.2\nh e\nl l\nll o\nhe llo\n' > "$tmp/merges.txt"
    printf '{"bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>"}, "pad_token": "<image>"}' > "$tmp/special_tokens_map.json"
    printf '{"chat_template": [{"name": "default", "template": "<|im_start|>{{ m }}"}, {"name": "tool use", "template": "x"}]}' > "$tmp/chat_template.json"
    printf '{"add_bos_token": false, "add_eos_token": true, "model_max_length": 64}' > "$tmp/tokenizer_config.json"
    printf '{"vocab_size": 12}' > "$tmp/config.json"
    parts "$C/tokenizer/smollm_merges.tok" "$tmp/tokenizer.json" "$tmp/tokenizer_config.json" "$tmp/config.json" - - \
        "$tmp/special_tokens_map.json" "$tmp/merges.txt" - "$tmp/chat_template.json"
    printf '{"model": {"type": "Unigram", "vocab": [["a", -1.0], ["b", -2.0]]}}' > "$C/tokenizer/unigram.json"
    for f in "$F"/images/*.png "$F"/images/*.jpg; do cp "$f" "$C/image/"; done
    du -sh "$C"/*
}

case "${1:-}" in
    --build)
        build ;;
    --seeds)
        build seeds
        write_seeds ;;
    --smoke)
        build
        started=$SECONDS
        status=0
        for t in "${TARGETS[@]}"; do
            # A scratch corpus: the smoke only reads the committed seeds.
            rm -rf "$OUT/smoke/$t"
            run_target "$t" "$OUT/smoke/$t" -max_total_time=10 || status=1
        done
        [ $status -eq 0 ] && echo "fuzz smoke: all targets clean in $((SECONDS - started)) s"
        exit $status ;;
    all|gguf|hf|tokenizer|image|request)
        build
        seconds="${2:-600}"
        targets=("$1")
        [ "$1" = all ] && targets=("${TARGETS[@]}")
        status=0
        for t in "${targets[@]}"; do
            stop=(-max_total_time="$seconds")
            [ -n "${VZQ_FUZZ_RUNS:-}" ] && stop=(-runs="$VZQ_FUZZ_RUNS")
            # shellcheck disable=SC2086
            run_target "$t" "$OUT/corpus/$t" "${stop[@]}" ${VZQ_FUZZ_ARGS:-} || status=1
        done
        exit $status ;;
    *)
        sed -n '2,13p' "$0" >&2
        exit 2 ;;
esac

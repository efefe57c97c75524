#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of every parser a file or a request reaches.
#
#   tools/fuzz.sh TARGET [SECONDS]   campaign on one target (default 600 s); TARGET: gguf hf tokenizer image
#   tools/fuzz.sh all [SECONDS]      each target in turn, SECONDS each
#   tools/fuzz.sh --smoke            build, then each target ~10 s over its committed seeds (CI; non-zero on a finding)
#   tools/fuzz.sh --build            build only
#   tools/fuzz.sh --seeds            regenerate the synthetic GGUF seeds into tools/fuzz/corpus/gguf (see Seeds.swift)
#   VZQ_FUZZ_RUNS=N                  a campaign stops after N executions instead of SECONDS
#   VZQ_FUZZ_ARGS="..."              extra libFuzzer flags for campaigns (e.g. -jobs=1 -workers=1)
#
# One binary, .build-fuzz/vzq-fuzz, holds all four targets; VZQ_FUZZ_TARGET picks one at start-up:
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
# Reproduce a finding:  VZQ_FUZZ_TARGET=gguf .build-fuzz/vzq-fuzz .build-fuzz/findings/gguf/crash-…
#
# Built with swiftc directly (not SwiftPM): all of Sources/VZQuant as module VZQuant with tools/fuzz/*.swift in
# it (internal APIs reachable), the portable CQuant sources (CQ_SCALAR_ONLY, no OpenMP: `#pragma omp` is ignored)
# and Sources/CImage over the system libjpeg-turbo and libpng (not instrumented: coverage stops at their API).
# Corpus working copies, findings and the binary live in .build-fuzz/ (ignored by .gitignore).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.build-fuzz
TARGETS=(gguf hf tokenizer image)
BIN="$OUT/vzq-fuzz"
# Limits: a parse that allocates for a hostile count shows up as an out-of-memory finding.
LIMITS=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20)

build() {
    local stamp="$OUT/vzq-fuzz.stamp" sum
    # Rebuild only when an input changed (sources, harness, this script, the compiler).
    sum="$( { swiftc --version 2>&1; cat "$0" Sources/VZQuant/*/*.swift tools/fuzz/*.swift CQuant/*.c CQuant/*.h \
        CQuant/include/*.h CQuant/arch/scalar/*.c Sources/CImage/*.c Sources/CImage/include/*.h; } | cksum)"
    if [ -x "$BIN" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return; fi
    local started=$SECONDS
    rm -rf "$OUT/obj" "$OUT/module" && mkdir -p "$OUT/obj" "$OUT/module/CQuant" "$OUT/module/CImage"
    local CC
    CC="$(dirname "$(command -v swiftc)")/clang"
    local cflags=(-std=c11 -O1 -g -fsanitize=address,fuzzer-no-link)
    for c in CQuant/*.c CQuant/arch/scalar/*.c; do
        "$CC" "${cflags[@]}" -DCQ_SCALAR_ONLY -ICQuant/include -ICQuant -c "$c" -o "$OUT/obj/$(echo "$c" | tr / _).o" &
    done
    "$CC" "${cflags[@]}" -ISources/CImage/include $(pkg-config --cflags libpng 2>/dev/null) \
        -c Sources/CImage/decode.c -o "$OUT/obj/CImage_decode.o" &
    wait
    # `import CQuant` / `import CImage` need modules; SwiftPM makes these for the package build.
    printf 'module CQuant {\n    header "%s"\n    export *\n}\n' "$PWD/CQuant/include/cquant.h" > "$OUT/module/CQuant/module.modulemap"
    printf 'module CImage {\n    header "%s"\n    export *\n}\n' "$PWD/Sources/CImage/include/cimage.h" > "$OUT/module/CImage/module.modulemap"
    swiftc -parse-as-library -swift-version 6 -O -g -sanitize=fuzzer,address -module-name VZQuant -wmo -num-threads 2 \
        -I "$OUT/module/CQuant" -I "$OUT/module/CImage" \
        $(find Sources/VZQuant -name '*.swift' | sort) tools/fuzz/*.swift \
        "$OUT"/obj/*.o -ljpeg -lpng16 -lm -o "$BIN"
    echo "$sum" > "$stamp"
    echo "built $BIN in $((SECONDS - started)) s"
}

# $1 target, rest: libFuzzer flags. The working corpus starts from the committed seeds and keeps what it finds.
run_target() {
    local t=$1; shift
    [ -d "tools/fuzz/corpus/$t" ] || { echo "no seeds in tools/fuzz/corpus/$t" >&2; exit 2; }
    mkdir -p "$OUT/corpus/$t" "$OUT/findings/$t"
    local dict=()
    [ -f "tools/fuzz/$t.dict" ] && dict=(-dict="tools/fuzz/$t.dict")
    VZQ_FUZZ_TARGET=$t "$BIN" "${LIMITS[@]}" "${dict[@]}" -artifact_prefix="$OUT/findings/$t/" -print_final_stats=1 \
        "$@" "$OUT/corpus/$t" "tools/fuzz/corpus/$t"
}

case "${1:-}" in
    --build)
        build ;;
    --seeds)
        build
        VZQ_FUZZ_WRITE_SEEDS=tools/fuzz/corpus/gguf "$BIN" ;;
    --smoke)
        build
        started=$SECONDS
        for t in "${TARGETS[@]}"; do
            echo "== fuzz smoke: $t"
            # A scratch corpus: the smoke adds nothing to the campaign's. -close_fd_mask=1: the importer's notes
            # go to stdout-less silence; findings and libFuzzer's own lines still go to stderr.
            smoke="$OUT/smoke/$t"
            rm -rf "$smoke" && mkdir -p "$smoke" "$OUT/findings/$t"
            dict=()
            [ -f "tools/fuzz/$t.dict" ] && dict=(-dict="tools/fuzz/$t.dict")
            VZQ_FUZZ_TARGET=$t "$BIN" "${LIMITS[@]}" "${dict[@]}" -artifact_prefix="$OUT/findings/$t/" \
                -max_total_time=10 -print_final_stats=1 "$smoke" "tools/fuzz/corpus/$t" 2>&1 \
                | grep -E '^(INFO: seed corpus|#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Done|.*deadly signal|.*out-of-memory|.*timeout|.*leak)' || true
            [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz smoke: $t found something; see $OUT/findings/$t/" >&2; exit 1; }
        done
        echo "fuzz smoke: all targets clean in $((SECONDS - started)) s" ;;
    all|gguf|hf|tokenizer|image)
        build
        seconds="${2:-600}"
        targets=("$1")
        [ "$1" = all ] && targets=("${TARGETS[@]}")
        for t in "${targets[@]}"; do
            stop=(-max_total_time="$seconds")
            [ -n "${VZQ_FUZZ_RUNS:-}" ] && stop=(-runs="$VZQ_FUZZ_RUNS")
            # shellcheck disable=SC2086
            run_target "$t" "${stop[@]}" -close_fd_mask=1 ${VZQ_FUZZ_ARGS:-}
        done ;;
    *)
        sed -n '2,9p' "$0" >&2
        exit 2 ;;
esac

#!/usr/bin/env bash
# Builds and runs the libFuzzer target for the GGUF and safetensors readers (tools/fuzz/FormatFuzzer.swift)
# with AddressSanitizer, seeded with the committed format fixtures.
#
#   tools/fuzz.sh [SECONDS]      default 30; findings (crash-*, oom-*, leak-*) land in .build-fuzz/
#
# Built with swiftc directly (not SwiftPM) from Sources/VZQuant/Formats, QuantType.swift and the portable
# CQuant C sources (CQ_SCALAR_ONLY, no OpenMP): only what the readers use.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-30}"
OUT=.build-fuzz  # ignored by .gitignore (.build-*/)
rm -rf "$OUT/obj" && mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/module"

CC="$(dirname "$(command -v swiftc)")/clang"
for c in CQuant/*.c CQuant/arch/scalar/*.c; do
    [ "$(basename "$c")" = bench.c ] && continue  # timing code: not used by the readers
    "$CC" -std=c11 -O1 -g -fsanitize=address,fuzzer-no-link -DCQ_SCALAR_ONLY -ICQuant/include -ICQuant \
        -c "$c" -o "$OUT/obj/$(echo "$c" | tr / _).o"
done

# `import CQuant` needs a module; SwiftPM makes this one for the package build.
cat > "$OUT/module/module.modulemap" <<MAP
module CQuant {
    header "$PWD/CQuant/include/cquant.h"
    export *
}
MAP

swiftc -parse-as-library -O -g -sanitize=fuzzer,address -module-name VZQuant -I "$OUT/module" \
    Sources/VZQuant/Formats/*.swift Sources/VZQuant/Kernels/QuantType.swift tools/fuzz/FormatFuzzer.swift \
    "$OUT"/obj/*.o -lm -o "$OUT/format-fuzzer"

cp Tests/VZQuantTests/Fixtures/formats/*.gguf Tests/VZQuantTests/Fixtures/formats/*.safetensors \
    Tests/VZQuantTests/Fixtures/formats/sharded/*.safetensors "$OUT/corpus/"

cd "$OUT"
# -rss_limit_mb: a parse that allocates for a hostile count shows up as an out-of-memory finding.
./format-fuzzer -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=65536 \
    -print_final_stats=1 corpus

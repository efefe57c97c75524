#!/usr/bin/env bash
# Builds CQuant with its C test driver outside SwiftPM and runs it.
#
#   tools/ctest.sh native     host compiler, every kernel this CPU supports vs the scalar reference
#   tools/ctest.sh sanitize   the same under AddressSanitizer + UndefinedBehaviorSanitizer (quick shapes)
#   tools/ctest.sh arm        cross-compiles for AArch64 and runs under qemu-aarch64-static three times:
#                             -cpu cortex-a72 (expects neon), neoverse-n1 (dotprod), max (i8mm); then again
#                             with the AArch64 kernels built by clang, when one is found
#   tools/ctest.sh all        the three above
#
# Needs: gcc; for arm, Debian's gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross qemu-user-static.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CQ_BUILD_DIR:-build-c}
mkdir -p "$out"

sources=$(find CQuant -name "*.c" | sort)
common=(-std=c11 -ffp-contract=off -fopenmp -Wall -Wextra -Werror=implicit-function-declaration -ICQuant/include -ICQuant)

native() {
    local cc=${CC:-gcc}
    echo "== CQuant tests, native ($cc)"
    # shellcheck disable=SC2086
    "$cc" "${common[@]}" -O2 -g $sources Tests/ckernels/test_kernels.c -o "$out/test_kernels" -lm
    "$out/test_kernels"
}

sanitize() {
    local cc=${CC:-gcc}
    echo "== CQuant tests, ASan + UBSan ($cc)"
    # shellcheck disable=SC2086
    "$cc" "${common[@]}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
        $sources Tests/ckernels/test_kernels.c -o "$out/test_kernels_san" -lm
    CQ_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$out/test_kernels_san"
}

# Runs one AArch64 test binary under qemu on the three CPU models, each pinned to the kernel it must pick.
arm_qemu() {
    local bin=$1 cpu expect
    for pair in cortex-a72:neon neoverse-n1:dotprod max:i8mm; do
        cpu=${pair%%:*}
        expect=${pair##*:}
        echo "== qemu-aarch64-static -cpu $cpu (expects $expect)"
        CQ_TEST_QUICK=1 CQ_EXPECT_KERNEL=$expect VZQ_THREADS=2 qemu-aarch64-static -cpu "$cpu" "$bin"
    done
}

arm() {
    local cc=${ARM_CC:-aarch64-linux-gnu-gcc}
    command -v "$cc" >/dev/null || { echo "missing $cc: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross"; exit 1; }
    command -v qemu-aarch64-static >/dev/null || { echo "missing qemu-aarch64-static: apt-get install qemu-user-static"; exit 1; }
    echo "== CQuant tests, AArch64 cross build ($cc)"
    # The baseline is plain Armv8-A (Cortex-A72, Raspberry Pi 4); dotprod and i8mm code is enabled per function
    # and chosen at run time, exactly as on a real board. Static, so qemu needs no sysroot.
    # shellcheck disable=SC2086
    "$cc" "${common[@]}" -O2 -march=armv8-a -static $sources Tests/ckernels/test_kernels.c -o "$out/test_kernels_arm64" -lm
    arm_qemu "$out/test_kernels_arm64"

    # SwiftPM builds the AArch64 kernels with clang on the boards, and clang wants other target-attribute
    # spellings and generates other code than gcc, so those files are also built with clang (ARM_CLANG, else
    # Swift's or the PATH's; ARM_CLANG=none skips this) and linked into the gcc build of the rest. They hold
    # no OpenMP, so the two compilers' OpenMP runtimes never meet.
    local clang=${ARM_CLANG:-} c
    if [ -z "$clang" ]; then
        for c in /opt/swift/usr/bin/clang clang; do
            if command -v "$c" >/dev/null; then clang=$c; break; fi
        done
    fi
    if [ -z "$clang" ] || [ "$clang" = none ]; then
        echo "== no clang (set ARM_CLANG): AArch64 kernels not checked with clang"
        return
    fi
    echo "== CQuant tests, AArch64 kernels built with $clang, the rest with $cc"
    local objdir="$out/arm64-clang" f rest=() objs=()
    mkdir -p "$objdir"
    for f in $sources; do
        case "$f" in
            CQuant/arch/arm/*.c)
                "$clang" --target=aarch64-linux-gnu -std=c11 -ffp-contract=off -Wall -Wextra -O2 -march=armv8-a \
                    -ICQuant/include -ICQuant -c "$f" -o "$objdir/$(basename "$f" .c).o"
                objs+=("$objdir/$(basename "$f" .c).o") ;;
            *) rest+=("$f") ;;
        esac
    done
    "$cc" "${common[@]}" -O2 -march=armv8-a -static "${rest[@]}" "${objs[@]}" Tests/ckernels/test_kernels.c \
        -o "$out/test_kernels_arm64_clang" -lm
    arm_qemu "$out/test_kernels_arm64_clang"
}

case "${1:-native}" in
    native) native ;;
    sanitize) sanitize ;;
    arm) arm ;;
    all) native; sanitize; arm ;;
    *) echo "usage: $0 native|sanitize|arm|all"; exit 2 ;;
esac

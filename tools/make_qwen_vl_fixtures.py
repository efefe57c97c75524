#!/usr/bin/env python3
"""Tiny random Qwen2-VL and Qwen2.5-VL checkpoints plus what transformers' own processor and models make of a few
images (token layout, M-RoPE positions, vision features, prefill logits, greedy tokens), so vzquant's Qwen-VL
preprocessing, vision towers and 3-axis rotary positions can be checked against them.

Writes, under FIXTURES = Tests/VZQuantTests/Fixtures:
  hf/qwen2-vl/     Qwen2VLForConditionalGeneration, F16, laid out as a transformers 4.x-era hub checkpoint:
                   tensors under the names 4.x used on disk (visual.*, model.* for the text layers, lm_head.weight;
                   transformers 5.25's own save_pretrained writes exactly these names too), config.json in the flat
                   4.x hub form (text fields at the top level, "rope_scaling": {"type": "mrope", "mrope_section"},
                   "rope_theta", vision_config with embed_dim / mlp_ratio / in_chans / hidden_size = the merger's
                   output width), preprocessor_config.json in the hub form (min_pixels / max_pixels, no "size").
                   Vision: depth 3, embed_dim 32, 2 heads, mlp_ratio 2 (LayerNorm, fc1/fc2 quick_gelu), LayerNorm
                   merger ln_q + mlp.0 / GELU (erf) / mlp.2.
  hf/qwen2.5-vl/   Qwen2_5_VLForConditionalGeneration, BF16, as transformers 5.25 writes it: tensors under the 5.x
                   in-memory names (model.visual.*, model.language_model.*, lm_head.weight), config.json from
                   save_pretrained (text_config with rope_parameters {"rope_type": "default", "mrope_section",
                   "rope_theta"}, vision_config with hidden_size / intermediate_size / out_hidden_size /
                   window_size / fullatt_block_indexes), preprocessor_config.json from save_pretrained
                   ("size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}).
                   Vision: depth 4, hidden 32, intermediate 64, 2 heads, RMSNorm, SwiGLU gate/up/down with biases,
                   window_size 112 (4x4 merge groups per window), full attention in blocks 1 and 3, RMSNorm merger
                   ln_q + mlp.0 / GELU (erf) / mlp.2. Vision norms eps 1e-6, both families.
                   Both: text Qwen2 hidden 64, intermediate 128, 2 layers, 4 heads, 2 KV heads (head_dim 16), q/k/v
                   biases, RMSNorm eps 1e-6, rope_theta 1e6, mrope_section [2, 3, 3], untied lm_head, vocab 404.
                   Weights drawn with initializer_range 0.08 (sharper attention than 0.02, so positions matter),
                   rounded so F16 and BF16 hold the same values; norms (merger ln_q included) and biases are random
                   (make_layout_fixtures.py's randomise).
                   Each directory also has the tokenizer (GPT-2 byte-level BPE trained here, make_hf_checkpoints.py;
                   <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2 from training, then <|vision_start|> 400,
                   <|vision_end|> 401, <|image_pad|> 402, <|video_pad|> 403, all special; eos <|im_end|>, pad
                   <|endoftext|>), chat_template.jinja (Qwen2-VL's ChatML: default system "You are a helpful
                   assistant.", an image part is <|vision_start|><|image_pad|><|vision_end|>) and
                   processor_config.json (the image processor nested) as the processor's save_pretrained writes them.
                   There is no video processor: transformers' Qwen2VLVideoProcessor needs torchvision (the released
                   Qwen2-VL checkpoints shipped none either). Processor: min_pixels 3136 (56*56), max_pixels 62720
                   (28*28*80), patch 14, merge 2, temporal patch 2, OpenAI CLIP mean/std, BICUBIC.
  layouts/qwen-vl-images/img_420x250.png   one more image, large enough for max_pixels to shrink it
  layouts/qwen2-vl/cases.json, layouts/qwen2.5-vl/cases.json   see "Cases" below
  layouts/qwen2-vl/img_20x16.pixel_values.bin   the first case's pixel_values, float32 little-endian, C order,
                   [num_patches, 1176]; both families' cases.json name it (their processors are the same)

Images: layouts/images/img_{20x16,160x120,75x250,250x75,300x130}.png (make_layout_fixtures.py; made with its
make_images if missing) and the 420x250 one. smart_resize rounds each side to a multiple of 28 keeping the area within
[min_pixels, max_pixels]: 20x16 -> 84x56 (scaled up to min_pixels), 160x120 -> 168x112, 75x250 -> 84x252,
250x75 -> 252x84, 300x130 -> 308x140 (under max_pixels: only rounded), 420x250 -> 308x168 (scaled down).

pixel_values (the processor's, all images of a prompt concatenated): one row per 14x14 patch, rows ordered merge group
by merge group: the groups (2x2 patches = 28x28 pixels) in raster order over the (H/28, W/28) grid, and inside a group
its 4 patches row-major (top-left, top-right, bottom-left, bottom-right). So row r of an image with grid (1, gh, gw) is
patch (y, x) = (2*(g // (gw/2)) + (r%4)//2, 2*(g % (gw/2)) + r%2) with g = r // 4. A row's 1176 values are
[channel 3][temporal 2][py 14][px 14] (index ((c*2 + t)*14 + py)*14 + px); a still image fills both temporal slices
with the same values. This matches patch_embed's Conv3d weight [embed, 3, 2, 14, 14] flattened: the patch embedding
is row @ W.reshape(embed, 1176).T. Values: the 8-bit RGB image resized by PIL (BICUBIC, result 8-bit), then
float32(u8 * (1/255 in float64)), then (x - float32(mean[c])) / float32(std[c]) in float32 (checked here exactly).

Vision token order (checked here against a raster-order reference forward written in this script, using the model's
own layers but our own patch embedding, rotary angles, windows and attention):
  Qwen2-VL: the tower keeps pixel_values' order; the merger concatenates 4 consecutive rows (one merge group), so its
            output row k is merge group k in raster order over (gh/2, gw/2).
  Qwen2.5-VL: before block 0 the tower regroups the merge groups window by window (windows of 4x4 groups tiling the
            (gh/2, gw/2) grid from the top left, the last row/column of windows possibly partial; windows in raster
            order, groups inside a window in raster order; per image), runs every block in that order (window blocks
            attend within a window, fullatt_block_indexes over the whole image), applies the merger, then transformers
            undoes the regrouping: the merger output (what the LLM gets) is again merge group k in raster order. The
            hidden state entering the merger is in window order; "window_order" lists the groups in that order.
  Vision rotary: head_dim 16 -> 4 frequencies 1/10000^(2i/8) (vision rope_theta 10000); angles = [y*f, x*f] (8) then
  repeated twice (16), applied with rotate_half (first half against second half); y, x are the patch coordinates.

M-RoPE positions (get_rope_index; recorded per case, [3 axes (t, h, w)][seq]): text tokens get the same position on all
three axes, counting on from the previous token (first token 0). An image whose merged grid is (1, gh/2, gw/2) starting
when the running position is s gives its k-th <|image_pad|> token (merge group k, raster order) t = s,
h = s + k // (gw/2), w = s + k % (gw/2); the text after it continues at s + max(gh/2, gw/2). rope_deltas = (largest
position + 1) - sequence length; during generation, the token at sequence index i (>= the prompt length) gets position
i + rope_deltas on all three axes. Text-only prompts: positions 0..n-1, rope_deltas 0. In the text attention the 8
rotary frequencies of a head are split [2, 3, 3]: frequencies 0-1 take the t position, 2-4 the h position, 5-7 the w
position (both halves of rotate_half use the same angle), theta 1e6.

Cases (cases.json "cases"; top level: the processor and model settings, token ids, paths): for each prompt
  name, images (paths relative to the Fixtures directory), messages, text (the processor's apply_chat_template with
  add_generation_prompt), input_ids (after <|image_pad|> expansion), num_image_tokens,
  per_image: image_size [h, w], resized [h, w], grid_thw, num_patches, num_tokens, token_start (index of its first
      <|image_pad|>), pixel_values {shape, sum, sum_sq} (float64 sums of its rows),
      merger_row_sums (float32 row sums of the merger output [num_tokens, 64], raster order), merger_rows (its first 4
      rows), merger_output (all rows; first case only), pre_merger {indices, rows, row_sums}: rows of the tower's last
      block output ([num_patches, embed], the model's own order) at the listed indices (0, 1 and the first two rows of
      Qwen2.5-VL's second window, or 16, 17 when there is one window; the same indices for Qwen2-VL) and all its row
      sums, window_order (Qwen2.5-VL only),
  pixel_values_shape, pixel_values_file (first case), position_ids [3][seq], rope_deltas,
  logits_last_position, logits_last, logits_rows [{position, logits}], argmax_last (float32 prefill of the model loaded
  back from the checkpoint, widened to float32),
  generated: 8 greedy tokens of model.generate(do_sample=False, max_new_tokens=8) in float32 with EOS disabled (the
      run goes on past <|im_end|>), checked against a full forward over prompt + generated with M-RoPE positions,
  decode_step: generate's second step (input the first generated token at sequence index n, position
      n + rope_deltas on all axes): its argmax and its 8 largest logits (top_ids, top_logits).

Everything is seeded and single-threaded: re-running reproduces the same bytes.

Needs: pip install --find-links /opt/wheels 'torch==2.13.0+cpu' transformers safetensors pillow   (transformers 5.25;
no torchvision: the PIL image processor is used)
Run:   python3 tools/make_qwen_vl_fixtures.py [--fixtures DIR]
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch
import transformers
from PIL import Image, ImageDraw
from safetensors import safe_open
from transformers import (
    AutoTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize
from transformers.processing_utils import ProcessorMixin
from transformers.vision_utils import get_vision_window_index

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_hf_checkpoints import qwen2_tokenizer  # noqa: E402
from make_layout_fixtures import (  # noqa: E402
    clear,
    f32,
    load_image,
    make_images,
    randomise,
    round_f16_bf16,
    rows_for,
    save_state,
    write_config,
)
from quant_manifest import dump_manifest  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "Tests", "VZQuantTests", "Fixtures")

SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 80
PATCH, MERGE, TEMPORAL = 14, 2, 2
ROPE_THETA = 1000000.0
VISION_ROPE_THETA = 10000.0
MROPE_SECTION = [2, 3, 3]
WINDOW_SIZE = 112
FULLATT_BLOCKS = [1, 3]
INIT_RANGE = 0.08  # a little above the default 0.02 so attention is not uniform and positions matter
NEW_TOKENS = 8
DECODE_TOP = 8  # logits kept from generate's second step (the largest ones)
PIXEL_VALUES_DIR = "layouts/qwen2-vl"  # written by the first family's run (its directory is cleared first)

# Qwen2-VL's prompt format (ChatML, default system message, an image part as the three vision tokens); rendered by
# transformers with trim_blocks/lstrip_blocks, so no block tag is directly followed by a newline
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LAYOUT_IMAGES = [(20, 16), (160, 120), (75, 250), (250, 75), (300, 130)]  # (width, height), from layouts/images
BIG_IMAGE = (420, 250)


# MARK: - Processor without a video processor


def image_only(base):
    """`base` (Qwen2VLProcessor / Qwen2_5_VLProcessor) without its video processor, whose transformers class needs
    torchvision. Same class name, so the saved processor_config.json names the real processor class."""

    class Processor(base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    Processor.__name__ = Processor.__qualname__ = base.__name__
    return Processor


FAMILIES = {
    "qwen2-vl": dict(config=Qwen2VLConfig, model=Qwen2VLForConditionalGeneration,
                     processor=image_only(Qwen2VLProcessor), dtype=torch.float16, seed=4040),
    "qwen2.5-vl": dict(config=Qwen2_5_VLConfig, model=Qwen2_5_VLForConditionalGeneration,
                       processor=image_only(Qwen2_5_VLProcessor), dtype=torch.bfloat16, seed=5050),
}


# MARK: - Images


def make_big_image(path: str) -> None:
    """Smooth colour ramps, a disc, a bar and a diagonal: structure the resampling must keep, few PNG bytes."""
    w, h = BIG_IMAGE
    y = np.arange(h, dtype=np.float64).reshape(h, 1) / (h - 1)
    x = np.arange(w, dtype=np.float64).reshape(1, w) / (w - 1)
    r = np.broadcast_to(40 + 190 * x, (h, w))
    g = np.broadcast_to(220 - 160 * y, (h, w))
    b = 90 + 120 * x * y
    rgb = np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(img)
    draw.ellipse([60, 40, 190, 170], fill=(250, 210, 40))
    draw.rectangle([250, 130, 390, 220], fill=(30, 60, 170))
    draw.line([0, h - 1, w - 1, 0], fill=(255, 255, 255), width=6)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, optimize=True)


# MARK: - Checkpoints


def build_tokenizer():
    tok = qwen2_tokenizer(400)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    return tok


def token_ids(tok) -> dict:
    return {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}


def text_fields(tok) -> dict:
    return dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-6,
        initializer_range=INIT_RANGE, bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), tie_word_embeddings=False, use_sliding_window=False,
        sliding_window=None, max_window_layers=2, attention_dropout=0.0, use_cache=True,
    )


def vision_fields(family: str) -> dict:
    common = dict(patch_size=PATCH, temporal_patch_size=TEMPORAL, spatial_merge_size=MERGE, in_channels=3,
                  initializer_range=INIT_RANGE)
    if family == "qwen2-vl":
        return dict(common, depth=3, embed_dim=32, num_heads=2, mlp_ratio=2, hidden_act="quick_gelu", hidden_size=64)
    return dict(common, depth=4, hidden_size=32, intermediate_size=64, num_heads=2, hidden_act="silu",
                out_hidden_size=64, window_size=WINDOW_SIZE, fullatt_block_indexes=FULLATT_BLOCKS, tokens_per_second=2)


def build_config(family: str, tok):
    ids = token_ids(tok)
    text = dict(text_fields(tok), rope_parameters={"rope_type": "default", "mrope_section": MROPE_SECTION,
                                                   "rope_theta": ROPE_THETA})
    config = FAMILIES[family]["config"](
        vision_config=vision_fields(family), text_config=text, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False,
    )
    config.architectures = [FAMILIES[family]["model"].__name__]
    return config


def qwen2_vl_hub_config(tok) -> dict:
    """config.json as the 4.x-era Qwen2-VL hub checkpoints write it: text fields flat at the top level."""
    ids = token_ids(tok)
    out = dict(text_fields(tok))
    out.update(
        architectures=["Qwen2VLForConditionalGeneration"], model_type="qwen2_vl", torch_dtype="float16",
        rope_theta=ROPE_THETA, rope_scaling={"type": "mrope", "mrope_section": MROPE_SECTION},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        transformers_version="4.45.0.dev0",
        vision_config={"depth": 3, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2, "in_chans": 3, "hidden_size": 64,
                       "patch_size": PATCH, "spatial_merge_size": MERGE, "spatial_patch_size": PATCH,
                       "temporal_patch_size": TEMPORAL, "hidden_act": "quick_gelu"},
    )
    return out


def qwen2_vl_hub_preprocessor(ip) -> dict:
    """preprocessor_config.json as the Qwen2-VL hub checkpoints write it (min_pixels / max_pixels, no "size")."""
    return {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "patch_size": PATCH,
            "temporal_patch_size": TEMPORAL, "merge_size": MERGE, "image_mean": list(ip.image_mean),
            "image_std": list(ip.image_std), "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2VLProcessor"}


def qwen2_vl_4x_name(k: str) -> str:
    """transformers 5.x in-memory name -> the name 4.x Qwen2-VL checkpoints use on disk."""
    if k.startswith("model.visual."):
        return k[len("model."):]
    if k.startswith("model.language_model."):
        return "model." + k[len("model.language_model."):]
    assert k == "lm_head.weight", k
    return k


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def build(family: str, hf: str):
    tok = build_tokenizer()
    config = build_config(family, tok)
    torch.manual_seed(FAMILIES[family]["seed"])
    model = FAMILIES[family]["model"](config).eval()
    randomise(model, FAMILIES[family]["seed"] + 1)
    g = torch.Generator().manual_seed(FAMILIES[family]["seed"] + 2)
    with torch.no_grad():  # the merger's norm is "ln_q", which randomise does not take for a norm
        ln = model.model.visual.merger.ln_q
        ln.weight.copy_(1.0 + 0.1 * torch.randn(ln.weight.shape, generator=g))
    round_f16_bf16(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    ip = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=PATCH, merge_size=MERGE,
                                  temporal_patch_size=TEMPORAL)
    processor = FAMILIES[family]["processor"](image_processor=ip, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    d = os.path.join(hf, family)
    clear(d)
    processor.save_pretrained(d)
    dtype = FAMILIES[family]["dtype"]
    if family == "qwen2-vl":
        names = {k: qwen2_vl_4x_name(k) for k in state}
        with tempfile.TemporaryDirectory() as tmp:  # transformers 5.25 itself writes the 4.x names for Qwen2-VL
            model.save_pretrained(tmp)
            with safe_open(os.path.join(tmp, "model.safetensors"), "pt") as fh:
                assert sorted(fh.keys()) == sorted(names.values())
        save_state({names[k]: v for k, v in state.items()}, d, dtype)
        write_json(os.path.join(d, "config.json"), qwen2_vl_hub_config(tok))
        write_json(os.path.join(d, "preprocessor_config.json"), qwen2_vl_hub_preprocessor(ip))
    else:
        ip.save_pretrained(d)
        write_config(config, d, dtype)
        save_state(state, d, dtype)
    return d, state


# MARK: - Independent references


def resized_size(height: int, width: int) -> tuple:
    """smart_resize as documented above: sides rounded to multiples of 28, the area brought into
    [MIN_PIXELS, MAX_PIXELS] by one common scale (rounded down when shrinking, up when growing)."""
    f = PATCH * MERGE
    h, w = round(height / f) * f, round(width / f) * f
    if h * w > MAX_PIXELS:
        s = (height * width / MAX_PIXELS) ** 0.5
        h, w = max(f, int(height / s // f) * f), max(f, int(width / s // f) * f)
    elif h * w < MIN_PIXELS:
        s = (MIN_PIXELS / (height * width)) ** 0.5
        h, w = -int(-height * s // f) * f, -int(-width * s // f) * f
    return h, w


def pixel_rows(im: Image.Image, mean, std) -> np.ndarray:
    """The processor's pixel_values for one image, computed from the layout documented above."""
    h, w = resized_size(im.height, im.width)
    u8 = np.asarray(im.resize((w, h), Image.BICUBIC), dtype=np.uint8)
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    chw = x.transpose(2, 0, 1)
    gh, gw = h // PATCH, w // PATCH
    blocks = chw.reshape(3, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    blocks = blocks.transpose(1, 4, 2, 5, 0, 3, 6)  # group row, group col, patch row, patch col, C, py, px
    blocks = np.repeat(blocks[:, :, :, :, :, None], TEMPORAL, axis=5)  # C, T, py, px inside a row
    return blocks.reshape(gh * gw, 3 * TEMPORAL * PATCH * PATCH)


def window_of_groups(gh: int, gw: int) -> list:
    """Window id of each merge group (raster order) for Qwen2.5-VL's window attention."""
    side = WINDOW_SIZE // MERGE // PATCH
    mh, mw = gh // MERGE, gw // MERGE
    per_row = -(-mw // side)
    return [(g // mw) // side * per_row + (g % mw) // side for g in range(mh * mw)]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def vision_reference(visual, family: str, rows: torch.Tensor, grid: list):
    """The vision tower in raster order of merge groups, windows as attention masks. Returns the hidden state entering
    the merger (pixel_values' row order), the merger output, and the order Qwen2.5-VL's tower sees the groups in."""
    _, gh, gw = grid
    weight = visual.patch_embed.proj.weight
    embed = weight.shape[0]
    x = rows @ weight.reshape(embed, -1).T
    n = rows.shape[0]
    r = torch.arange(n)
    g = r // (MERGE * MERGE)
    mw = gw // MERGE
    py = MERGE * (g // mw) + (r % (MERGE * MERGE)) // MERGE
    px = MERGE * (g % mw) + r % MERGE
    heads = visual.config.num_heads
    hd = embed // heads
    freqs = 1.0 / (VISION_ROPE_THETA ** (torch.arange(0, hd // 2, 2, dtype=torch.float32) / (hd // 2)))
    ang = torch.cat([py[:, None].float() * freqs, px[:, None].float() * freqs], dim=-1)
    ang = torch.cat([ang, ang], dim=-1)[:, None, :]
    cos, sin = ang.cos(), ang.sin()
    windows = torch.tensor(window_of_groups(gh, gw))[g]
    same_window = windows[:, None] == windows[None, :]
    for i, blk in enumerate(visual.blocks):
        full = family == "qwen2-vl" or i in FULLATT_BLOCKS
        qkv = blk.attn.qkv(blk.norm1(x)).reshape(n, 3, heads, hd)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = torch.einsum("nhd,mhd->hnm", q, k) * hd ** -0.5
        if not full:
            scores = scores.masked_fill(~same_window, float("-inf"))
        out = torch.einsum("hnm,mhd->nhd", scores.softmax(dim=-1), v).reshape(n, embed)
        x = x + blk.attn.proj(out)
        x = x + blk.mlp(blk.norm2(x))
    merger = visual.merger
    merged = merger.mlp(merger.ln_q(x).reshape(-1, embed * MERGE * MERGE))
    win = window_of_groups(gh, gw)
    order = sorted(range(len(win)), key=lambda j: (win[j], j))
    return x, merged, order


def mrope_positions(ids: list, image_token: int, grids: list) -> tuple:
    """get_rope_index's rule as documented above."""
    pos = [[], [], []]
    cur, i, image = 0, 0, 0
    while i < len(ids):
        if ids[i] == image_token:
            mh, mw = grids[image][1] // MERGE, grids[image][2] // MERGE
            for k in range(mh * mw):
                pos[0].append(cur)
                pos[1].append(cur + k // mw)
                pos[2].append(cur + k % mw)
            i += mh * mw
            cur += max(mh, mw)
            image += 1
        else:
            for axis in pos:
                axis.append(cur)
            cur += 1
            i += 1
    return pos, max(max(axis) for axis in pos) + 1 - len(ids)


# MARK: - Cases


def close(a: torch.Tensor, b: torch.Tensor, what: str, atol: float = 2e-5) -> None:
    err = (a - b).abs().max().item()
    assert torch.allclose(a, b, rtol=1e-4, atol=atol), (what, err)


def floats(t) -> list:
    return [f32(v) for v in np.asarray(t, dtype=np.float32).reshape(-1)]


def matrix(t) -> list:
    return [floats(row) for row in np.asarray(t, dtype=np.float32)]


def load_processor(family: str, d: str):
    """The processor from the saved files; the flat and the nested image processor settings agree."""
    ip = Qwen2VLImageProcessorPil.from_pretrained(d)
    with open(os.path.join(d, "processor_config.json"), encoding="utf-8") as fh:
        nested = json.load(fh)["image_processor"]
    assert Qwen2VLImageProcessorPil(**nested).to_dict() == ip.to_dict()
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS), ip.size
    with open(os.path.join(d, "chat_template.jinja"), encoding="utf-8") as fh:
        template = fh.read()
    assert template == CHAT_TEMPLATE
    return FAMILIES[family]["processor"](image_processor=ip, tokenizer=AutoTokenizer.from_pretrained(d),
                                         chat_template=template)


def run_family(family: str, d: str, state: dict, cases: list, fixtures: str, out_dir: str) -> tuple:
    processor = load_processor(family, d)
    ip = processor.image_processor
    model = FAMILIES[family]["model"].from_pretrained(d, dtype=torch.float32).eval()
    loaded = model.state_dict()
    assert sorted(loaded) == sorted(state), set(loaded) ^ set(state)
    for k, v in loaded.items():
        assert v.dtype == torch.float32 and torch.equal(v, state[k]), k
    cfg = model.config
    built = build_config(family, processor.tokenizer)
    for sub in ("text_config", "vision_config"):  # the flat 4.x config.json reads back to the same settings
        want, got = getattr(built, sub).to_dict(), getattr(cfg, sub).to_dict()
        got["rope_parameters"] = {k: v for k, v in got["rope_parameters"].items() if k != "type"}  # 4.x "mrope"
        for key in want:
            # tie_word_embeddings is read from the top level; initializer_range only matters for building
            if key not in ("dtype", "transformers_version", "tie_word_embeddings", "initializer_range"):
                assert got.get(key) == want[key], (family, sub, key, got.get(key), want[key])
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert getattr(cfg, key) == getattr(built, key), key
    assert not cfg.tie_word_embeddings
    assert cfg.text_config.rope_parameters["mrope_section"] == MROPE_SECTION
    assert cfg.text_config.rope_parameters["rope_theta"] == ROPE_THETA
    assert cfg.vision_config.rope_parameters["rope_theta"] == VISION_ROPE_THETA
    model.generation_config.eos_token_id = None  # always NEW_TOKENS tokens
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    image_token = processor.image_token_id
    visual = model.model.visual
    clear(out_dir)
    records = []
    for ci, (name, image_paths, messages) in enumerate(cases):
        images = [load_image(fixtures, p) for p in image_paths]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(images=images or None, text=text, return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        n = len(ids)
        rec = {"name": name, "images": image_paths, "messages": messages, "text": text, "input_ids": ids,
               "num_image_tokens": sum(1 for t in ids if t == image_token)}
        grids = inputs["image_grid_thw"].tolist() if images else []
        per_image = []
        if images:
            pv = inputs["pixel_values"]
            with torch.no_grad():
                vision = model.model.get_image_features(pv, inputs["image_grid_thw"])
            starts = [i for i in range(n) if ids[i] == image_token and (i == 0 or ids[i - 1] != image_token)]
            first_patch = 0
            for i, (im, grid) in enumerate(zip(images, grids)):
                t, gh, gw = grid
                num_patches, num_tokens = t * gh * gw, t * gh * gw // (MERGE * MERGE)
                resized = [gh * PATCH, gw * PATCH]
                assert t == 1 and tuple(resized) == resized_size(im.height, im.width) == smart_resize(
                    im.height, im.width, PATCH * MERGE, MIN_PIXELS, MAX_PIXELS)
                rows = pv[first_patch:first_patch + num_patches]
                assert np.array_equal(rows.numpy(), pixel_rows(im, ip.image_mean, ip.image_std)), (name, i)
                assert ids[starts[i]:starts[i] + num_tokens] == [image_token] * num_tokens
                assert ids[starts[i] - 1] == processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
                assert ids[starts[i] + num_tokens] == processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
                merged = vision.pooler_output[i]
                pre = vision.last_hidden_state[first_patch:first_patch + num_patches]
                with torch.no_grad():
                    ref_pre, ref_merged, order = vision_reference(visual, family, rows, grid)
                    alone = model.model.get_image_features(rows, inputs["image_grid_thw"][i:i + 1])
                close(alone.pooler_output[0], merged, f"{name} image {i} alone")
                close(merged, ref_merged, f"{name} merger output")  # raster order of merge groups
                if family == "qwen2-vl":
                    close(pre, ref_pre, f"{name} pre-merger")
                else:
                    window_index, _ = get_vision_window_index(torch.tensor([grid]), MERGE, WINDOW_SIZE, PATCH)
                    assert window_index.tolist() == order, (name, window_index.tolist(), order)
                    groups = ref_pre.reshape(-1, MERGE * MERGE, ref_pre.shape[-1])
                    close(pre, groups[order].reshape(ref_pre.shape), f"{name} pre-merger (window order)")
                win = window_of_groups(gh, gw)
                first_window = win.count(win[0])
                k = MERGE * MERGE * first_window if first_window < len(win) else 16
                pre_idx = [0, 1, k, k + 1]
                rows64 = rows.numpy().astype(np.float64)
                info = {"image_size": [im.height, im.width], "resized": resized, "grid_thw": grid,
                        "num_patches": num_patches, "num_tokens": num_tokens, "token_start": starts[i],
                        "pixel_values": {"shape": list(rows.shape), "sum": float(rows64.sum()),
                                         "sum_sq": float((rows64 * rows64).sum())},
                        "merger_row_sums": floats(merged.sum(dim=-1)), "merger_rows": matrix(merged[:4])}
                if ci == 0:
                    info["merger_output"] = matrix(merged)
                info["pre_merger"] = {"indices": pre_idx, "rows": matrix(pre[pre_idx]),
                                      "row_sums": floats(pre.sum(dim=-1))}
                if family == "qwen2.5-vl":
                    info["window_order"] = order
                per_image.append(info)
                first_patch += num_patches
            assert first_patch == pv.shape[0]
            rec["pixel_values_shape"] = list(pv.shape)
            if ci == 0:  # one file for both families: their processors are the same
                data = np.ascontiguousarray(pv.numpy().astype("<f4")).tobytes(order="C")
                fname = os.path.join(fixtures, PIXEL_VALUES_DIR, f"{name}.pixel_values.bin")
                if os.path.isfile(fname):
                    with open(fname, "rb") as fh:
                        assert fh.read() == data, fname
                else:
                    with open(fname, "wb") as fh:
                        fh.write(data)
                rec["pixel_values_file"] = {"file": os.path.relpath(fname, fixtures), "dtype": "float32",
                                            "order": "C, little-endian", "shape": list(pv.shape)}
            position_ids, deltas = model.model.get_rope_index(
                inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs["attention_mask"])
            positions, delta = position_ids[:, 0].tolist(), int(deltas[0, 0])
        else:
            assert "pixel_values" not in inputs
            positions, delta = [list(range(n))] * 3, 0
        rec["per_image"] = per_image
        assert mrope_positions(ids, image_token, grids) == (positions, delta), name
        rec["position_ids"] = positions
        rec["rope_deltas"] = delta

        with torch.no_grad():
            logits = model(**inputs, use_cache=False).logits[0]
        rec["logits_last_position"] = n - 1
        rec["logits_last"] = floats(logits[n - 1])
        rec["logits_rows"] = [{"position": p, "logits": floats(logits[p])} for p in rows_for(n)]
        rec["argmax_last"] = int(logits[n - 1].argmax())

        with torch.no_grad():
            gen = model.generate(**inputs, do_sample=False, max_new_tokens=NEW_TOKENS, output_logits=True,
                                 return_dict_in_generate=True)
        new = gen.sequences[0, n:].tolist()
        assert len(new) == NEW_TOKENS and new[0] == rec["argmax_last"], (name, new)
        close(gen.logits[0][0], logits[n - 1], f"{name} generate step 0")
        # the same tokens from one forward over prompt + generated, positions continuing at index + rope_deltas
        full = torch.tensor([ids + new[:-1]])
        extra = torch.arange(n, n + NEW_TOKENS - 1) + delta
        full_pos = torch.cat([torch.tensor(positions), extra.expand(3, -1)], dim=1)[:, None, :]
        kwargs = {k: v for k, v in inputs.items() if k in ("pixel_values", "image_grid_thw")}
        mm = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, NEW_TOKENS - 1, dtype=torch.long)], dim=1)
        with torch.no_grad():
            out = model(input_ids=full, attention_mask=torch.ones_like(full), position_ids=full_pos,
                        mm_token_type_ids=mm, use_cache=False, **kwargs).logits[0]
            plain = model(input_ids=full, attention_mask=torch.ones_like(full), mm_token_type_ids=mm,
                          position_ids=torch.arange(full.shape[1])[None, None, :].expand(3, 1, -1),
                          use_cache=False, **kwargs).logits[0]
        assert out[n - 1:].argmax(dim=-1).tolist() == new, name
        close(out[n - 1], logits[n - 1], f"{name} full forward prefill")
        close(gen.logits[1][0], out[n], f"{name} decode step vs full forward")
        if images:  # the reference depends on the 3-axis positions
            assert (plain[n - 1] - out[n - 1]).abs().max() > 1e-3, name
        rec["generated"] = new
        top = gen.logits[1][0].topk(DECODE_TOP)
        rec["decode_step"] = {"index": n, "input_token": new[0], "position": n + delta, "argmax": new[1],
                              "top_ids": top.indices.tolist(), "top_logits": floats(top.values)}
        records.append(rec)
        print(f"{family:10s} {name:14s} tokens {n:4d}  image tokens {rec['num_image_tokens']:4d}  "
              f"grids {grids}  rope_deltas {delta}  generated {new}")
    return records, model


def manifest_for(family: str, d: str, fixtures: str, model, tok, records: list) -> dict:
    vc = model.config.vision_config
    settings = {"mrope_section": MROPE_SECTION, "rope_theta": ROPE_THETA, "vision_rope_theta": VISION_ROPE_THETA,
                "head_dim": 16, "hidden_size": 64, "vision_depth": vc.depth, "vision_heads": vc.num_heads,
                "spatial_merge_size": MERGE, "patch_size": PATCH, "temporal_patch_size": TEMPORAL,
                "merger_output_size": 64}
    if family == "qwen2-vl":
        settings.update(vision_embed_dim=vc.embed_dim, vision_mlp_ratio=vc.mlp_ratio, vision_act=vc.hidden_act,
                        vision_norm="LayerNorm eps 1e-6", merger_norm="LayerNorm eps 1e-6")
    else:
        settings.update(vision_hidden_size=vc.hidden_size, vision_intermediate_size=vc.intermediate_size,
                        vision_act=vc.hidden_act, vision_norm="RMSNorm eps 1e-6", merger_norm="RMSNorm eps 1e-6",
                        window_size=WINDOW_SIZE, window_merge_groups=WINDOW_SIZE // MERGE // PATCH,
                        fullatt_block_indexes=FULLATT_BLOCKS)
    ip = json.load(open(os.path.join(d, "processor_config.json"), encoding="utf-8"))["image_processor"]
    return {
        "format": 1,
        "generator": "tools/make_qwen_vl_fixtures.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "family": family,
        "checkpoint": os.path.relpath(d, fixtures),
        "processor": {"class": FAMILIES[family]["processor"].__name__, "image_processor": "Qwen2VLImageProcessorPil",
                      "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "patch_size": PATCH, "merge_size": MERGE,
                      "temporal_patch_size": TEMPORAL, "image_mean": ip["image_mean"], "image_std": ip["image_std"],
                      "rescale_factor": ip["rescale_factor"], "resample": ip["resample"], "resample_name": "BICUBIC"},
        "model": settings,
        "token_ids": token_ids(tok),
        "notes": "images are paths relative to the Fixtures directory; text is the processor's apply_chat_template "
                 "(add_generation_prompt); per_image.merger_* are in raster order of merge groups, pre_merger rows "
                 "in the tower's own order (Qwen2.5-VL: window_order); logits are float32 from the checkpoint's "
                 "weights widened to float32; generated: greedy, EOS disabled; see the script's docstring",
        "cases": records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=FIXTURES)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    fixtures = os.path.normpath(args.fixtures)
    hf = os.path.join(fixtures, "hf")
    layouts = os.path.join(fixtures, "layouts")
    images_dir = os.path.join(layouts, "images")
    names = {(w, h): f"img_{w}x{h}.png" for w, h in LAYOUT_IMAGES}
    if not all(os.path.isfile(os.path.join(images_dir, v)) for v in names.values()):
        make_images(images_dir)  # the same bytes make_layout_fixtures.py writes
    big = os.path.join(layouts, "qwen-vl-images", "img_{}x{}.png".format(*BIG_IMAGE))
    clear(os.path.dirname(big))
    make_big_image(big)
    path = {s: f"layouts/images/{names[s]}" for s in LAYOUT_IMAGES}
    path[BIG_IMAGE] = os.path.relpath(big, fixtures)

    def ask(question, *sizes):
        parts = []
        for i, s in enumerate(sizes):
            parts.append({"type": "image"})
            if i + 1 < len(sizes):
                parts.append({"type": "text", "text": " and "})
        return [{"role": "user", "content": parts + [{"type": "text", "text": question}]}]

    cases = [(os.path.splitext(os.path.basename(path[s]))[0], [path[s]], ask("What is shown here?", s))
             for s in LAYOUT_IMAGES + [BIG_IMAGE]]
    cases.append(("two_images", [path[(160, 120)], path[(75, 250)]],
                  ask("How do these differ?", (160, 120), (75, 250))))
    cases.append(("text_only", [], [{"role": "user", "content": "Describe a cat sitting on a red chair."}]))

    written = []
    for family in FAMILIES:
        d, state = build(family, hf)
        records, model = run_family(family, d, state, cases, fixtures, os.path.join(layouts, family))
        tok = AutoTokenizer.from_pretrained(d)
        manifest = manifest_for(family, d, fixtures, model, tok, records)
        with open(os.path.join(layouts, family, "cases.json"), "w", encoding="utf-8") as fh:
            fh.write(dump_manifest(manifest, compact_values=True))
        written += [d, os.path.join(layouts, family)]
    written.append(os.path.dirname(big))

    total = 0
    for root in written:
        for r, _, files in sorted(os.walk(root)):
            for f in sorted(files):
                p = os.path.join(r, f)
                total += os.path.getsize(p)
                print(f"{os.path.relpath(p, fixtures):50s} {os.path.getsize(p):>9d} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()

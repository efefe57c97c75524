#!/usr/bin/env python3
"""Tiny random LLaVA-NeXT, Idefics3 and SmolVLM checkpoints plus what their real transformers processors and
models make of a few images (and the same for LLaVA-1.5 with the existing hf/llava-4x checkpoint), so vzquant's
prompt layout, preprocessing and prefill can be checked against them.

Writes, under FIXTURES = Tests/VZQuantTests/Fixtures:
  hf/llava-next/     LlavaNextForConditionalGeneration (CLIP ViT 32x32/patch 8 + Llama), F16, under the names
                     transformers 4.x checkpoints use on disk (vision_tower.vision_model.*, multi_modal_projector.*,
                     language_model.model.*, language_model.lm_head.weight, image_newline)
  hf/llava-next-5x/  the same weights, BF16, under transformers 5.x in-memory names (model.vision_tower.*,
                     model.multi_modal_projector.*, model.language_model.*, lm_head.weight, model.image_newline).
                     The weights are rounded so F16 and BF16 hold exactly the same values.
  hf/idefics3/       Idefics3ForConditionalGeneration (SigLIP-like ViT, pixel-shuffle connector, Llama), F16
  hf/smolvlm/        SmolVLMForConditionalGeneration, same shapes, BF16 (both: model.vision_model.*,
                     model.connector.modality_projection.proj.weight, model.text_model.*, lm_head.weight)
                     Each has config.json, model.safetensors, the tokenizer (trained here, see make_hf_checkpoints.py;
                     BOS added for llava-next and idefics3, not for smolvlm, as the released tokenizers do) and the
                     processor's files as its save_pretrained writes them (processor_config.json with the image
                     processor nested, chat_template.jinja), plus the flat preprocessor_config.json of hub checkpoints.
  hf/llava-4x/       read only (written by make_hf_checkpoints.py, F16, 4.x names; its tokenizer adds no BOS): the
                     "llava" family's model. It has no processor files, so the LLaVA-1.5 processor is built here as
                     llava-hf's checkpoints configure it, scaled to CLIP 32x32/patch 8: LlavaImageProcessorPil with
                     do_pad=True (pad to a square with the mean colour, as LLaVA's expand2square does), resize
                     shortest_edge 32 BICUBIC, center crop 32x32, CLIP mean/std; LlavaProcessor with patch_size 8,
                     strategy "default", 1 additional token, so 16 <image> tokens per image (see "processor" in
                     layouts/llava/cases.json).
  layouts/images/    deterministic PNGs (gradients and a few shapes): 160x120 75x250 250x75 20x16 96x96 300x130
  layouts/<family>/cases.json   per case: the text, the processor's input_ids, image token counts, crops (count,
                     rows/cols or image_sizes), per-crop pixel sums, and the float32 prefill logits of the model (loaded
                     back from the checkpoint above, run in float32) at the last position and 3 other positions.
  layouts/<family>/<case>.pixel_values.bin   the first case's full pixel_values, float32 little-endian, C order,
                     shape as the processor returns it (batch dimension included; see cases.json).

The reference logits come from the checkpoint as stored (F16/BF16 weights widened to float32), so a loader that
reads the files gets the same model. Everything is seeded and single-threaded: re-running reproduces the same bytes.

Needs: pip install --find-links /opt/wheels 'torch==2.13.0+cpu' 'transformers==5.25.0' safetensors pillow num2words
(no torchvision: the PIL image processors are used; SmolVLM's video processor is saved but never run).
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file
from transformers import (
    AutoTokenizer,
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    Idefics3VisionConfig,
    LlamaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
    SmolVLMProcessor,
    SmolVLMVisionConfig,
)
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

# transformers' top-level name is a placeholder that refuses to work without torchvision; the class itself only needs
# torchvision to process videos, which this script never does
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor  # noqa: E402
from transformers.processing_utils import transformers_module  # noqa: E402
from transformers.video_processing_utils import VideoProcessorMixin  # noqa: E402

if not hasattr(transformers_module, "VideoProcessorMixin"):  # ProcessorMixin looks the video base class up there
    transformers_module.VideoProcessorMixin = VideoProcessorMixin

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_hf_checkpoints import llama_tokenizer  # noqa: E402
from quant_manifest import dump_manifest  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "Tests", "VZQuantTests", "Fixtures")

# (width, height) of the test images
IMAGE_SIZES = [(160, 120), (75, 250), (250, 75), (20, 16), (96, 96), (300, 130)]

LLAVA_PROMPT = "USER: <image>\nWhat is shown here? ASSISTANT:"
LLAVA_PROMPT_2 = "USER: <image>\n<image>\nHow do these differ? ASSISTANT:"
IDEFICS_PROMPT = "User:<image>What is shown here?<end_of_utterance>\nAssistant:"
IDEFICS_PROMPT_2 = "User:<image>and<image>differ how?<end_of_utterance>\nAssistant:"

IDEFICS_SPECIAL = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]
# Idefics3/SmolVLM's chat template without the model-specific BOS text (the tokenizer adds its own)
IDEFICS_CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}"
    "{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]  # (height, width)


# MARK: - Images


def make_images(d: str) -> dict:
    """Smooth gradients with a few shapes (small PNGs, but enough structure to show resampling errors)."""
    os.makedirs(d, exist_ok=True)
    names = {}
    for i, (w, h) in enumerate(IMAGE_SIZES):
        y = np.arange(h, dtype=np.float64).reshape(h, 1) / max(h - 1, 1)
        x = np.arange(w, dtype=np.float64).reshape(1, w) / max(w - 1, 1)
        r = 255 * (0.15 + 0.7 * x) * np.ones_like(y)
        g = 255 * (0.9 - 0.8 * y) * np.ones_like(x)
        b = 255 * (0.5 + 0.45 * np.sin(2 * np.pi * (x * (1 + i % 3) + y * 0.5)))
        rgb = np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)
        img = Image.fromarray(rgb, "RGB")
        draw = ImageDraw.Draw(img)
        draw.ellipse([w * 0.1, h * 0.15, w * 0.45, h * 0.6], fill=(230, 40 + 30 * i, 30))
        draw.rectangle([w * 0.55, h * 0.5, w * 0.9, h * 0.85], fill=(20, 30, 200 - 20 * i))
        draw.line([0, h - 1, w - 1, 0], fill=(255, 255, 255), width=max(1, min(w, h) // 20))
        name = f"img_{w}x{h}.png"
        img.save(os.path.join(d, name), optimize=True)
        names[(w, h)] = name
    return names


def load_image(d: str, name: str) -> Image.Image:
    with Image.open(os.path.join(d, name)) as im:
        return im.convert("RGB")


# MARK: - Models


def text_config(tok) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=None, tie_word_embeddings=False,
    )


def randomise(model, seed: int) -> None:
    """Non-trivial norms and biases, so a loader that drops them is caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias") or "norm" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif name.endswith("image_newline"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def round_f16_bf16(model) -> None:
    """Round every weight to a value F16 and BF16 both hold exactly (BF16 rounding, tiny values flushed)."""
    with torch.no_grad():
        for p in model.parameters():
            v = p.to(torch.bfloat16).to(torch.float32)
            v[v.abs() < 2.0**-14] = 0.0
            assert torch.equal(v.to(torch.float16).to(torch.float32), v)
            p.copy_(v)


def save_state(state: dict, d: str, dtype) -> None:
    os.makedirs(d, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in sorted(state.items())}
    save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})


def save_processor(processor, d: str) -> None:
    """processor_config.json (5.x: the image processor nested in it) and the tokenizer/chat template files as the
    processor's save_pretrained writes them, plus the flat preprocessor_config.json that hub checkpoints carry."""
    processor.save_pretrained(d)
    processor.image_processor.save_pretrained(d)


def write_config(config, d: str, dtype) -> None:
    config.dtype = dtype  # what the safetensors file holds, as released checkpoints record it
    config.save_pretrained(d)


def llava_4x_name(k: str) -> str:
    """transformers 5.x in-memory name -> the name transformers 4.x llava-hf checkpoints use on disk."""
    if k.startswith("model.vision_tower."):
        return "vision_tower.vision_model." + k[len("model.vision_tower."):]
    if k.startswith("model.language_model."):
        return "language_model.model." + k[len("model.language_model."):]
    if k == "lm_head.weight":
        return "language_model.lm_head.weight"
    assert k.startswith("model."), k
    return k[len("model."):]


def clear(d: str) -> None:
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)


def build_llava_next(hf: str):
    tok = llama_tokenizer(400)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.add_bos_token = True
    image_token = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )
    config = LlavaNextConfig(
        vision_config=vision, text_config=text_config(tok), image_token_index=image_token,
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_grid_pinpoints=PINPOINTS,
        projector_hidden_act="gelu", tie_word_embeddings=False, image_seq_length=16,
    )
    config.architectures = ["LlavaNextForConditionalGeneration"]
    torch.manual_seed(2024)
    model = LlavaNextForConditionalGeneration(config).eval()
    randomise(model, 2025)
    round_f16_bf16(model)

    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS,
        do_pad=True, do_center_crop=True, do_resize=True, do_rescale=True, do_normalize=True, do_convert_rgb=True,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tok.chat_template,
    )

    state = model.state_dict()
    d4 = os.path.join(hf, "llava-next")
    d5 = os.path.join(hf, "llava-next-5x")
    for d, dtype in ((d4, torch.float16), (d5, torch.bfloat16)):
        clear(d)
        save_processor(processor, d)
        write_config(config, d, dtype)
    save_state({llava_4x_name(k): v for k, v in state.items()}, d4, torch.float16)
    save_state(dict(state), d5, torch.bfloat16)
    return d4, [d5], {k: v.clone() for k, v in state.items()}


def build_idefics(hf: str, family: str):
    smol = family == "smolvlm"
    tok = llama_tokenizer(400)
    tok.add_special_tokens({"additional_special_tokens": IDEFICS_SPECIAL})
    tok.add_bos_token = not smol  # Idefics3's Llama 3 tokenizer adds a BOS, SmolVLM's SmolLM2 tokenizer does not
    tok.chat_template = None
    image_token = tok.convert_tokens_to_ids("<image>")
    vcfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                image_size=32, patch_size=8, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    vision = (SmolVLMVisionConfig if smol else Idefics3VisionConfig)(**vcfg)
    cls_config = SmolVLMConfig if smol else Idefics3Config
    config = cls_config(
        vision_config=vision, text_config=text_config(tok), scale_factor=2, image_token_id=image_token,
        tie_word_embeddings=False, pad_token_id=None,
    )
    config.architectures = ["SmolVLMForConditionalGeneration" if smol else "Idefics3ForConditionalGeneration"]
    cls_model = SmolVLMForConditionalGeneration if smol else Idefics3ForConditionalGeneration
    torch.manual_seed(3030 if smol else 3003)
    model = cls_model(config).eval()
    randomise(model, 3031 if smol else 3004)
    round_f16_bf16(model)
    dtype = torch.bfloat16 if smol else torch.float16

    ip_cls = SmolVLMImageProcessorPil if smol else Idefics3ImageProcessorPil
    image_processor = ip_cls(size={"longest_edge": 128}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
    if smol:
        video = SmolVLMVideoProcessor(size={"longest_edge": 128}, max_image_size={"longest_edge": 32})
        processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video,
                                     image_seq_len=4, chat_template=IDEFICS_CHAT_TEMPLATE)
    else:
        processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                                      chat_template=IDEFICS_CHAT_TEMPLATE)

    d = os.path.join(hf, family)
    clear(d)
    save_processor(processor, d)
    write_config(config, d, dtype)
    save_state(model.state_dict(), d, dtype)
    return d, [], {k: v.clone() for k, v in model.state_dict().items()}


def llava_5x_name(k: str) -> str:
    """Name in hf/llava-4x's file (what transformers 5.x save_pretrained writes for LlavaForConditionalGeneration)
    -> the in-memory name."""
    if k.startswith("language_model.model."):
        return "model.language_model." + k[len("language_model.model."):]
    if k == "language_model.lm_head.weight":
        return "lm_head.weight"
    assert k.startswith(("vision_tower.", "multi_modal_projector.")), k
    return "model." + k


LLAVA_IMAGE_PROCESSOR = dict(
    size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, resample=3,  # PIL BICUBIC
    do_pad=True, do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True, do_convert_rgb=True,
)
LLAVA_PROCESSOR = dict(patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
                       image_token="<image>")


def llava_processor(ckpt: str) -> LlavaProcessor:
    return LlavaProcessor(image_processor=LlavaImageProcessorPil(**LLAVA_IMAGE_PROCESSOR),
                          tokenizer=AutoTokenizer.from_pretrained(ckpt), **LLAVA_PROCESSOR)


def load_llava(hf: str):
    """The existing LLaVA-1.5 checkpoint (left untouched) and its weights widened to float32, under 5.x names."""
    d = os.path.join(hf, "llava-4x")
    state = {llava_5x_name(k): v.to(torch.float32) for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    return d, [], state


def expand2square(im: Image.Image, colour: tuple) -> Image.Image:
    """LLaVA's own padding (llava/mm_utils.py), to check the processor's."""
    w, h = im.size
    if w == h:
        return im
    out = Image.new(im.mode, (max(w, h), max(w, h)), colour)
    out.paste(im, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return out


# MARK: - References


def f32(x) -> float:
    """A float32 as the shortest decimal that reads back to it."""
    return float(str(np.float32(x)))


def crop_stats(crops: np.ndarray) -> list:
    out = []
    for c in crops:
        c64 = c.astype(np.float64)
        out.append({"shape": list(c.shape), "sum": float(c64.sum()), "sum_sq": float((c64 * c64).sum())})
    return out


def logits_at(model, inputs) -> np.ndarray:
    with torch.no_grad():
        out = model(**inputs, use_cache=False)
    return out.logits[0].float().numpy()


def rows_for(n: int) -> list:
    rows = sorted({min(n - 2, max(0, round(n * k / 4))) for k in (1, 2, 3)})
    assert len(rows) == 3 and n - 1 not in rows, (n, rows)
    return rows


def run_family(family: str, ckpt: str, alt_ckpts: list, state: dict, cases: list, images_dir: str, out_dir: str) -> list:
    """cases: (name, [image names], text, extra processor kwargs)."""
    proc_cls = {"llava-next": LlavaNextProcessor, "idefics3": Idefics3Processor, "smolvlm": SmolVLMProcessor,
                "llava": LlavaProcessor}[family]
    model_cls = {"llava-next": LlavaNextForConditionalGeneration, "idefics3": Idefics3ForConditionalGeneration,
                 "smolvlm": SmolVLMForConditionalGeneration, "llava": LlavaForConditionalGeneration}[family]
    if family == "smolvlm":  # AutoVideoProcessor refuses without torchvision: load the parts from the saved files
        saved = json.load(open(os.path.join(ckpt, "processor_config.json"), encoding="utf-8"))
        processor = SmolVLMProcessor(
            image_processor=SmolVLMImageProcessorPil.from_pretrained(ckpt),
            tokenizer=AutoTokenizer.from_pretrained(ckpt),
            video_processor=SmolVLMVideoProcessor.from_pretrained(ckpt),
            image_seq_len=saved["image_seq_len"],
        )
    elif family == "llava":  # the checkpoint has no processor files
        processor = llava_processor(ckpt)
    else:
        processor = proc_cls.from_pretrained(ckpt)
    model = model_cls.from_pretrained(ckpt, dtype=torch.float32).eval()
    alts = [model_cls.from_pretrained(d, dtype=torch.float32).eval() for d in alt_ckpts]
    # every file loads to exactly the weights built here (the 4.x names of llava-next included)
    for m in [model] + alts:
        loaded = m.state_dict()
        assert sorted(loaded) == sorted(state), set(loaded) ^ set(state)
        for k, v in loaded.items():
            assert v.dtype == torch.float32 and torch.equal(v, state[k]), k
    image_token_id = processor.image_token_id
    clear(out_dir)
    records = []
    for ci, (name, image_names, text, kwargs) in enumerate(cases):
        images = [load_image(images_dir, n) for n in image_names]
        inputs = processor(images=images, text=text, return_tensors="pt", **kwargs)
        ids = inputs["input_ids"][0].tolist()
        n_image_tokens = sum(1 for t in ids if t == image_token_id)
        pv = inputs["pixel_values"].numpy().astype(np.float32)
        rec = {"name": name, "images": image_names, "text": text}
        if kwargs:
            rec["processor_kwargs"] = kwargs
        rec["input_ids"] = ids
        rec["image_token_id"] = image_token_id
        rec["num_image_tokens"] = n_image_tokens
        per_image = []
        if family == "llava-next":
            sizes = inputs["image_sizes"].tolist()
            expected = processor._get_num_multimodal_tokens(image_sizes=sizes)["num_image_tokens"]
            assert sum(expected) == n_image_tokens, (expected, n_image_tokens)
            crops = []
            for i, (hw, im) in enumerate(zip(sizes, images)):
                assert hw == [im.height, im.width]
                n = image_size_to_num_patches(hw, PINPOINTS, 32)
                best = transformers.image_processing_utils.select_best_resolution(hw, PINPOINTS)
                assert not pv[i, n:].any()  # crops past n are batch padding
                crops.append(pv[i, :n])
                per_image.append({"image_size": hw, "best_resolution": list(best), "num_crops": n,
                                  "num_image_tokens": expected[i],
                                  "crops": crop_stats(pv[i, :n])})
        elif family == "llava":
            ip = processor.image_processor
            expected = processor._get_num_multimodal_tokens(
                image_sizes=[[im.height, im.width] for im in images])["num_image_tokens"]
            assert expected == [16] * len(images) and sum(expected) == n_image_tokens, (expected, n_image_tokens)
            assert pv.shape == (len(images), 3, 32, 32), pv.shape
            mean_colour = tuple(int(x * 255) for x in ip.image_mean)
            plain = LlavaImageProcessorPil(**{**LLAVA_IMAGE_PROCESSOR, "do_pad": False})
            for i, im in enumerate(images):
                # the processor's padding is LLaVA's expand2square with the mean colour
                ref = plain(expand2square(im, mean_colour), return_tensors="np")["pixel_values"][0]
                assert np.array_equal(ref, pv[i]), i
                per_image.append({"image_size": [im.height, im.width], "num_crops": 1,
                                  "num_image_tokens": expected[i], "crops": crop_stats(pv[i:i + 1])})
        else:
            ip = processor.image_processor
            info = ip([images], return_row_col_info=True, **kwargs)
            assert np.array_equal(info["pixel_values"], pv)
            rows, cols = info["rows"][0], info["cols"][0]
            mask = inputs["pixel_attention_mask"].numpy()
            start = 0
            expected = processor._get_num_multimodal_tokens(
                image_sizes=[[im.height, im.width] for im in images], **kwargs)["num_image_tokens"]
            for i, im in enumerate(images):
                n = rows[i] * cols[i] + 1 if rows[i] else 1
                assert mask[0, start:start + n].all()  # every crop is full size
                per_image.append({"image_size": [im.height, im.width], "rows": rows[i], "cols": cols[i],
                                  "num_crops": n, "num_image_tokens": expected[i],
                                  "crops": crop_stats(pv[0, start:start + n])})
                start += n
            assert start == pv.shape[1] and sum(expected) == n_image_tokens
        rec["per_image"] = per_image
        rec["pixel_values_shape"] = list(pv.shape)
        if ci == 0:
            fname = f"{name}.pixel_values.bin"
            with open(os.path.join(out_dir, fname), "wb") as fh:
                fh.write(np.ascontiguousarray(pv.astype("<f4")).tobytes(order="C"))
            rec["pixel_values_file"] = {"file": fname, "dtype": "float32", "order": "C, little-endian",
                                        "shape": list(pv.shape)}
        # a forward that succeeds means the model consumed exactly the processor's image tokens
        logits = logits_at(model, inputs)
        for alt in alts:
            assert np.array_equal(logits_at(alt, inputs), logits)
        n = len(ids)
        rows_idx = rows_for(n)
        rec["logits_last_position"] = n - 1
        rec["logits_last"] = [f32(v) for v in logits[n - 1]]
        rec["logits_rows"] = [{"position": p, "logits": [f32(v) for v in logits[p]]} for p in rows_idx]
        rec["argmax_last"] = int(np.argmax(logits[n - 1]))
        records.append(rec)
        crops_total = sum(p["num_crops"] for p in per_image)
        print(f"{family:10s} {name:22s} tokens {n:4d}  image tokens {n_image_tokens:4d}  crops {crops_total:3d}  "
              f"pixel_values {list(pv.shape)}")
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=FIXTURES)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    hf = os.path.join(args.fixtures, "hf")
    layouts = os.path.join(args.fixtures, "layouts")
    images_dir = os.path.join(layouts, "images")
    clear(images_dir)
    names = make_images(images_dir)
    single = [names[s] for s in IMAGE_SIZES]
    pair = [names[(160, 120)], names[(75, 250)]]

    families = {
        "llava-next": (build_llava_next(hf), LLAVA_PROMPT, LLAVA_PROMPT_2),
        "idefics3": (build_idefics(hf, "idefics3"), IDEFICS_PROMPT, IDEFICS_PROMPT_2),
        "smolvlm": (build_idefics(hf, "smolvlm"), IDEFICS_PROMPT, IDEFICS_PROMPT_2),
        "llava": (load_llava(hf), LLAVA_PROMPT, LLAVA_PROMPT_2),
    }
    for family, ((ckpt, alts, state), prompt, prompt2) in families.items():
        cases = [(os.path.splitext(n)[0], [n], prompt, {}) for n in single]
        cases.append(("two_images", pair, prompt2, {}))
        if family == "idefics3":
            cases += [(os.path.splitext(n)[0] + "_nosplit", [n], prompt, {"do_image_splitting": False})
                      for n in (names[(160, 120)], names[(75, 250)])]
        records = run_family(family, ckpt, alts, state, cases, images_dir, os.path.join(layouts, family))
        manifest = {
            "format": 1,
            "generator": "tools/make_layout_fixtures.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "family": family,
            "checkpoint": os.path.relpath(ckpt, args.fixtures),
            "images_dir": "layouts/images",
            "notes": "input_ids are the processor's (raw text, no chat template); logits are float32 from the "
                     "checkpoint's weights widened to float32; per_image.crops lists each real crop of "
                     "pixel_values in order ([3,H,W], sums in float64); pixel_values_shape includes batch padding",
        }
        if family == "llava":  # built here, not saved in the checkpoint
            manifest["processor"] = {
                "class": "LlavaProcessor", "tokenizer": "the checkpoint's (AutoTokenizer), adds no BOS",
                **LLAVA_PROCESSOR, "image_processor_class": "LlavaImageProcessorPil",
                "image_processor": llava_processor(ckpt).image_processor.to_dict(),
            }
        manifest["cases"] = records
        with open(os.path.join(layouts, family, "cases.json"), "w", encoding="utf-8") as fh:
            fh.write(dump_manifest(manifest, compact_values=True))

    total = 0
    for root in [os.path.join(hf, d) for d in ("llava-next", "llava-next-5x", "idefics3", "smolvlm")] + [layouts]:
        for r, _, files in sorted(os.walk(root)):
            for f in sorted(files):
                p = os.path.join(r, f)
                total += os.path.getsize(p)
                print(f"{os.path.relpath(p, args.fixtures):55s} {os.path.getsize(p):>9d} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()

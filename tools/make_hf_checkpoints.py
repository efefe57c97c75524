#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints for vzquant's converter and model tests.

Writes, under OUT (default Tests/VZQuantTests/Fixtures/hf):
  llava-4x/     LlavaForConditionalGeneration (CLIP ViT + Llama) as transformers 4.x names it on disk
                (vision_tower.vision_model.*, language_model.model.*, language_model.lm_head.*)
  llava-5x/     the same weights under transformers 5.x names (model.vision_tower.*, model.language_model.*,
                model.multi_modal_projector.*, lm_head.*)
  qwen2/        Qwen2ForCausalLM (q/k/v biases, tied embeddings, GPT-2 byte-level BPE tokenizer), F32
The LLaVA pair holds the same model, stored as F16 (4.x) and BF16 (5.x) as released checkpoints are.
Each has config.json, model.safetensors and a tokenizer (tokenizer.json + tokenizer_config.json) trained here on
a small corpus, so the files are a few hundred KB. Seeds are fixed: re-running reproduces the same bytes.

Needs: pip install --find-links /opt/wheels 'torch==2.13.0+cpu' transformers tokenizers safetensors
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlamaTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A picture of a cat sitting on a red chair next to the window.",
    "What is shown in this image? Describe it in one sentence.",
    "USER: <image>\nWhat colour is the car? ASSISTANT: The car is blue.",
    "def main():\n    print('hello, world')\n    return 0\n",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 and dates 2024-11-23.",
    "Édouard a vu un château; München, Zürich, São Paulo, naïve café.",
    "日本語のテキストと中文文本 and emoji 🙂🚀 mixed in.",
    "    indented    text   with   runs   of   spaces\t\tand tabs",
] * 20

LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {{ message['content'] }} "
    "{% else %}ASSISTANT: {{ message['content'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def llama_tokenizer(vocab_size: int) -> LlamaTokenizer:
    """SentencePiece-style BPE with byte fallback, as Llama/Vicuna use (▁ marks a space)."""
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    raw = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials + byte_tokens, show_progress=False)
    raw.train_from_iterator(CORPUS, trainer)
    model = json.loads(raw.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = LlamaTokenizer(vocab=model["vocab"], merges=merges)
    tok.chat_template = LLAMA_CHAT_TEMPLATE
    return tok


def qwen2_tokenizer(vocab_size: int) -> Qwen2Tokenizer:
    """GPT-2 byte-level BPE as Qwen2 uses it."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(CORPUS, trainer)
    model = json.loads(raw.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return Qwen2Tokenizer(vocab=model["vocab"], merges=merges)


def llava(out: str) -> None:
    tok = llama_tokenizer(400)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_token = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )
    text = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_token, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(1234)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # non-trivial norms, so a converter that drops them is caught
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))

    # 4.x layout (what save_pretrained writes), stored as F16 like llava-hf's checkpoints
    d4 = os.path.join(out, "llava-4x")
    model.to(torch.float16).save_pretrained(d4)
    tok.save_pretrained(d4)

    # 5.x layout (the in-memory names), stored as BF16
    d5 = os.path.join(out, "llava-5x")
    os.makedirs(d5, exist_ok=True)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(d5, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(d4, "config.json"), os.path.join(d5, "config.json"))
    tok.save_pretrained(d5)


def qwen2(out: str) -> None:
    tok = qwen2_tokenizer(400)
    config = Qwen2Config(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )
    torch.manual_seed(99)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    d = os.path.join(out, "qwen2")
    model.save_pretrained(d)
    tok.save_pretrained(d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "Tests", "VZQuantTests", "Fixtures", "hf"))
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    llava(args.out)
    qwen2(args.out)
    for root, _, files in sorted(os.walk(args.out)):
        for f in sorted(files):
            p = os.path.join(root, f)
            print(f"{os.path.relpath(p, args.out):50s} {os.path.getsize(p):>9d} bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference tokenizer metadata for vzquant's TokenizerImport tests, as llama.cpp's convert_hf_to_gguf.py writes it.

For each model directory this runs the same steps convert_hf_to_gguf.py's set_vocab takes (LlamaModel: SentencePiece
tokenizer.model first, then gguf.vocab.LlamaHfVocab for a byte-fallback BPE tokenizer.json, then GPT-2 BPE; Qwen2Model:
SentencePiece, then GPT-2 BPE), with gguf-py's own classes (gguf.SpecialVocab, gguf.LlamaHfVocab) and the
libraries llama.cpp uses (sentencepiece, transformers.AutoTokenizer). The metadata goes through a real
gguf.GGUFWriter, is read back with gguf.GGUFReader, and the tokenizer.* key/value pairs are written, in file order,
to Tests/VZQuantTests/Fixtures/tokenizer/<name>.json:

    {"source": "...", "path": "spm|llama_hf|gpt2", "kv": [{"key": ..., "type": "STRING|UINT32|BOOL|ARRAY", "value": ...,
      "item_type": "STRING|INT32|FLOAT32" (arrays only)}, ...]}

FLOAT32 values are written as their IEEE-754 bit patterns (unsigned ints), so the Swift test compares exactly.

Inputs:
  hf/llava-4x, hf/llava-5x, hf/qwen2     the checkpoints from tools/make_hf_checkpoints.py
  tokenizer/spm/                          made here: a tiny SentencePiece BPE model (byte_fallback) trained with the
                                          sentencepiece package, with config.json (vocab_size larger than the model,
                                          so the [PADn] rows appear), added_tokens.json, tokenizer_config.json
  tokenizer/llama3-bpe/                   made here from the qwen2 tokenizer: Llama-3's pre-tokenizer regex, a
                                          TemplateProcessing that prepends BOS, added special/non-special tokens and
                                          a config vocab_size that needs padding

tokenizer.ggml.pre: convert_hf_to_gguf.py picks it by hashing the token ids of a fixed test text; the hash of these
tiny trained vocabularies matches no known model, so llama.cpp would stop with "BPE pre-tokenizer was not
recognized". vzquant (which cannot run HF tokenizers) derives it from tokenizer.json's pre_tokenizer instead, and
this script applies the same documented rule (pre_from_tokenizer_json below): Qwen2's split regex -> "qwen2" (what
llama.cpp's hash gives for real Qwen2/Qwen2.5 tokenizers), Llama-3's -> "llama-bpe", Digits + ByteLevel ->
"smollm", a bare ByteLevel with its built-in regex (or a Split with the GPT-2 regex) -> "gpt-2", else "default".

Needs: pip install gguf transformers tokenizers sentencepiece   (the Swift tests only read the committed files)
"""
import argparse
import io
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import gguf

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "Tests" / "VZQuantTests" / "Fixtures"

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

SPM_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A picture of a cat sitting on a red chair next to the window.",
    "USER: <image>\nWhat colour is the car? ASSISTANT: The car is blue.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and dates 2024-11-23.",
    "Édouard a vu un château; München, Zürich, naïve café. 日本語 🙂",
] * 40


# ---------------------------------------------------------------------------------------------------------------
# inputs made here

def make_spm(out: Path) -> None:
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    # trained from an iterator into memory, so no temporary path ends up in the model's trainer_spec and
    # re-running gives the same bytes
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS), model_writer=model, model_type="bpe", vocab_size=360,
        byte_fallback=True, character_coverage=1.0, user_defined_symbols=["<image>"],
        control_symbols=["<ctrl>"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        minloglevel=2, normalization_rule_name="identity", seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
    )
    (out / "tokenizer.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    n = sp.vocab_size()
    # one appended token (added_tokens.json), one renamed by added_tokens_decoder, and two [PADn] rows
    (out / "added_tokens.json").write_text(json.dumps({"<extra_0>": n}, indent=2) + "\n", encoding="utf-8")
    (out / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": n + 3,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": n + 2, "unk_token_id": n + 10,
    }, indent=2) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": {"content": "<unk>", "special": True},
        "added_tokens_decoder": {
            str(n - 1): {"content": "<|turn|>", "special": False, "normalized": False},
            str(n - 2): {"content": "▁hello▁", "special": False, "normalized": False},
        },
        "chat_template": "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}",
        "tokenizer_class": "LlamaTokenizer",
    }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_llama3_bpe(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    src = FIXTURES / "hf" / "qwen2"
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    n = len(tok["model"]["vocab"])
    tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_REGEX
    tok["normalizer"] = None
    tok["model"]["ignore_merges"] = True
    tok["model"]["merges"] = tok["model"]["merges"][:100]
    tok["added_tokens"] = [
        {"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": n, "content": "<|begin_of_text|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": n + 1, "content": "<|eot_id|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": n + 2, "content": "<|reserved_0|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
        {"id": n + 3, "content": "[tool]", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
    ]
    tok["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [n], "tokens": ["<|begin_of_text|>"]}},
    }
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
        "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eot_id|>{% endfor %}",
    }, indent=2) + "\n", encoding="utf-8")
    (out / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": n + 8,
        "bos_token_id": n, "eos_token_id": [n + 1, 0],
    }, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# convert_hf_to_gguf.py's set_vocab, step by step

def hparams(d: Path) -> dict:
    p = d / "config.json"
    if not p.is_file():
        return {}
    hp = json.loads(p.read_text(encoding="utf-8"))
    if isinstance(hp.get("text_config"), dict):  # TextModel merges text_config over the root
        hp = {**hp, **hp["text_config"]}
    return hp


def looks_special(text: str) -> bool:  # ModelBase.does_token_look_special
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>"))
            or (text.startswith("<unused") and text.endswith(">")))


def vocab_spm(d: Path, hp: dict):  # _create_vocab_sentencepiece
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(d / "tokenizer.model"))
    n = hp.get("vocab_size_per_layer_input") or hp.get("vocab_size") or sp.vocab_size()
    tokens = [f"[PAD{i}]".encode() for i in range(n)]
    scores = [-10000.0] * n
    types = [gguf.TokenType.UNUSED] * n
    for i in range(min(sp.vocab_size(), n)):
        t = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            t = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            t = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            t = gguf.TokenType.BYTE
        tokens[i], scores[i], types[i] = sp.IdToPiece(i).encode(), sp.GetScore(i), t
    if (d / "added_tokens.json").is_file():
        for text, i in json.loads((d / "added_tokens.json").read_text(encoding="utf-8")).items():
            if i < n:
                tokens[i], scores[i], types[i] = text.encode(), -1000.0, gguf.TokenType.USER_DEFINED
    if (d / "tokenizer_config.json").is_file():
        cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        for key, data in cfg.get("added_tokens_decoder", {}).items():
            i, text = int(key), data["content"]
            if i >= n:
                continue
            if data.get("special") or looks_special(text):
                types[i] = gguf.TokenType.CONTROL
            else:
                text = text.replace("\u2581", " ")
                types[i] = gguf.TokenType.USER_DEFINED
            tokens[i], scores[i] = text.encode(), -1000.0
    # cross-check the base pieces against gguf-py's own SentencePieceVocab
    ref = list(gguf.vocab.SentencePieceVocab(d).sentencepiece_tokens())
    for i, (text, score, _) in enumerate(ref[:n]):
        if i not in range(sp.vocab_size()):
            break
        assert struct.pack("<f", score) == struct.pack("<f", sp.GetScore(i)) and text == sp.IdToPiece(i).encode()
    return tokens, scores, types


def vocab_llama_hf(d: Path):  # _set_vocab_llama_hf
    v = gguf.LlamaHfVocab(d)
    tokens, scores, types = [], [], []
    for text, score, t in v.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(t)
    return tokens, scores, types


def vocab_gpt2(d: Path, hp: dict):  # get_vocab_base
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    n = hp.get("vocab_size", len(tok.vocab))
    assert max(tok.vocab.values()) < n
    reverse = {i: t for t, i in tok.vocab.items()}
    added = tok.get_added_vocab()
    decoder = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(n):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        t = reverse[i]
        if t in added:
            if not decoder[i].normalized:
                t = tok.decode(tok.encode(t, add_special_tokens=False))
            if decoder[i].special or looks_special(t):
                types.append(gguf.TokenType.CONTROL)
            else:
                t = t.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(t)
    return tokens, types


def pre_from_tokenizer_json(tj: dict) -> str:
    """vzquant's rule for tokenizer.ggml.pre (see the module docstring)."""
    pre = tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    splits = [s.get("pattern", {}).get("Regex") for s in steps if s.get("type") == "Split"]
    kinds = [s.get("type") for s in steps]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    if splits == [QWEN2_REGEX]:
        return "qwen2"
    if splits == [LLAMA3_REGEX]:
        return "llama-bpe"
    if splits == [GPT2_REGEX]:
        return "gpt-2"
    if not splits and byte_level and byte_level[0].get("use_regex", True):
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
            return "smollm"
        if kinds == ["ByteLevel"]:
            return "gpt-2"
    print("note: pre-tokenizer not recognised, tokenizer.ggml.pre = default", file=sys.stderr)
    return "default"


def write_gguf(d: Path, path: str) -> str:
    hp = hparams(d)
    w = gguf.GGUFWriter(path, arch="llama")
    if (d / "tokenizer.model").is_file():
        kind = "spm"
        tokens, scores, types = vocab_spm(d, hp)
    else:
        tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        m = tj["model"]
        if m["type"] == "BPE" and m.get("byte_fallback", False) and tj["decoder"]["type"] == "Sequence":
            kind = "llama_hf"
            tokens, scores, types = vocab_llama_hf(d)
        else:
            kind = "gpt2"
            tokens, types = vocab_gpt2(d, hp)
    if kind == "gpt2":
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre_from_tokenizer_json(tj))
        w.add_token_list(tokens)
        w.add_token_types(types)
        gguf.SpecialVocab(d, load_merges=True).add_to_gguf(w, quiet=True)
    else:
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        gguf.SpecialVocab(d, n_vocab=len(tokens)).add_to_gguf(w, quiet=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return kind


def dump(path: str) -> list:
    r = gguf.GGUFReader(path)
    out = []
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        t = gguf.GGUFValueType(f.types[0])
        entry = {"key": name, "type": t.name}
        if t == gguf.GGUFValueType.ARRAY:
            it = gguf.GGUFValueType(f.types[1]) if len(f.types) > 1 else gguf.GGUFValueType.STRING
            entry["item_type"] = it.name
            if it == gguf.GGUFValueType.STRING:
                entry["value"] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            elif it == gguf.GGUFValueType.FLOAT32:
                entry["value"] = [int(f.parts[i].view("<u4")[0]) for i in f.data]
            else:
                entry["value"] = [int(f.parts[i][0]) for i in f.data]
        elif t == gguf.GGUFValueType.STRING:
            entry["value"] = bytes(f.parts[f.data[0]]).decode("utf-8")
        elif t == gguf.GGUFValueType.BOOL:
            entry["value"] = bool(f.parts[f.data[0]][0])
        else:
            entry["value"] = int(f.parts[f.data[0]][0])
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(FIXTURES / "tokenizer"))
    args = parser.parse_args()
    out = Path(args.out)
    make_spm(out / "spm")
    make_llama3_bpe(out / "llama3-bpe")
    sources = {
        "llava-4x": FIXTURES / "hf" / "llava-4x", "llava-5x": FIXTURES / "hf" / "llava-5x",
        "qwen2": FIXTURES / "hf" / "qwen2", "spm": out / "spm", "llama3-bpe": out / "llama3-bpe",
    }
    for name, d in sources.items():
        with tempfile.TemporaryDirectory() as tmp:
            g = os.path.join(tmp, "v.gguf")
            kind = write_gguf(d, g)
            kv = dump(g)
        ref = {"source": os.path.relpath(d, FIXTURES), "path": kind, "kv": kv}
        p = out / f"{name}.json"
        p.write_text(json.dumps(ref, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        print(f"{p.relative_to(FIXTURES)}: {kind}, {len(kv)} keys, {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()

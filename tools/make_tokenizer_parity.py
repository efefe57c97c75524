#!/usr/bin/env python3
"""Token-id references for vzquant's runtime tokenizers (Sources/VZQuant/Text/), from Hugging Face's own tokenizers.

For each fixture tokenizer (hf/llava-4x: Llama-style byte-fallback BPE with a Metaspace pre-tokenizer; hf/qwen2:
GPT-2 byte-level BPE with Qwen2's split regex and an NFC normalizer; tokenizer/llama3-bpe: Llama-3's regex,
ignore_merges and a BOS-prepending TemplateProcessing) this encodes a varied corpus with transformers' AutoTokenizer
(which loads tokenizer.json through the `tokenizers` library) and writes, per string,

    {"text": s, "ids": encode(s, add_special_tokens=False), "ids_special": encode(s, add_special_tokens=True)}

to Tests/VZQuantTests/Fixtures/tokenizer_parity/<name>.json, together with tokenizers.Tokenizer.from_file's ids as
a cross-check (the script stops if the two disagree). Added special tokens written in the text are matched as
HF does by default (split_special_tokens=False), the equivalent of vzquant's parseSpecial: true.

The Swift tests (Tests/VZQuantTests/TokenizerTests.swift) only read the committed JSON.

Needs: pip install transformers tokenizers sentencepiece gguf   (gguf: make_tokenizer_reference.py, whose regex strings are reused)
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "Tests" / "VZQuantTests" / "Fixtures"
OUT = FIXTURES / "tokenizer_parity"

TARGETS = {
    "llava-4x": FIXTURES / "hf" / "llava-4x",
    "qwen2": FIXTURES / "hf" / "qwen2",
    "llama3-bpe": FIXTURES / "tokenizer" / "llama3-bpe",
}

# Special tokens each fixture knows, written into the text to test parseSpecial.
SPECIALS = {
    "llava-4x": ["<s>", "</s>", "<image>", "<unk>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "llama3-bpe": ["<|begin_of_text|>", "<|eot_id|>", "<|reserved_0|>", "[tool]", "<|endoftext|>"],
}

CORPUS = [
    "",
    " ",
    "  ",
    "Hello world",
    " Hello world",
    "Hello  world   with    runs",
    "The quick brown fox jumps over the lazy dog.",
    "A picture of a cat sitting on a red chair next to the window.",
    "USER: <image>\nWhat colour is the car? ASSISTANT: The car is blue.",
    "def main():\n    for i in range(10):\n        print(i)\n\treturn None\n",
    "if (x < 0) { return -x; } else { return x; }  // abs",
    "Numbers: 1 12 123 1234 12345 123456 1234567 and 3.14159, 2024-11-23, 1,000,000.",
    "I'm sure you'll see it's what we'd've done; THEY'RE HERE, she'S, I'D, we'Ll",
    "don't won't can't isn't 'quoted' ''double''",
    "Emoji: 🙂 😀👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵",
    "日本語のテキストです。中文文本，你好世界！한국어 텍스트",
    "مرحبا بالعالم، هذا نص عربي.",
    "Édouard a vu un château; München, Zürich, naïve café, Ångström, œuvre, ß.",
    "e\u0301 decomposed accent and A\u030a",
    "Tabs\tand\t\ttabs\nnew\n\nlines\r\nwindows\rcarriage   \n  mixed \t \n",
    "trailing spaces   ",
    "   leading spaces",
    "\n\n\nleading newlines",
    "punctuation!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( )))",
    "mixed123abc 456def ghi789 x2 3d",
    "Ελληνικά και Русский текст с цифрами 42",
    "url: https://example.com/path?q=1&r=two#frag",
    "\u00a0non-breaking\u00a0space and\u2003em space and \u3000 ideographic",
    "zero\u200bwidth\u200cjoiner\u200d",
    "<s>Hello</s>",
    "<image>\nDescribe the image.",
    "a <image> b",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|>Hello<|eot_id|>",
    "text <|reserved_0|> and [tool] call",
    "<|endoftext|><|endoftext|>",
    "x" * 300,
    "=" * 80 + "\n" + " " * 40 + "end",
    "ab" * 100,
    "The year 1999 and 2000000000000 followed by 007.",
]


def main() -> int:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    OUT.mkdir(parents=True, exist_ok=True)
    for name, path in TARGETS.items():
        tok = AutoTokenizer.from_pretrained(str(path))
        raw = Tokenizer.from_file(str(path / "tokenizer.json"))
        corpus = list(CORPUS)
        specials = SPECIALS[name]
        corpus.append(" ".join(specials))
        corpus.append("".join(specials))
        corpus.append("before " + specials[-1] + " after")
        cases = []
        for s in corpus:
            ids = tok.encode(s, add_special_tokens=False)
            ids_special = tok.encode(s, add_special_tokens=True)
            if raw.encode(s, add_special_tokens=False).ids != ids or raw.encode(s, add_special_tokens=True).ids != ids_special:
                print(f"{name}: AutoTokenizer and tokenizers.Tokenizer disagree on {s!r}", file=sys.stderr)
                return 1
            cases.append({"text": s, "ids": ids, "ids_special": ids_special,
                          "decoded": tok.decode(ids)})
        doc = {
            "source": str(path.relative_to(FIXTURES)),
            "made_by": "tools/make_tokenizer_parity.py (transformers AutoTokenizer, tokenizers.Tokenizer.from_file)",
            "cases": cases,
        }
        (OUT / f"{name}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{name}: {len(cases)} strings, {sum(len(c['ids']) for c in cases)} ids")
    write_spm()
    write_pretokenize()
    return 0


def spm_comparable(s: str) -> bool:
    """Strings on which sentencepiece and llama.cpp's SPM agree by design: sentencepiece's normaliser (here
    "identity", but with remove_extra_whitespaces on) collapses space runs and trims the ends, which llama.cpp and
    vzquant do not; user-defined symbols like <image> are matched by sentencepiece but are plain normal tokens in
    the GGUF."""
    return s != "" and "  " not in s and s[0] != " " and s[-1] != " " and "<" not in s and "[" not in s


def write_spm() -> None:
    """tokenizer/spm (a real SentencePiece BPE model, so the GGUF carries real scores): ids from the sentencepiece
    library itself, without BOS, for the corpus strings both sides tokenize the same way (spm_comparable)."""
    import sentencepiece as spm

    path = FIXTURES / "tokenizer" / "spm"
    sp = spm.SentencePieceProcessor(model_file=str(path / "tokenizer.model"))
    # ids whose pieces the converter replaces by added tokens (added_tokens.json, tokenizer_config.json's
    # added_tokens_decoder), as convert_hf_to_gguf.py does: a string using them has other tokens in the GGUF
    overridden = set(json.loads((path / "added_tokens.json").read_text()).values())
    overridden |= {int(i) for i in json.loads((path / "tokenizer_config.json").read_text()).get("added_tokens_decoder", {})}
    cases = [{"text": s, "ids": sp.encode(s), "decoded": sp.decode(sp.encode(s))} for s in CORPUS
             if spm_comparable(s) and not overridden & set(sp.encode(s))]
    doc = {"source": "tokenizer/spm", "made_by": "tools/make_tokenizer_parity.py (sentencepiece.SentencePieceProcessor)",
           "cases": cases}
    (OUT / "spm.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"spm: {len(cases)} strings, {sum(len(c['ids']) for c in cases)} ids")


def write_pretokenize() -> None:
    """The split step alone, from tokenizers' own pre-tokenizers, as [start, end) offsets in Unicode scalars
    (Python str indices): Split with Qwen2's and Llama-3's regexes (Isolated), ByteLevel(use_regex=True) for GPT-2,
    and Digits(individual_digits) + ByteLevel for SmolLM. Byte-level BPE on tiny vocabularies hides most piece
    boundaries (no merge crosses them either way), so these are checked directly."""
    from tokenizers import Regex, pre_tokenizers as pt

    sys.path.insert(0, str(HERE))
    from make_tokenizer_reference import GPT2_REGEX, LLAMA3_REGEX, QWEN2_REGEX  # noqa: F401  (same strings)

    kinds = {
        "qwen2": pt.Split(Regex(QWEN2_REGEX), behavior="isolated"),
        "llama3": pt.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
        "gpt2": pt.ByteLevel(add_prefix_space=False, use_regex=True),
        "smollm": pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)]),
    }
    extra = [
        "x  y   z    ", "a\n\n b \n\t c\r\n\r\n  d", "  \n  ", "'s 'S 'Re 'LL 'x '", "hello'sworld HELLO'S",
        "!!!\n\n\nx", " !x", "\t!x", "1a2b 33 444 5555", "١٢٣ ⅫⅣ ½", "\u00a0\u00a0x \u3000y", "e\u0301\u0301x",
    ]
    out = {}
    for kind, tok in kinds.items():
        out[kind] = [{"text": s, "pieces": [list(o) for _, o in tok.pre_tokenize_str(s)]} for s in CORPUS + extra]
    doc = {"made_by": "tools/make_tokenizer_parity.py (tokenizers.pre_tokenizers)", "splits": out}
    (OUT / "pretokenize.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"pretokenize: {len(CORPUS + extra)} strings × {len(kinds)} splitters")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference perplexities for `vzquant perplexity` (Tests/VZQuantTests/Fixtures/perplexity/cases.json).

Independent of vzquant: the Hugging Face model of each tiny checkpoint in Fixtures/hf scores a short text (written for
this project, CC0) the way llama.cpp's llama-perplexity does:
  - the text is tokenized once, BOS first when the checkpoint is the Llama one (llama.cpp adds it for SentencePiece
    vocabularies), and cut into floor(tokens / n) chunks of n tokens;
  - each chunk is run on its own, its first token replaced by BOS when BOS is added;
  - logits at positions n/2 … n-2 score tokens n/2+1 … n-1; perplexity = exp(mean NLL), log-softmax in float64.

Needs: pip install --find-links /opt/wheels 'torch==2.13.0+cpu' transformers
"""
import json
import math
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "VZQuantTests", "Fixtures")

TEXT = (
    "The old lighthouse stood at the end of the quiet harbour, and every evening the keeper climbed its stairs "
    "to light the lamp. Boats came home in the dusk, their sails folded, their nets heavy with fish. Children "
    "ran along the wall and counted the lights as they appeared one by one across the water. In winter the wind "
    "was cold and the sea was grey, but the lamp still turned, slow and patient, through every long night. "
    "What is shown in this picture? A cat sits on a red chair next to the window, and the sun is warm."
)


def score(model, ids, n, bos):
    chunks = len(ids) // n
    first = n // 2
    nll, count = 0.0, 0
    for c in range(chunks):
        chunk = list(ids[c * n:(c + 1) * n])
        if bos is not None:
            chunk[0] = bos
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([chunk])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        for row in range(first, n - 1):
            nll -= logp[row, chunk[row + 1]].item()
            count += 1
    return math.exp(nll / count), count, chunks


def main():
    cases = []
    for name, n in [("qwen2", 32), ("qwen2", 16), ("llava-4x", 24)]:
        path = os.path.join(ROOT, "hf", name)
        tok = AutoTokenizer.from_pretrained(path)
        if name == "qwen2":
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
            bos = None
            ids = tok(TEXT, add_special_tokens=False)["input_ids"]
        else:
            model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
            bos = tok.bos_token_id
            ids = [bos] + tok(TEXT, add_special_tokens=False)["input_ids"]
        ppl, count, chunks = score(model, ids, n, bos)
        cases.append({"checkpoint": name, "context": n, "text_tokens": len(ids), "perplexity": ppl,
                      "tokens": count, "chunks": chunks, "bos": bos is not None})
        print(name, n, len(ids), ppl, count, chunks)
    out = os.path.join(ROOT, "perplexity")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "text.txt"), "w") as f:
        f.write(TEXT)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"generator": "tools/make_perplexity_fixtures.py", "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side-by-side figures against llama.cpp on the same GGUF file, through the `llama-cpp-python` package (PyPI; its
install builds llama.cpp, several minutes). Nothing here runs in CI and nothing of llama.cpp is committed.

  llama_cpp_side_by_side.py quantize SRC.gguf DST.gguf FTYPE      llama-quantize (no imatrix), FTYPE as llama_ftype
                                                                  (15 = Q4_K_M …): compare its bytes with vzquant's
  llama_cpp_side_by_side.py greedy MODEL.gguf '[ids…]' N          N greedy tokens after the prompt ids (as JSON)
  llama_cpp_side_by_side.py bench MODEL.gguf PROMPT GEN [THREADS]  prompt processing (one eval of PROMPT tokens,
                                                                  n_batch = n_ubatch = PROMPT) and GEN single-token
                                                                  decode steps, median of 3 after one warm-up, in
                                                                  tokens/s — next to `vzquant bench model -m MODEL
                                                                  --prompt-tokens PROMPT --gen-tokens GEN`
"""
import json
import sys
import time

import llama_cpp


def quantize(src, dst, ftype):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 2
    p.allow_requantize = True
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p) != 0:
        sys.exit(f"llama.cpp could not quantize {src}")


def greedy(path, prompt_ids, n):
    llm = llama_cpp.Llama(model_path=path, n_ctx=len(prompt_ids) + n + 8, n_threads=2, verbose=False)
    llm.eval(prompt_ids)
    out = []
    for _ in range(n):
        t = llm.sample(temp=0.0, top_k=1)
        out.append(int(t))
        llm.eval([t])
    return out


def bench(path, n_prompt, n_gen, threads=2, reps=3):
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_prompt + n_gen + 8, n_batch=n_prompt, n_ubatch=n_prompt,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    tokens = [(i * 7919) % 1000 + 100 for i in range(max(n_prompt, n_gen))]
    pp, tg = [], []
    for r in range(reps + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens[:n_prompt])
        t1 = time.perf_counter()
        for i in range(n_gen):
            llm.eval([tokens[i]])
        t2 = time.perf_counter()
        if r > 0:
            pp.append(n_prompt / (t1 - t0))
            tg.append(n_gen / (t2 - t1))
    return {"pp_tok_s": sorted(pp)[len(pp) // 2], "tg_tok_s": sorted(tg)[len(tg) // 2], "threads": threads}


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "quantize":
        quantize(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "greedy":
        print(json.dumps(greedy(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))))
    elif cmd == "bench":
        print(json.dumps(bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 2)))
    else:
        sys.exit(__doc__)

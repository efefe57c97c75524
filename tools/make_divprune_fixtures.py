#!/usr/bin/env python3
"""DivPrune reference selections for vzquant's reducer test (Tests/VZQuantTests/Fixtures/divprune).

A plain NumPy restatement of the paper's greedy max-min diversity selection (Alvar et al., CVPR 2025,
arXiv 2503.02175, Algorithm 1), written from the paper's description:
  d(i, j) = 1 - cos(x_i, x_j)
  first pick: the token whose nearest other token is farthest, argmax_j min_{i != j} d(i, j)
  next picks: argmax over unpicked j of min over picked i of d(i, j)
  ties to the lower index; the kept set is reported in ascending order.
Features are clustered random vectors (as visual tokens are: many near-duplicates, a few outliers) in float32.
Cases whose greedy steps come closer than 2e-5 between the best and the runner-up score are regenerated, so the
reference does not depend on float rounding. Writes cases.json (shapes, budgets, expected indices) and one
little-endian float32 .bin per case.

Needs: numpy only.
"""
import argparse
import json
import os

import numpy as np

MARGIN = 2e-5


def divprune(x: np.ndarray, k: int):
    """Indices kept (ascending) and the smallest winning margin over the greedy steps."""
    t = x.shape[0]
    if k >= t:
        return list(range(t)), np.inf
    x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    d = 1.0 - unit @ unit.T
    off = d + np.diag(np.full(t, np.inf))
    score = off.min(axis=0)
    picked = []
    taken = np.zeros(t, dtype=bool)
    margin = np.inf
    for _ in range(k):
        cand = np.where(taken, -np.inf, score)
        order = np.argsort(-cand, kind="stable")
        best = int(order[0])
        if len(order) > 1 and np.isfinite(cand[order[1]]):
            margin = min(margin, cand[best] - cand[order[1]])
        picked.append(best)
        taken[best] = True
        score = d[best] if len(picked) == 1 else np.minimum(score, d[best])
    return sorted(picked), margin


def clustered(rng, tokens: int, width: int, clusters: int) -> np.ndarray:
    centres = rng.normal(size=(clusters, width)) * 3
    which = rng.integers(0, clusters, size=tokens)
    x = centres[which] + rng.normal(size=(tokens, width)) * rng.uniform(0.2, 1.5, size=(tokens, 1))
    x[rng.integers(0, tokens, size=max(1, tokens // 50))] *= 10  # a few loud outliers
    return x.astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/VZQuantTests/Fixtures/divprune")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(2025)
    shapes = [  # (tokens, width, clusters, budgets)
        (577, 64, 12, [1, 16, 32, 48]),     # CLIP-L/336 token count
        (64, 96, 5, [7, 14, 21]),           # SmolVLM's pixel-shuffle groups
        (729, 48, 20, [9, 27]),             # SigLIP-so400m/384 grid
        (40, 16, 3, [12, 40, 50]),          # budget at and over the token count
    ]
    cases = []
    for n, (tokens, width, clusters, budgets) in enumerate(shapes):
        while True:
            x = clustered(rng, tokens, width, clusters)
            results = [divprune(x, k) for k in budgets]
            if min(m for _, m in results) > MARGIN:
                break
        name = f"case{n}.bin"
        x.astype("<f4").tofile(os.path.join(args.out, name))
        cases.append({"file": name, "tokens": tokens, "width": width,
                      "budgets": [{"keep": k, "indices": idx} for k, (idx, _) in zip(budgets, results)]})
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"generator": "tools/make_divprune_fixtures.py", "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

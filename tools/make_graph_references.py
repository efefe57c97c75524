#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers for the model-graph features of ModelGraphTests.swift.

Writes Tests/VZQuantTests/Fixtures/models/graph/ (override with --out):

  idefics3_s{2,3}.*   a tiny random Idefics3Connector (transformers' SmolVLM connector): random vision features
                      [G*G, width] of a G x G patch grid, its pixel_shuffle output and the connector output; plus
                      idefics3_s{2,3}.gguf, the connector as llama.cpp names it (clip.projector_type "idefics3",
                      clip.vision.projector.scale_factor, mm.model.fc.weight), written with the gguf package.
  shuffle_4x6_s2.*    a non-square 4 x 6 grid shuffled by an independent numpy formula (transformers only takes
                      square grids; the formula is checked against transformers' pixel_shuffle on the squares).
  llava_linear1.bin   LLaVA's projector first layer alone (multi_modal_projector.linear_1) on the tiny LLaVA's
                      feature layer (Fixtures/models/llava/feature_hidden.bin without CLS): the "linear" projector.

Every array is one raw little-endian float32 file; manifest.json lists name, shape, file and how it was made.
Seeded and deterministic. Needs torch, transformers, gguf, numpy.
"""
import argparse
import json
import os

import gguf
import numpy as np
import torch
from transformers import Idefics3Config, LlavaForConditionalGeneration
from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "VZQuantTests", "Fixtures")


class Recorder:
    def __init__(self, out):
        self.out = out
        self.entries = []
        os.makedirs(out, exist_ok=True)

    def add(self, name, array, description):
        a = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
        a.tofile(os.path.join(self.out, name + ".bin"))
        self.entries.append({"name": name, "dtype": "float32", "shape": list(a.shape), "file": name + ".bin",
                             "description": description})

    def note(self, name, file, description):
        self.entries.append({"name": name, "file": file, "description": description})

    def finish(self):
        with open(os.path.join(self.out, "manifest.json"), "w") as f:
            json.dump(self.entries, f, indent=1)
            f.write("\n")


def shuffle_formula(x, rows, cols, s):
    """[rows*cols, D] raster patches -> [(rows/s)*(cols/s), s*s*D]: group (i, j) holds patches (i*s + r, j*s + c),
    r outer, c inner. Written from the layout, not from transformers' code; checked against it on squares."""
    d = x.shape[-1]
    g = x.reshape(rows // s, s, cols // s, s, d)      # [i, r, j, c, D]
    g = g.transpose(0, 2, 1, 3, 4)                     # [i, j, r, c, D]
    return g.reshape((rows // s) * (cols // s), s * s * d)


def idefics3(rec, out, s, grid, width, text_width, seed):
    torch.manual_seed(seed)
    config = Idefics3Config(scale_factor=s,
                            vision_config={"hidden_size": width, "num_attention_heads": 4},
                            text_config={"hidden_size": text_width, "num_attention_heads": 4, "model_type": "llama"})
    connector = Idefics3Connector(config).eval()
    torch.nn.init.normal_(connector.modality_projection.proj.weight, std=0.2)
    features = torch.randn(1, grid * grid, width)
    with torch.no_grad():
        shuffled = connector.pixel_shuffle(features, s)
        output = connector(features)
    assert np.array_equal(shuffled[0].numpy(), shuffle_formula(features[0].numpy(), grid, grid, s))
    name = f"idefics3_s{s}"
    rec.add(f"{name}_features", features[0], f"torch.randn [{grid}*{grid}, {width}] patch features, raster order")
    rec.add(f"{name}_shuffled", shuffled[0], f"Idefics3Connector.pixel_shuffle(features, {s}) [{(grid // s) ** 2}, {width * s * s}]")
    rec.add(f"{name}_output", output[0], f"Idefics3Connector(features) = proj(pixel_shuffle(features)) [{(grid // s) ** 2}, {text_width}]")

    w = gguf.GGUFWriter(os.path.join(out, name + ".gguf"), "clip")
    w.add_string("clip.projector_type", "idefics3")
    w.add_uint32("clip.vision.projector.scale_factor", s)
    w.add_uint32("clip.vision.embedding_length", width)
    w.add_tensor("mm.model.fc.weight", connector.modality_projection.proj.weight.detach().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    rec.note(name + ".gguf", name + ".gguf", f"the connector's weight as mm.model.fc.weight (F32) with llama.cpp's keys, scale factor {s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(FIXTURES, "models", "graph"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rec = Recorder(args.out)

    # Projectors.
    idefics3(rec, args.out, s=2, grid=6, width=32, text_width=48, seed=1)
    idefics3(rec, args.out, s=3, grid=6, width=32, text_width=40, seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4 * 6, 8)).astype(np.float32)
    rec.add("shuffle_4x6_s2_features", x, "numpy standard normal [4*6, 8] patches of a 4 x 6 grid, raster order")
    rec.add("shuffle_4x6_s2_shuffled", shuffle_formula(x, 4, 6, 2), "shuffle_formula(features, 4, 6, 2) [2*3, 32]")

    llava = LlavaForConditionalGeneration.from_pretrained(os.path.join(FIXTURES, "hf", "llava-4x"), dtype=torch.float32).eval()
    features = np.fromfile(os.path.join(FIXTURES, "models", "llava", "feature_hidden.bin"), dtype=np.float32)
    features = torch.from_numpy(features.reshape(-1, llava.config.vision_config.hidden_size))
    with torch.no_grad():
        linear = llava.model.multi_modal_projector.linear_1(features[1:])
    rec.add("llava_linear1", linear, "llava-4x multi_modal_projector.linear_1(models/llava/feature_hidden[1:]) [16, 64]")

    rec.finish()


if __name__ == "__main__":
    main()

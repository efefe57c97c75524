import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Hugging Face tensor names → llama.cpp's GGUF names, per architecture, as tables. Names and their order
/// follow gguf-py's constants.py / tensor_mapping.py (the authority llama.cpp's loaders agree with).
///
/// HF names are matched after a component prefix is removed (see `HFNamePrefixes`), so one table serves
/// transformers 4.x (`language_model.model.layers…`) and 5.x (`model.language_model.layers…`) checkpoints.

/// What a tensor is, for the type policy and the shape check.
public enum TensorRole: Sendable, Equatable {
    case tokenEmbedding, matrix, vector, patchEmbedding, positionEmbedding, classEmbedding, layerScale
}

/// One output tensor the plan expects: where it comes from and what shape config.json implies for it.
public struct TensorSpec: Sendable, Equatable {
    public var gguf: String
    /// Name inside its component (prefix removed).
    public var hf: String
    /// The expected source shape, PyTorch order.
    public var shape: [Int]
    public var role: TensorRole
    /// Apply llama.cpp's rotary row permutation with this many heads (Q: heads, K: kv heads).
    public var permuteHeads: Int?
    /// Absent in the checkpoint is fine (e.g. an optional bias).
    public var optional = false
    /// Only these rows of the source's outermost dimension (Qwen's fused qkv split into q, k and v); nil: all.
    public var sourceRows: Range<Int>? = nil

    /// The GGUF dims (innermost first): the shape (its outermost dim cut to `sourceRows`) with leading 1s dropped
    /// (DINOv2's [1, 1, D] class token), reversed.
    public var ggmlDims: [Int] {
        var s = shape[...]
        if let sourceRows, !s.isEmpty { s[s.startIndex] = sourceRows.count }
        while s.count > 1, s.first == 1 { s = s.dropFirst() }
        return Array(s.reversed())
    }
}

/// Where each component's tensors live in a checkpoint; the first matching prefix wins (longest listed first).
public enum HFComponent: Sendable { case text, lmHead, vision, projector, newline }

struct HFNamePrefixes {
    let prefixes: [(String, HFComponent)]

    static func forArchitecture(_ a: HFArchitecture) -> HFNamePrefixes {
        switch a {
        case .llava, .llavaNext:
            HFNamePrefixes(prefixes: [
                ("model.image_newline", .newline), ("image_newline", .newline),
                ("model.language_model.", .text), ("language_model.model.", .text),
                ("language_model.lm_head.", .lmHead), ("lm_head.", .lmHead),
                ("model.vision_tower.vision_model.", .vision), ("vision_tower.vision_model.", .vision),
                ("model.vision_tower.", .vision), ("vision_tower.", .vision),
                ("model.multi_modal_projector.", .projector), ("multi_modal_projector.", .projector),
            ])
        case .idefics3, .smolvlm:
            // the same names in transformers 4.x and 5.x
            HFNamePrefixes(prefixes: [
                ("model.text_model.", .text), ("lm_head.", .lmHead), ("model.vision_model.", .vision),
                ("model.connector.modality_projection.", .projector),
            ])
        case .qwen2vl, .qwen25vl:
            // 4.x: visual.*, model.* (text), lm_head; 5.x: model.visual.*, model.language_model.*, lm_head. The
            // merger sits inside the visual module.
            HFNamePrefixes(prefixes: [
                ("model.visual.", .vision), ("visual.", .vision), ("model.language_model.", .text),
                ("lm_head.", .lmHead), ("model.", .text),
            ])
        case .llama, .mistral, .qwen2:
            HFNamePrefixes(prefixes: [("model.", .text), ("lm_head.", .lmHead)])
        case .clipVision, .siglipVision:
            // transformers 4.x saves "vision_model.embeddings…", 5.x the bare "embeddings…"
            HFNamePrefixes(prefixes: [("vision_model.", .vision), ("", .vision)])
        case .dinov2:
            HFNamePrefixes(prefixes: [("", .vision)])
        }
    }

    func split(_ name: String) -> (HFComponent, String)? {
        for (p, c) in prefixes where name.hasPrefix(p) { return (c, String(name.dropFirst(p.count))) }
        return nil
    }
}

// MARK: - Text

enum TextTable {
    enum Dim { case hidden, ff, qOut, kvOut, vocab }

    /// Per block: GGUF suffix, HF suffix (after "layers.N."), shape, role, and which heads permute it.
    enum Permute { case none, q, k }
    static let block: [(String, String, [Dim], TensorRole, Permute)] = [
        ("attn_norm.weight", "input_layernorm.weight", [.hidden], .vector, .none),
        ("attn_q.weight", "self_attn.q_proj.weight", [.qOut, .hidden], .matrix, .q),
        ("attn_k.weight", "self_attn.k_proj.weight", [.kvOut, .hidden], .matrix, .k),
        ("attn_v.weight", "self_attn.v_proj.weight", [.kvOut, .hidden], .matrix, .none),
        ("attn_output.weight", "self_attn.o_proj.weight", [.hidden, .qOut], .matrix, .none),
        ("ffn_norm.weight", "post_attention_layernorm.weight", [.hidden], .vector, .none),
        ("ffn_gate.weight", "mlp.gate_proj.weight", [.ff, .hidden], .matrix, .none),
        ("ffn_up.weight", "mlp.up_proj.weight", [.ff, .hidden], .matrix, .none),
        ("ffn_down.weight", "mlp.down_proj.weight", [.hidden, .ff], .matrix, .none),
    ]
    static let blockBiases: [(String, String, [Dim], TensorRole, Permute)] = [
        ("attn_q.bias", "self_attn.q_proj.bias", [.qOut], .vector, .q),
        ("attn_k.bias", "self_attn.k_proj.bias", [.kvOut], .vector, .k),
        ("attn_v.bias", "self_attn.v_proj.bias", [.kvOut], .vector, .none),
    ]

    static func plan(_ p: TextParams, vocab: Int) -> [TensorSpec] {
        func dims(_ d: [Dim]) -> [Int] {
            d.map {
                switch $0 {
                case .hidden: p.hidden
                case .ff: p.feedForward
                case .qOut: p.heads * p.headDim
                case .kvOut: p.kvHeads * p.headDim
                case .vocab: vocab
                }
            }
        }
        func heads(_ x: Permute) -> Int? {
            guard p.permuteQK else { return nil }
            switch x {
            case .none: return nil
            case .q: return p.heads
            case .k: return p.kvHeads
            }
        }
        var out = [TensorSpec(gguf: "token_embd.weight", hf: "embed_tokens.weight", shape: dims([.vocab, .hidden]),
                              role: .tokenEmbedding)]
        for i in 0..<p.layers {
            for (g, h, d, role, perm) in block {
                out.append(TensorSpec(gguf: "blk.\(i).\(g)", hf: "layers.\(i).\(h)", shape: dims(d), role: role,
                                      permuteHeads: heads(perm)))
            }
            if p.qkvBias {
                for (g, h, d, role, perm) in blockBiases {
                    out.append(TensorSpec(gguf: "blk.\(i).\(g)", hf: "layers.\(i).\(h)", shape: dims(d), role: role,
                                          permuteHeads: heads(perm)))
                }
            }
        }
        out.append(TensorSpec(gguf: "output_norm.weight", hf: "norm.weight", shape: dims([.hidden]), role: .vector))
        if !p.tiedEmbeddings {
            // Lives in the lmHead component ("lm_head." prefix removed); the planner looks it up there.
            out.append(TensorSpec(gguf: "output.weight", hf: "weight", shape: dims([.vocab, .hidden]), role: .matrix))
        }
        return out
    }
}

// MARK: - Vision

enum VisionTable {
    enum Dim { case hidden, ff, channels, patch, positions, one }

    struct Names {
        let patchWeight: String, patchBias: String?, patchBiasRequired: Bool
        let classEmbedding: String?, classShape: [Dim]
        let position: String, positionShape: [Dim]
        let preNorm: String?
        let blockPrefix: String
        /// GGUF block suffix → HF block suffix (".weight"/".bias" appended by the planner).
        let block: [(String, String, [Dim], TensorRole)]
        let postNorm: String
    }

    static let clipBlock: [(String, String, [Dim], TensorRole)] = [
        ("attn_q", "self_attn.q_proj", [.hidden, .hidden], .matrix),
        ("attn_k", "self_attn.k_proj", [.hidden, .hidden], .matrix),
        ("attn_v", "self_attn.v_proj", [.hidden, .hidden], .matrix),
        ("attn_out", "self_attn.out_proj", [.hidden, .hidden], .matrix),
        ("ln1", "layer_norm1", [.hidden], .vector),
        ("ln2", "layer_norm2", [.hidden], .vector),
        ("ffn_up", "mlp.fc1", [.ff, .hidden], .matrix),
        ("ffn_down", "mlp.fc2", [.hidden, .ff], .matrix),
    ]

    static func names(_ f: VisionFamily) -> Names {
        switch f {
        case .qwen2vl, .qwen25vl:
            preconditionFailure("Qwen towers are planned by QwenVisionTable")
        case .clip:
            Names(patchWeight: "embeddings.patch_embedding.weight", patchBias: "embeddings.patch_embedding.bias",
                  patchBiasRequired: false,
                  classEmbedding: "embeddings.class_embedding", classShape: [.hidden],
                  position: "embeddings.position_embedding.weight", positionShape: [.positions, .hidden],
                  preNorm: "pre_layrnorm", blockPrefix: "encoder.layers.", block: clipBlock, postNorm: "post_layernorm")
        case .siglip:
            Names(patchWeight: "embeddings.patch_embedding.weight", patchBias: "embeddings.patch_embedding.bias",
                  patchBiasRequired: true, classEmbedding: nil, classShape: [],
                  position: "embeddings.position_embedding.weight", positionShape: [.positions, .hidden],
                  preNorm: nil, blockPrefix: "encoder.layers.", block: clipBlock, postNorm: "post_layernorm")
        case .dinov2:
            Names(patchWeight: "embeddings.patch_embeddings.projection.weight",
                  patchBias: "embeddings.patch_embeddings.projection.bias", patchBiasRequired: true,
                  classEmbedding: "embeddings.cls_token", classShape: [.one, .one, .hidden],
                  position: "embeddings.position_embeddings", positionShape: [.one, .positions, .hidden],
                  preNorm: nil, blockPrefix: "encoder.layer.",
                  block: [
                      ("attn_q", "attention.attention.query", [.hidden, .hidden], .matrix),
                      ("attn_k", "attention.attention.key", [.hidden, .hidden], .matrix),
                      ("attn_v", "attention.attention.value", [.hidden, .hidden], .matrix),
                      ("attn_out", "attention.output.dense", [.hidden, .hidden], .matrix),
                      ("ln1", "norm1", [.hidden], .vector),
                      ("ln2", "norm2", [.hidden], .vector),
                      ("ffn_up", "mlp.fc1", [.ff, .hidden], .matrix),
                      ("ffn_down", "mlp.fc2", [.hidden, .ff], .matrix),
                      ("ls1", "layer_scale1.lambda1", [.hidden], .layerScale),
                      ("ls2", "layer_scale2.lambda1", [.hidden], .layerScale),
                  ],
                  postNorm: "layernorm")
        }
    }

    /// `keptLayers` blocks, and the post-norm only when `postNorm` (LLaVA reads an inner layer and skips it).
    static func plan(_ p: VisionParams, keptLayers: Int, postNorm: Bool) -> [TensorSpec] {
        func dims(_ d: [Dim]) -> [Int] {
            d.map {
                switch $0 {
                case .hidden: p.hidden
                case .ff: p.feedForward
                case .channels: p.channels
                case .patch: p.patchSize
                case .positions: p.positions
                case .one: 1
                }
            }
        }
        let n = names(p.family)
        var out: [TensorSpec] = []
        out.append(TensorSpec(gguf: "v.patch_embd.weight", hf: n.patchWeight,
                              shape: [p.hidden, p.channels, p.patchSize, p.patchSize], role: .patchEmbedding))
        if let b = n.patchBias {
            out.append(TensorSpec(gguf: "v.patch_embd.bias", hf: b, shape: [p.hidden], role: .vector,
                                  optional: !n.patchBiasRequired))
        }
        if let c = n.classEmbedding {
            out.append(TensorSpec(gguf: "v.class_embd", hf: c, shape: dims(n.classShape), role: .classEmbedding))
        }
        out.append(TensorSpec(gguf: "v.position_embd.weight", hf: n.position, shape: dims(n.positionShape),
                              role: .positionEmbedding))
        if let pre = n.preNorm {
            for s in ["weight", "bias"] {
                out.append(TensorSpec(gguf: "v.pre_ln.\(s)", hf: "\(pre).\(s)", shape: [p.hidden], role: .vector))
            }
        }
        for i in 0..<keptLayers {
            for (g, h, d, role) in n.block {
                if role == .layerScale {
                    out.append(TensorSpec(gguf: "v.blk.\(i).\(g).weight", hf: "\(n.blockPrefix)\(i).\(h)", shape: dims(d), role: role))
                    continue
                }
                out.append(TensorSpec(gguf: "v.blk.\(i).\(g).weight", hf: "\(n.blockPrefix)\(i).\(h).weight", shape: dims(d), role: role))
                out.append(TensorSpec(gguf: "v.blk.\(i).\(g).bias", hf: "\(n.blockPrefix)\(i).\(h).bias", shape: [dims(d)[0]], role: .vector))
            }
        }
        if postNorm {
            for s in ["weight", "bias"] {
                out.append(TensorSpec(gguf: "v.post_ln.\(s)", hf: "\(n.postNorm).\(s)", shape: [p.hidden], role: .vector))
            }
        }
        return out
    }
}

// MARK: - Projectors

enum ProjectorTable {
    /// Idefics3/SmolVLM's connector: one bias-free linear layer over s×s shuffled patches.
    static func planIdefics3(visionHidden: Int, textHidden: Int, scaleFactor s: Int) -> [TensorSpec] {
        [TensorSpec(gguf: "mm.model.fc.weight", hf: "proj.weight", shape: [textHidden, visionHidden * s * s], role: .matrix)]
    }

    /// LLaVA-NeXT's learned row after each row of the stitched crop grid (llama.cpp's current name).
    static func planNewline(textHidden: Int) -> [TensorSpec] {
        [TensorSpec(gguf: "v.image_newline", hf: "", shape: [textHidden], role: .vector)]
    }

    /// linear_1 → mm.0, linear_2 → mm.2 (llama.cpp's numbering of the nn.Sequential(Linear, GELU, Linear)).
    static func plan(visionHidden: Int, textHidden: Int, bias: Bool) -> [TensorSpec] {
        var out = [
            TensorSpec(gguf: "mm.0.weight", hf: "linear_1.weight", shape: [textHidden, visionHidden], role: .matrix),
            TensorSpec(gguf: "mm.2.weight", hf: "linear_2.weight", shape: [textHidden, textHidden], role: .matrix),
        ]
        if bias {
            out.insert(TensorSpec(gguf: "mm.0.bias", hf: "linear_1.bias", shape: [textHidden], role: .vector), at: 1)
            out.append(TensorSpec(gguf: "mm.2.bias", hf: "linear_2.bias", shape: [textHidden], role: .vector))
        }
        return out
    }
}

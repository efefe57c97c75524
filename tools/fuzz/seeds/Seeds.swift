// The synthetic seeds of the gguf and hf targets: `tools/fuzz.sh --seeds` builds the fuzz binary with this file
// (-D VZQ_FUZZ_SEEDS) and writes them to tools/fuzz/corpus/{gguf,hf}. Not part of the fuzz build itself, so that
// the converter-side helpers it uses can change without breaking the campaign or the CI smoke.
//
// Tiny files (1–15 KB) in exactly the layout the runtime reads, so that the fuzzer starts past the checks and
// reaches the model code: decoders (llama / mistral / qwen2; SentencePiece and GPT-2 vocabularies; f32, f16,
// q8_0, q4_0, q4_1, q5_0 weights; tied and separate output; linear / yarn rope scaling, rope_freqs, per-layer
// widths of a pruned model; chat templates of each family) and mmproj files (CLIP + LLaVA mlp, CLIP AnyRes +
// linear, SigLIP + Idefics3 pixel shuffle, DINOv2 with layer scale). Weights are small deterministic values.
import Foundation

private struct SeedTensor {
    var name: String
    var dims: [Int]
    var type: QuantType
}

private func seedValues(_ n: Int, salt: Int) -> [Float] {
    (0..<n).map { i in Float(sin(Double(i &* 7919 &+ salt &* 104_729) * 0.001)) * 0.25 }
}

private func writeSeed(_ path: String, _ meta: [(String, GGUFValue)], _ tensors: [SeedTensor]) throws {
    let w = GGUFWriter()
    for (k, v) in meta { w.metadata.set(k, v) }
    var data: [String: [UInt8]] = [:]
    for (i, t) in tensors.enumerated() {
        _ = try w.addTensor(name: t.name, dims: t.dims, type: t.type)
        let n = t.dims.reduce(1, *)
        var values = seedValues(n, salt: i)
        if t.name.hasSuffix("norm.weight") || t.name.hasSuffix("ln.weight") || t.name.hasSuffix(".ln1.weight")
            || t.name.hasSuffix(".ln2.weight") {
            values = [Float](repeating: 1, count: n)
        }
        data[t.name] = t.type.canQuantize ? try t.type.quantize(values) : try rawBlocks(t.type, count: n, salt: i)
    }
    try w.write(to: path, data: data)
    print("wrote \(path)")
}

/// Blocks of a type vzquant reads but cannot write (q4_1, q5_0, …): fp16 scales of 0.01 (and minimums of 0 where
/// the block has one) in front, pseudo-random quants after.
private func rawBlocks(_ type: QuantType, count: Int, salt: Int) throws -> [UInt8] {
    let scale = try QuantType.f16.quantize([0.01])
    let scales = type == .q4_1 || type == .q5_1 ? 2 : 1
    var out: [UInt8] = []
    for b in 0..<(count / type.blockElements) {
        var block = scale + (scales == 2 ? [0, 0] : [])
        while block.count < type.blockBytes { block.append(UInt8(truncatingIfNeeded: (b &* 131 &+ block.count &* 29 &+ salt) & 0xff)) }
        out += block
    }
    return out
}

// MARK: vocabularies

private func spmVocabulary(chatTemplate: String?) -> [(String, GGUFValue)] {
    var tokens: [String] = ["<unk>", "<s>", "</s>", "<image>"]
    var types: [Int32] = [2, 3, 3, 4]
    for b in [0x0A, 0x20, 0xC3, 0xA9, 0xB6, 0xF0, 0x9F, 0x98, 0x80] {
        tokens.append(String(format: "<0x%02X>", b))
        types.append(6)
    }
    for p in ["▁", "▁H", "ello", "▁w", "or", "ld", "!", ",", "e", "l", "o", "H", "w", "r", "d", "▁USER", ":", "▁A"] {
        tokens.append(p)
        types.append(1)
    }
    var meta: [(String, GGUFValue)] = [
        ("tokenizer.ggml.model", .string("llama")),
        ("tokenizer.ggml.pre", .string("default")),
        ("tokenizer.ggml.tokens", .strings(tokens)),
        ("tokenizer.ggml.scores", .float32s(tokens.indices.map { -Float($0) })),
        ("tokenizer.ggml.token_type", .int32s(types)),
        ("tokenizer.ggml.bos_token_id", .uint32(1)),
        ("tokenizer.ggml.eos_token_id", .uint32(2)),
        ("tokenizer.ggml.unknown_token_id", .uint32(0)),
        ("tokenizer.ggml.add_bos_token", .bool(true)),
        ("tokenizer.ggml.add_space_prefix", .bool(true)),
    ]
    if let chatTemplate { meta.append(("tokenizer.chat_template", .string(chatTemplate))) }
    return meta
}

private func gpt2Vocabulary(pre: String, chatTemplate: String?) -> [(String, GGUFValue)] {
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<|begin_of_text|>", "<|eot_id|>"]
    let pieces = ["H", "e", "l", "o", "w", "r", "d", "!", "Ġ", "Ċ", "1", "2", "3", "'", "s", "t", "Ã", "©",
                  "He", "ll", "llo", "Hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "12"]
    let merges = ["H e", "l l", "ll o", "He llo", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2"]
    let tokens = specials + pieces
    let types: [Int32] = [3, 3, 3, 4, 3, 3] + pieces.map { _ in 1 }
    var meta: [(String, GGUFValue)] = [
        ("tokenizer.ggml.model", .string("gpt2")),
        ("tokenizer.ggml.pre", .string(pre)),
        ("tokenizer.ggml.tokens", .strings(tokens)),
        ("tokenizer.ggml.token_type", .int32s(types)),
        ("tokenizer.ggml.merges", .strings(merges)),
        ("tokenizer.ggml.bos_token_id", .uint32(pre == "llama-bpe" ? 4 : 0)),
        ("tokenizer.ggml.eos_token_id", .uint32(pre == "llama-bpe" ? 5 : 2)),
        ("tokenizer.ggml.add_bos_token", .bool(pre == "llama-bpe")),
    ]
    if let chatTemplate { meta.append(("tokenizer.chat_template", .string(chatTemplate))) }
    return meta
}

// MARK: decoders

private struct TextSeed {
    var name: String
    var arch = "llama"
    var hidden = 8, layers = 1, heads = 2, kvHeads = 1, ff = 16
    var matrixType = QuantType.f32
    var embeddingType = QuantType.f32
    var tied = true
    var bias = false
    var vocabulary: [(String, GGUFValue)]
    var extra: [(String, GGUFValue)] = []
    /// Per layer (heads, kvHeads, ff) of a pruned model; nil: the same for all layers.
    var perLayer: [(Int, Int, Int)]? = nil
    var ropeFreqs = false
}

private func writeText(_ s: TextSeed, to dir: String) throws {
    guard case let .array(_, tokenList)? = s.vocabulary.first(where: { $0.0 == "tokenizer.ggml.tokens" })?.1 else { return }
    let vocab = tokenList.count
    let headDim = s.hidden / s.heads
    let a = s.arch
    var meta: [(String, GGUFValue)] = [("general.architecture", .string(a)), ("general.name", .string(s.name))]
    var textMeta: [(String, GGUFValue)] = [
        ("\(a).context_length", .uint32(64)), ("\(a).embedding_length", .uint32(UInt32(s.hidden))),
        ("\(a).block_count", .uint32(UInt32(s.layers))), ("\(a).feed_forward_length", .uint32(UInt32(s.ff))),
        ("\(a).rope.dimension_count", .uint32(UInt32(headDim))), ("\(a).rope.freq_base", .float32(10000)),
        ("\(a).attention.head_count", .uint32(UInt32(s.heads))), ("\(a).attention.head_count_kv", .uint32(UInt32(s.kvHeads))),
        ("\(a).attention.layer_norm_rms_epsilon", .float32(1e-5)), ("\(a).vocab_size", .uint32(UInt32(vocab))),
    ]
    if let per = s.perLayer {
        let replace: [String: GGUFValue] = [
            "\(a).attention.head_count": .int32s(per.map { Int32($0.0) }),
            "\(a).attention.head_count_kv": .int32s(per.map { Int32($0.1) }),
            "\(a).feed_forward_length": .int32s(per.map { Int32($0.2) }),
        ]
        textMeta = textMeta.map { (k, v) in (k, replace[k] ?? v) }
        textMeta.append(("\(a).attention.key_length", .uint32(UInt32(headDim))))
        textMeta.append(("\(a).attention.value_length", .uint32(UInt32(headDim))))
    }
    meta += textMeta + s.extra + s.vocabulary

    var tensors = [SeedTensor(name: "token_embd.weight", dims: [s.hidden, vocab], type: s.embeddingType)]
    if s.ropeFreqs { tensors.append(SeedTensor(name: "rope_freqs.weight", dims: [headDim / 2], type: .f32)) }
    for l in 0..<s.layers {
        let (h, kv, ff) = s.perLayer?[l] ?? (s.heads, s.kvHeads, s.ff)
        let q = h * headDim, k = kv * headDim, d = s.hidden, p = "blk.\(l)"
        tensors += [
            SeedTensor(name: "\(p).attn_norm.weight", dims: [d], type: .f32),
            SeedTensor(name: "\(p).attn_q.weight", dims: [d, q], type: s.matrixType),
            SeedTensor(name: "\(p).attn_k.weight", dims: [d, k], type: s.matrixType),
            SeedTensor(name: "\(p).attn_v.weight", dims: [d, k], type: s.matrixType),
            SeedTensor(name: "\(p).attn_output.weight", dims: [q, d], type: s.matrixType),
            SeedTensor(name: "\(p).ffn_norm.weight", dims: [d], type: .f32),
            SeedTensor(name: "\(p).ffn_gate.weight", dims: [d, ff], type: s.matrixType),
            SeedTensor(name: "\(p).ffn_up.weight", dims: [d, ff], type: s.matrixType),
            SeedTensor(name: "\(p).ffn_down.weight", dims: [ff, d], type: s.matrixType),
        ]
        if s.bias {
            tensors += [SeedTensor(name: "\(p).attn_q.bias", dims: [q], type: .f32),
                        SeedTensor(name: "\(p).attn_k.bias", dims: [k], type: .f32),
                        SeedTensor(name: "\(p).attn_v.bias", dims: [k], type: .f32)]
        }
    }
    tensors.append(SeedTensor(name: "output_norm.weight", dims: [s.hidden], type: .f32))
    if !s.tied { tensors.append(SeedTensor(name: "output.weight", dims: [s.hidden, vocab], type: s.matrixType)) }
    try writeSeed("\(dir)/\(s.name).gguf", meta, tensors)
}

// MARK: vision

private struct VisionSeed {
    var name: String
    var family = VisionFamily.clip
    var imageSize = 8, patch = 4, hidden = 8, heads = 2, ff = 16, blocks = 1, sourceBlocks = 2
    var textHidden = 8
    var projector = "mlp"  // mlp, linear, idefics3
    var scaleFactor = 2
    var matrixType = QuantType.f32
    var extra: [(String, GGUFValue)] = []
    var newline = false
}

private func writeVision(_ s: VisionSeed, to dir: String) throws {
    let d = s.hidden, grid = s.imageSize / s.patch
    let hasClass = s.family != .siglip
    let positions = grid * grid + (hasClass ? 1 : 0)
    var t = [SeedTensor(name: "v.patch_embd.weight", dims: [s.patch, s.patch, 3, d], type: .f16)]
    if s.family != .clip { t.append(SeedTensor(name: "v.patch_embd.bias", dims: [d], type: .f32)) }
    if hasClass { t.append(SeedTensor(name: "v.class_embd", dims: [d], type: .f32)) }
    t.append(SeedTensor(name: "v.position_embd.weight", dims: [d, positions], type: .f32))
    if s.family == .clip {
        t += [SeedTensor(name: "v.pre_ln.weight", dims: [d], type: .f32), SeedTensor(name: "v.pre_ln.bias", dims: [d], type: .f32)]
    }
    for i in 0..<s.blocks {
        let p = "v.blk.\(i)"
        for (suffix, dims) in [("attn_q", [d, d]), ("attn_k", [d, d]), ("attn_v", [d, d]), ("attn_out", [d, d]),
                               ("ln1", [d]), ("ln2", [d]), ("ffn_up", [d, s.ff]), ("ffn_down", [s.ff, d])] {
            t.append(SeedTensor(name: "\(p).\(suffix).weight", dims: dims, type: dims.count == 2 ? s.matrixType : .f32))
            t.append(SeedTensor(name: "\(p).\(suffix).bias", dims: [dims.last!], type: .f32))
        }
        if s.family == .dinov2 {
            t += [SeedTensor(name: "\(p).ls1.weight", dims: [d], type: .f32), SeedTensor(name: "\(p).ls2.weight", dims: [d], type: .f32)]
        }
    }
    if s.family != .clip {
        t += [SeedTensor(name: "v.post_ln.weight", dims: [d], type: .f32), SeedTensor(name: "v.post_ln.bias", dims: [d], type: .f32)]
    }
    switch s.projector {
    case "idefics3":
        t.append(SeedTensor(name: "mm.model.fc.weight", dims: [d * s.scaleFactor * s.scaleFactor, s.textHidden], type: s.matrixType))
    default:
        t += [SeedTensor(name: "mm.0.weight", dims: [d, s.textHidden], type: s.matrixType),
              SeedTensor(name: "mm.0.bias", dims: [s.textHidden], type: .f32)]
        if s.projector == "mlp" {
            t += [SeedTensor(name: "mm.2.weight", dims: [s.textHidden, s.textHidden], type: s.matrixType),
                  SeedTensor(name: "mm.2.bias", dims: [s.textHidden], type: .f32)]
        }
    }
    if s.newline { t.append(SeedTensor(name: "model.image_newline", dims: [s.textHidden], type: .f32)) }

    let act = s.family == .clip ? "quick_gelu" : s.family == .siglip ? "gelu_pytorch_tanh" : "gelu"
    let (mean, std): ([Float], [Float]) = s.family == .clip
        ? ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
        : s.family == .siglip ? ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) : ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    var meta: [(String, GGUFValue)] = [
        ("general.architecture", .string("clip")), ("general.name", .string(s.name)),
        ("clip.has_text_encoder", .bool(false)), ("clip.has_vision_encoder", .bool(true)),
        ("clip.has_llava_projector", .bool(s.projector != "idefics3")),
        ("clip.projector_type", .string(s.projector)),
    ]
    if s.projector == "idefics3" { meta.append(("clip.vision.projector.scale_factor", .uint32(UInt32(s.scaleFactor)))) }
    meta += [
        ("clip.use_gelu", .bool(act.hasPrefix("gelu"))), ("clip.vision.image_size", .uint32(UInt32(s.imageSize))),
        ("clip.vision.patch_size", .uint32(UInt32(s.patch))), ("clip.vision.embedding_length", .uint32(UInt32(d))),
        ("clip.vision.feed_forward_length", .uint32(UInt32(s.ff))), ("clip.vision.projection_dim", .uint32(UInt32(d))),
        ("clip.vision.block_count", .uint32(UInt32(s.blocks))), ("clip.vision.attention.head_count", .uint32(UInt32(s.heads))),
        ("clip.vision.attention.layer_norm_epsilon", .float32(1e-5)),
        ("clip.vision.image_mean", .float32s(mean)), ("clip.vision.image_std", .float32s(std)),
    ]
    meta += s.extra
    meta += [("vzquant.vision.family", .string(s.family.rawValue)), ("vzquant.vision.hidden_act", .string(act)),
             ("vzquant.vision.source_block_count", .uint32(UInt32(s.sourceBlocks)))]
    try writeSeed("\(dir)/\(s.name).gguf", meta, t)
}

// MARK: the set

func writeSeeds(to dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let vicuna = "{% for m in messages %}{{ m['role'].upper() }}: {{ m['content'] }} {% endfor %}ASSISTANT:"
    let chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        + "{% if not messages or messages[0]['role'] != 'system' %}<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
    let llama3 = "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    let llama2 = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    let smolvlm = "<|im_start|>{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<end_of_utterance>\n{% endfor %}"

    try writeText(TextSeed(name: "text_spm_f32", vocabulary: spmVocabulary(chatTemplate: vicuna)), to: dir)
    try writeText(TextSeed(name: "text_spm_q8_0", hidden: 32, layers: 2, heads: 4, kvHeads: 2, ff: 32,
                           matrixType: .q8_0, embeddingType: .q8_0, tied: false, vocabulary: spmVocabulary(chatTemplate: llama2),
                           extra: [("llama.rope.scaling.type", .string("linear")), ("llama.rope.scaling.factor", .float32(2))]),
                  to: dir)
    try writeText(TextSeed(name: "text_qwen2_q4_0", arch: "qwen2", hidden: 32, heads: 2, kvHeads: 1, ff: 32,
                           matrixType: .q4_0, embeddingType: .q8_0, tied: true, bias: true,
                           vocabulary: gpt2Vocabulary(pre: "qwen2", chatTemplate: chatml),
                           extra: [("qwen2.rope.scaling.type", .string("yarn")), ("qwen2.rope.scaling.factor", .float32(4)),
                                   ("qwen2.rope.scaling.original_context_length", .uint32(16)),
                                   ("qwen2.rope.scaling.yarn_beta_fast", .float32(32))]),
                  to: dir)
    try writeText(TextSeed(name: "text_pruned_f16", hidden: 8, layers: 2, heads: 2, kvHeads: 1, ff: 16,
                           matrixType: .f16, embeddingType: .f16, tied: false,
                           vocabulary: gpt2Vocabulary(pre: "llama-bpe", chatTemplate: llama3),
                           perLayer: [(2, 1, 16), (1, 1, 8)], ropeFreqs: true),
                  to: dir)
    try writeText(TextSeed(name: "text_mistral_q5_0", arch: "mistral", hidden: 32, heads: 4, kvHeads: 4, ff: 64,
                           matrixType: .q5_0, embeddingType: .q4_1, tied: true,
                           vocabulary: gpt2Vocabulary(pre: "smollm", chatTemplate: nil)),
                  to: dir)

    try writeVision(VisionSeed(name: "mmproj_clip_mlp", extra: [("vzquant.vision.feature_layer", .int32(-2)),
                                                                ("vzquant.vision.feature_select", .string("default"))]),
                    to: dir)
    try writeVision(VisionSeed(name: "mmproj_clip_anyres_linear", hidden: 32, heads: 4, ff: 32, textHidden: 32,
                               projector: "linear", matrixType: .q8_0,
                               extra: [("clip.vision.image_grid_pinpoints", .int32s([8, 16, 16, 8, 16, 16])),
                                       ("clip.vision.image_crop_resolution", .uint32(8)),
                                       ("clip.vision.image_aspect_ratio", .string("anyres")),
                                       ("clip.vision.mm_patch_merge_type", .string("spatial_unpad")),
                                       ("vzquant.vision.feature_select", .string("full"))],
                               newline: true),
                    to: dir)
    try writeVision(VisionSeed(name: "mmproj_siglip_idefics3", family: .siglip, patch: 2, sourceBlocks: 1,
                               projector: "idefics3", matrixType: .f16,
                               extra: [("tokenizer.chat_template", .string(smolvlm))]),
                    to: dir)
    try writeVision(VisionSeed(name: "mmproj_dinov2", family: .dinov2, sourceBlocks: 1, projector: "linear"),
                    to: dir)
}

// MARK: Hugging Face directories (hf target)

/// A safetensors file: 8-byte header length, the JSON header, the data (small deterministic values).
private func safetensors(_ tensors: [(name: String, shape: [Int])], dtype: String) throws -> [UInt8] {
    let type: QuantType = dtype == "F32" ? .f32 : dtype == "F16" ? .f16 : .bf16
    var header = "{\"__metadata__\":{\"format\":\"pt\"}"
    var data: [UInt8] = []
    for (i, t) in tensors.enumerated() {
        let n = t.shape.reduce(1, *)
        let bytes = try type.quantize(seedValues(n, salt: i))
        header += ",\"\(t.name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],"
            + "\"data_offsets\":[\(data.count),\(data.count + bytes.count)]}"
        data += bytes
    }
    header += "}"
    while (8 + header.utf8.count) % 8 != 0 { header += " " }
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out += $0 }
    return out + Array(header.utf8) + data
}

/// config.json, then the checkpoint the planner expects for it, joined as the hf target's parts.
private func writeHFSeed(_ path: String, config: String, dtype: String = "F32", visionLayers: Int = 0,
                         preprocessor: String? = nil) throws {
    let c = try JSONDecoder().decode(HFConfig.self, from: Data(config.utf8))
    let arch = try HFArchitecture.detect(c, directory: "seed")
    let prefixes: (text: String, lmHead: String, vision: String, projector: String)
    switch arch {
    case .llava: prefixes = ("model.language_model.", "lm_head.", "model.vision_tower.vision_model.", "model.multi_modal_projector.")
    case .llama, .mistral, .qwen2: prefixes = ("model.", "lm_head.", "", "")
    case .clipVision, .siglipVision: prefixes = ("", "", "vision_model.", "")
    case .dinov2: prefixes = ("", "", "", "")
    }
    var tensors: [(name: String, shape: [Int])] = []
    if arch.hasVision {
        let family: VisionFamily = arch == .siglipVision ? .siglip : arch == .dinov2 ? .dinov2 : .clip
        let v = try VisionParams(arch == .llava ? c.visionConfig! : c.asVision, family: family, directory: "seed")
        let kept = arch == .llava ? visionLayers - 1 : visionLayers
        for s in VisionTable.plan(v, keptLayers: kept, postNorm: arch != .llava) { tensors.append((prefixes.vision + s.hf, s.shape)) }
        if arch == .llava {
            let t = try TextParams(c.textConfig!, tiedDefault: c.tieWordEmbeddings, directory: "seed")
            for s in ProjectorTable.plan(visionHidden: v.hidden, textHidden: t.hidden, bias: true) {
                tensors.append((prefixes.projector + s.hf, s.shape))
            }
        }
    }
    if arch.hasText {
        let t = try TextParams(arch == .llava ? c.textConfig! : c.asText, tiedDefault: arch == .llava ? c.tieWordEmbeddings : nil,
                               directory: "seed")
        for s in TextTable.plan(t, vocab: t.vocab ?? 16) {
            tensors.append(((s.gguf == "output.weight" ? prefixes.lmHead : prefixes.text) + s.hf, s.shape))
        }
    }
    var out = Array(config.utf8) + partSeparator + (try safetensors(tensors, dtype: dtype))
    if let preprocessor { out += partSeparator + Array(preprocessor.utf8) }
    try Data(out).write(to: URL(fileURLWithPath: path))
    print("wrote \(path)")
}

func writeHFSeeds(to dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let text = #""hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16, "max_position_embeddings": 64, "rms_norm_eps": 1e-05"#
    let clip = #""hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 8, "patch_size": 4, "projection_dim": 8, "layer_norm_eps": 1e-05, "hidden_act": "quick_gelu""#
    try writeHFSeed("\(dir)/llama_rope_llama3.hfdir", config: """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", \(text), "tie_word_embeddings": false,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
         "rope_theta": 500000.0}
        """)
    try writeHFSeed("\(dir)/qwen2_yarn.hfdir", config: """
        {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", \(text), "tie_word_embeddings": true,
         "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 32, "beta_slow": 1, "rope_theta": 1000000.0}}
        """, dtype: "F16")
    try writeHFSeed("\(dir)/mistral_linear.hfdir", config: """
        {"architectures": ["MistralForCausalLM"], "model_type": "mistral", \(text), "head_dim": 4,
         "rope_scaling": {"type": "linear", "factor": 2.0}}
        """, dtype: "BF16")
    try writeHFSeed("\(dir)/llava.hfdir", config: """
        {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "multimodal_projector_bias": true,
         "projector_hidden_act": "gelu", "tie_word_embeddings": false, "vision_feature_layer": -2,
         "vision_feature_select_strategy": "default",
         "text_config": {"model_type": "llama", \(text)},
         "vision_config": {"model_type": "clip_vision_model", \(clip)}}
        """, visionLayers: 2, preprocessor: #"{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "crop_size": {"height": 8, "width": 8}}"#)
    try writeHFSeed("\(dir)/clip.hfdir", config: """
        {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model", \(clip)}
        """, dtype: "F16", visionLayers: 2)
    try writeHFSeed("\(dir)/siglip.hfdir", config: """
        {"architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model", "hidden_size": 8, "intermediate_size": 16,
         "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 8, "patch_size": 4, "hidden_act": "gelu_pytorch_tanh",
         "layer_norm_eps": 1e-06}
        """, visionLayers: 1)
    try writeHFSeed("\(dir)/dinov2.hfdir", config: """
        {"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": 8, "mlp_ratio": 2, "num_hidden_layers": 1,
         "num_attention_heads": 2, "image_size": 8, "patch_size": 4, "hidden_act": "gelu", "layer_norm_eps": 1e-06,
         "layerscale_value": 1.0}
        """, visionLayers: 1, preprocessor: #"{"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#)
}

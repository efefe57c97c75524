import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Which Hugging Face architectures `vzquant convert` understands, and their hyper-parameters resolved from
/// config.json with transformers' defaults filled in.
public enum HFArchitecture: String, CaseIterable, Sendable {
    case llava = "LlavaForConditionalGeneration"
    case llavaNext = "LlavaNextForConditionalGeneration"
    case idefics3 = "Idefics3ForConditionalGeneration"
    case smolvlm = "SmolVLMForConditionalGeneration"
    case qwen2vl = "Qwen2VLForConditionalGeneration"
    case qwen25vl = "Qwen2_5_VLForConditionalGeneration"
    case llama = "LlamaForCausalLM"
    case mistral = "MistralForCausalLM"
    case qwen2 = "Qwen2ForCausalLM"
    case clipVision = "CLIPVisionModel"
    case siglipVision = "SiglipVisionModel"
    case dinov2 = "Dinov2Model"

    public static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The architecture named by config.json's "architectures", or a one-line error naming it and the supported list.
    public static func detect(_ config: HFConfig, directory: String) throws -> HFArchitecture {
        guard let names = config.architectures, !names.isEmpty else {
            throw ConvertError("\(directory)/config.json has no \"architectures\" entry; supported: \(supportedList)")
        }
        for n in names { if let a = HFArchitecture(rawValue: n) { return a } }
        throw ConvertError("unsupported architecture \(names.joined(separator: ", ")) in \(directory)/config.json; supported: \(supportedList)")
    }

    public var hasText: Bool { isVLM || self == .llama || self == .mistral || self == .qwen2 }
    public var hasVision: Bool { !(self == .llama || self == .mistral || self == .qwen2) }
    /// A vision-language model: a text model in text_config, a tower in vision_config and a projector.
    public var isVLM: Bool { isLlava || isIdefics3 || isQwenVL }
    /// LLaVA-1.5 or LLaVA-NeXT: CLIP tower read at vision_feature_layer, mlp projector.
    public var isLlava: Bool { self == .llava || self == .llavaNext }
    /// Idefics3 or SmolVLM: SigLIP-like tower with its post-norm, pixel-shuffle connector.
    public var isIdefics3: Bool { self == .idefics3 || self == .smolvlm }
    /// Qwen2-VL or Qwen2.5-VL: dynamic-resolution tower with 2-D RoPE, 2×2 patch merger, M-RoPE decoder.
    public var isQwenVL: Bool { self == .qwen2vl || self == .qwen25vl }
}

/// The converter's single error: one line, no file left behind.
public struct ConvertError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A config.json field checked against `Limits` before anything is planned or sized from it.
func bounded<T: Comparable>(_ value: T, _ field: String, _ range: ClosedRange<T>, directory: String) throws -> T {
    guard range.contains(value) else {
        throw ConvertError("\(directory)/config.json: \(field) is \(value), outside \(Limits.describe(range))")
    }
    return value
}

/// A config.json float: finite and inside `range`.
func boundedFloat(_ value: Double, _ field: String, _ range: ClosedRange<Double>, directory: String) throws -> Double {
    guard value.isFinite, range.contains(value) else {
        throw ConvertError("\(directory)/config.json: \(field) is \(value), outside \(Limits.describe(range))")
    }
    return value
}

/// A decoder-only text model to convert: its shape as the runtime reads it back (`LlamaConfig`, the one config
/// of a decoder) and what only the conversion needs to know.
public struct TextParams: Sendable, Equatable {
    public var config: LlamaConfig
    /// nil when config.json does not say (then the embedding's row count is used).
    public var vocab: Int?
    /// What llama.cpp records of config.json's rope_parameters / rope_scaling (nil: nothing).
    public var ropeScaling: RopeScaling?
    /// No output.weight: the output layer reuses token_embd.
    public var tiedEmbeddings: Bool
    /// q/k/v projections have biases (always for qwen2; llama when attention_bias is true).
    public var qkvBias: Bool

    /// llama.cpp's architecture: "llama" (Llama, Mistral, Vicuna) or "qwen2".
    public var arch: String { config.architecture }
    public var hidden: Int { config.hidden }
    public var feedForward: Int { config.feedForward }
    public var layers: Int { config.layers }
    public var heads: Int { config.heads }
    public var kvHeads: Int { config.kvHeads }
    public var headDim: Int { config.headDim }
    public var kvDim: Int { config.kvDim }
    public var context: Int { config.contextLength }
    public var ropeTheta: Double { Double(config.ropeBase) }
    /// llama.cpp's llama files store Q/K rows with the rotary halves interleaved; HF stores them split.
    public var permuteQK: Bool { arch == "llama" }

    /// A decoder described directly (synthetic presets).
    public init(_ config: LlamaConfig, vocab: Int, tiedEmbeddings: Bool) {
        (self.config, self.vocab, ropeScaling, self.tiedEmbeddings, qkvBias) = (config, vocab, nil, tiedEmbeddings, false)
    }

    init(_ c: HFTextConfig, tiedDefault: Bool?, directory: String) throws {
        let type = c.modelType ?? "llama"
        let arch: String
        switch type {
        case "llama", "mistral": arch = "llama"
        case "qwen2": arch = "qwen2"
        case "qwen2_vl", "qwen2_5_vl", "qwen2_vl_text", "qwen2_5_vl_text": arch = "qwen2vl"
        default:
            throw ConvertError("unsupported text model_type '\(type)' in \(directory)/config.json; supported: llama, mistral, qwen2, qwen2_vl, qwen2_5_vl")
        }
        // transformers' defaults for each config class (used only when config.json leaves a field out).
        let mistral = type == "mistral", qwen = arch == "qwen2" || arch == "qwen2vl"
        let d = directory
        let hidden = try bounded(c.hiddenSize ?? 4096, "hidden_size", Limits.width, directory: d)
        let feedForward = try bounded(c.intermediateSize ?? (mistral ? 14336 : qwen ? 22016 : 11008), "intermediate_size", Limits.width, directory: d)
        let layers = try bounded(c.numHiddenLayers ?? 32, "num_hidden_layers", Limits.layers, directory: d)
        let heads = try bounded(c.numAttentionHeads ?? 32, "num_attention_heads", Limits.heads, directory: d)
        let kvHeads = try bounded(c.numKeyValueHeads ?? (mistral ? 8 : heads), "num_key_value_heads", Limits.heads, directory: d)
        guard heads % kvHeads == 0 else {
            throw ConvertError("\(directory)/config.json: bad attention shape (hidden \(hidden), heads \(heads), kv heads \(kvHeads), layers \(layers))")
        }
        let headDim = c.headDim ?? hidden / heads
        guard Limits.width.contains(headDim), headDim % 2 == 0 else { throw ConvertError("\(directory)/config.json: head_dim \(headDim) must be even and in \(Limits.describe(Limits.width))") }
        vocab = try c.vocabSize.map { try bounded($0, "vocab_size", Limits.vocabulary, directory: d) }
        let context = try bounded(c.maxPositionEmbeddings ?? (mistral || qwen ? 32768 : 2048), "max_position_embeddings", Limits.context, directory: d)
        let rmsEps = try boundedFloat(c.rmsNormEps ?? 1e-6, "rms_norm_eps", 0...1, directory: d)
        let ropeTheta = try boundedFloat(c.ropeTheta ?? c.ropeParameters?.ropeTheta ?? 10000, "rope_theta",
                                         Double(Limits.ropeBase.lowerBound)...Double(Limits.ropeBase.upperBound), directory: d)
        config = LlamaConfig(architecture: arch, hidden: hidden, layers: layers, heads: heads, kvHeads: kvHeads,
                             feedForward: feedForward, headDim: headDim, contextLength: context, ropeBase: Float(ropeTheta),
                             rmsEps: Float(rmsEps))
        // convert_hf_to_gguf.py reads rope_parameters, else rope_scaling
        ropeScaling = try RopeScaling(c.ropeParameters ?? c.ropeScaling, topLevelOriginalContext: c.originalMaxPositionEmbeddings,
                                      directory: directory)
        tiedEmbeddings = c.tieWordEmbeddings ?? tiedDefault ?? false
        qkvBias = qwen || (c.attentionBias ?? false)
        if arch == "qwen2vl" {
            // M-RoPE: rotary pairs per (temporal, height, width) stream, from rope_scaling (4.x) or rope_parameters (5.x).
            guard let sections = (c.ropeParameters ?? c.ropeScaling)?.mropeSection, sections.count == 3,
                  sections.allSatisfy({ $0 >= 0 }), sections.reduce(0, +) == headDim / 2 else {
                throw ConvertError("\(directory)/config.json: a Qwen2-VL text model needs mrope_section: 3 counts of rotary pairs summing to head_dim / 2 (\(headDim / 2))")
            }
            config.ropeSections = sections
        }
    }

    /// The `<arch>.*` keys llama.cpp reads for this decoder, with `vocab` token rows.
    func metadata(vocab: Int) -> [(String, GGUFValue)] {
        let key = GGUFKey.Decoder(arch)
        return config.metadata(vocab: vocab) + (ropeScaling?.metadata ?? []).map { (key.ropeScaling($0.0), $0.1) }
    }
}

/// RoPE scaling as llama.cpp's convert_hf_to_gguf.py records it for a Llama/Mistral/Qwen2 model:
/// - "linear" (with a factor): `<arch>.rope.scaling.type` = "linear" and `.factor`;
/// - "yarn" (with a factor): type "yarn", `.factor`, `.original_context_length`, and, when config.json has them,
///   `.yarn_ext_factor` (extrapolation_factor), `.yarn_attn_factor` (attention_factor or attn_factor),
///   `.yarn_beta_fast`, `.yarn_beta_slow`;
/// - "llama3": no scaling keys at all, but a `rope_freqs.weight` F32 tensor of head_dim/2 per-frequency factors
///   (`llama3FrequencyFactors`), which llama.cpp divides each rotary frequency by;
/// - anything else ("dynamic", unknown names): nothing (llama.cpp warns and runs without scaling).
/// "longrope"/"su" is refused: llama.cpp would need the long/short factor tensors Phi-3 has, which these
/// architectures do not carry.
public enum RopeScaling: Sendable, Equatable {
    case linear(factor: Double)
    case yarn(factor: Double, originalContext: Int, extFactor: Double?, attnFactor: Double?, betaFast: Double?, betaSlow: Double?)
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalContext: Int)

    /// nil when llama.cpp would record nothing.
    init?(_ r: HFRope?, topLevelOriginalContext: Int?, directory: String) throws {
        guard let r, let type = r.scalingType else { return nil }
        let original = try (r.originalMaxPositionEmbeddings ?? topLevelOriginalContext)
            .map { try bounded($0, "original_max_position_embeddings", Limits.context, directory: directory) }
        let factorRange = Double(Limits.ropeFactor.lowerBound)...Double(Limits.ropeFactor.upperBound)
        if let f = r.factor { _ = try boundedFloat(f, "rope scaling factor", factorRange, directory: directory) }
        for (name, v) in [("extrapolation_factor", r.extrapolationFactor), ("attention_factor", r.attentionFactor ?? r.attnFactor),
                          ("beta_fast", r.betaFast), ("beta_slow", r.betaSlow), ("low_freq_factor", r.lowFreqFactor),
                          ("high_freq_factor", r.highFreqFactor)] {
            if let v { _ = try boundedFloat(v, "rope scaling \(name)", -1e6...1e6, directory: directory) }
        }
        switch type {
        case "linear":
            guard let f = r.factor else { return nil }
            self = .linear(factor: f)
        case "yarn":
            guard let f = r.factor else { return nil }
            guard let original else {
                throw ConvertError("\(directory)/config.json: yarn rope scaling needs original_max_position_embeddings")
            }
            self = .yarn(factor: f, originalContext: original, extFactor: r.extrapolationFactor,
                         attnFactor: r.attentionFactor ?? r.attnFactor, betaFast: r.betaFast, betaSlow: r.betaSlow)
        case _ where type.lowercased() == "llama3":
            // convert_hf_to_gguf.py's defaults for absent fields
            self = .llama3(factor: r.factor ?? 8, lowFreqFactor: r.lowFreqFactor ?? 1, highFreqFactor: r.highFreqFactor ?? 4,
                           originalContext: original ?? 8192)
        case "longrope", "su":
            throw ConvertError("\(directory)/config.json: rope scaling '\(type)' is not supported (llama.cpp needs long/short factor tensors these models do not have)")
        default:
            return nil
        }
    }

    /// The `(key suffix, value)` pairs llama.cpp writes under `<arch>.rope.scaling.`.
    var metadata: [(String, GGUFValue)] {
        switch self {
        case let .linear(f):
            return [("type", .string("linear")), ("factor", .float32(Float(f)))]
        case let .yarn(f, original, ext, attn, fast, slow):
            var out: [(String, GGUFValue)] = [("type", .string("yarn")), ("factor", .float32(Float(f))),
                                              ("original_context_length", .uint32(UInt32(clamping: original)))]
            if let ext { out.append(("yarn_ext_factor", .float32(Float(ext)))) }
            if let attn { out.append(("yarn_attn_factor", .float32(Float(attn)))) }
            if let fast { out.append(("yarn_beta_fast", .float32(Float(fast)))) }
            if let slow { out.append(("yarn_beta_slow", .float32(Float(slow)))) }
            return out
        case .llama3:
            return []
        }
    }

    /// Llama 3.1's per-frequency RoPE factors, one per rotary pair i (θ_i = base^(−2i/headDim)), computed in
    /// fp32 like convert_hf_to_gguf.py (which uses float32 torch tensors): with wavelength λ_i = 2π/θ_i,
    /// factor 1 when λ_i < original/high_freq_factor (high frequencies kept), `factor` when
    /// λ_i > original/low_freq_factor (low frequencies stretched), else 1 / ((1 − s)/factor + s) with
    /// s = (original/λ_i − low) / (high − low). llama.cpp divides θ_i by it.
    static func llama3FrequencyFactors(headDim: Int, base: Double, factor: Double, lowFreqFactor: Double,
                                       highFreqFactor: Double, originalContext: Int) -> [Float] {
        let f = Float(factor), low = Float(lowFreqFactor)
        let old = Float(originalContext)
        let lowWavelength = Float(Double(originalContext) / lowFreqFactor)
        let highWavelength = Float(Double(originalContext) / highFreqFactor)
        let span = Float(highFreqFactor - lowFreqFactor)
        let twoPi = Float(2 * Double.pi)
        return stride(from: 0, to: headDim, by: 2).map { i -> Float in
            let theta = 1 / powf(Float(base), Float(i) / Float(headDim))
            let wavelength = (1 / theta) * twoPi
            if wavelength < highWavelength { return 1 }
            if wavelength > lowWavelength { return f }
            let smooth = ((1 / wavelength) * old - low) / span
            return 1 / ((1 - smooth) / f + smooth)
        }
    }
}

/// A ViT tower to convert: its shape as the runtime reads it back (`VisionConfig`, the one config of a tower, with
/// `blockCount` the blocks stored) and what only the conversion needs: the image normalisation.
public struct VisionParams: Sendable, Equatable {
    public var config: VisionConfig
    public var imageMean: [Double]
    public var imageStd: [Double]

    public var family: VisionFamily { config.family }
    public var hidden: Int { config.hidden }
    public var feedForward: Int { config.feedForward }
    public var heads: Int { config.heads }
    public var imageSize: Int { config.imageSize }
    public var patchSize: Int { config.patchSize }
    public var channels: Int { config.channels }
    public var hiddenAct: String { config.hiddenAct ?? "" }
    /// Layers of the published tower, and those stored (up to LLaVA's feature layer).
    public var sourceLayers: Int { config.sourceBlockCount ?? config.blockCount }
    public var keptLayers: Int { config.blockCount }
    public var featureLayer: Int? { config.featureLayer }
    public var featureSelect: String { config.featureSelect }
    /// With a feature layer inside the tower the post-norm is never applied, so it is not written.
    public var hasPostNorm: Bool { featureLayer == nil }
    public var patchesPerSide: Int { imageSize / patchSize }
    /// Patches per image (+1 for the class token where the family has one): rows of the position embedding.
    public var positions: Int { patchesPerSide * patchesPerSide + (family == .siglip ? 0 : 1) }

    /// A tower described directly (synthetic presets): `sourceLayers` layers, those up to `featureLayer` stored
    /// (LLaVA's vision_feature_layer, negative from the end of the n + 1 hidden states; nil: all, post-norm too).
    init(family: VisionFamily, imageSize: Int, patchSize: Int, hidden: Int, feedForward: Int, heads: Int, sourceLayers: Int,
         featureLayer: Int?, featureSelect: String, hiddenAct: String, eps: Float, projectionDim: Int,
         imageMean: [Double], imageStd: [Double]) {
        let kept = featureLayer.map { $0 < 0 ? sourceLayers + 1 + $0 : $0 } ?? sourceLayers
        config = VisionConfig(family: family, imageSize: imageSize, patchSize: patchSize, hidden: hidden, feedForward: feedForward,
                              heads: heads, blockCount: kept, eps: eps, hiddenAct: hiddenAct, projectionDim: projectionDim,
                              featureSelect: featureSelect, featureLayer: featureLayer, sourceBlockCount: sourceLayers)
        (self.imageMean, self.imageStd) = (imageMean, imageStd)
    }

    /// The whole tower of a Hugging Face vision config (the planner then keeps LLaVA's layers up to its feature layer).
    init(_ c: HFVisionConfig, family: VisionFamily, directory: String) throws {
        let hidden = c.hiddenSize ?? 768
        let feedForward: Int, imageSize: Int, patchSize: Int, eps: Double, hiddenAct: String
        switch family {
        case .clip:
            feedForward = c.intermediateSize ?? 3072
            imageSize = c.imageSize ?? 224
            patchSize = c.patchSize ?? 32
            eps = c.layerNormEps ?? 1e-5
            hiddenAct = c.hiddenAct ?? "quick_gelu"
        case .siglip:
            feedForward = c.intermediateSize ?? 3072
            imageSize = c.imageSize ?? 224
            patchSize = c.patchSize ?? 16
            eps = c.layerNormEps ?? 1e-6
            hiddenAct = c.hiddenAct ?? "gelu_pytorch_tanh"
        case .dinov2:
            let ratio = try boundedFloat(c.mlpRatio ?? 4, "mlp_ratio", 1e-3...1e3, directory: directory)
            feedForward = Int((Double(min(hidden, Limits.width.upperBound)) * ratio).rounded())
            imageSize = c.imageSize ?? 224
            patchSize = c.patchSize ?? 16
            eps = c.layerNormEps ?? 1e-6
            hiddenAct = c.hiddenAct ?? "gelu"
        case .qwen2vl, .qwen25vl:
            throw ConvertError("\(directory)/config.json: a Qwen vision tower is read with its own fields (init(qwen:))")
        }
        let d = directory
        _ = try bounded(hidden, "hidden_size", Limits.width, directory: d)
        _ = try bounded(feedForward, "intermediate_size", Limits.width, directory: d)
        _ = try bounded(imageSize, "image_size", Limits.imageSide, directory: d)
        _ = try bounded(patchSize, "patch_size", Limits.patchSide, directory: d)
        _ = try boundedFloat(eps, "layer_norm_eps", 0...1, directory: d)
        let layers = try bounded(c.numHiddenLayers ?? 12, "num_hidden_layers", Limits.layers, directory: d)
        let heads = try bounded(c.numAttentionHeads ?? 12, "num_attention_heads", Limits.heads, directory: d)
        _ = try bounded(c.numChannels ?? 3, "num_channels", 3...3, directory: d)
        let projectionDim = try bounded(c.projectionDim ?? (family == .clip ? 512 : hidden), "projection_dim", Limits.width, directory: d)
        guard hidden % heads == 0, imageSize >= patchSize else {
            throw ConvertError("\(directory)/config.json: bad vision shape (hidden \(hidden), heads \(heads), layers \(layers), image \(imageSize), patch \(patchSize))")
        }
        config = VisionConfig(family: family, imageSize: imageSize, patchSize: patchSize, hidden: hidden, feedForward: feedForward,
                              heads: heads, blockCount: layers, eps: Float(eps), hiddenAct: hiddenAct, projectionDim: projectionDim,
                              sourceBlockCount: layers)
        (imageMean, imageStd) = family.defaultNormalization
    }

    /// Qwen2-VL's vision_config (embed_dim, depth, num_heads, mlp_ratio; transformers' defaults are the released
    /// towers') or Qwen2.5-VL's (hidden_size, depth, num_heads, intermediate_size, window_size,
    /// fullatt_block_indexes). Image size is what llama.cpp records (560; the tower takes any multiple of 28).
    init(qwen c: HFVisionConfig, family: VisionFamily, directory d: String) throws {
        let v25 = family == .qwen25vl
        let hidden = try bounded((v25 ? c.hiddenSize : c.embedDim) ?? 1280, v25 ? "hidden_size" : "embed_dim", Limits.width, directory: d)
        let feedForward: Int
        if v25 {
            feedForward = try bounded(c.intermediateSize ?? 3420, "intermediate_size", Limits.width, directory: d)
        } else {
            let ratio = try boundedFloat(c.mlpRatio ?? 4, "mlp_ratio", 1e-3...1e3, directory: d)
            feedForward = try bounded(Int(Double(hidden) * ratio), "embed_dim × mlp_ratio", Limits.width, directory: d)
        }
        let layers = try bounded(c.depth ?? 32, "depth", Limits.layers, directory: d)
        let heads = try bounded(c.numHeads ?? 16, "num_heads", Limits.heads, directory: d)
        let patch = try bounded(c.patchSize ?? 14, "patch_size", Limits.patchSide, directory: d)
        _ = try bounded(c.inChannels ?? 3, "in_channels", 3...3, directory: d)
        _ = try bounded(c.spatialMergeSize ?? 2, "spatial_merge_size", 2...2, directory: d)
        _ = try bounded(c.temporalPatchSize ?? 2, "temporal_patch_size", 2...2, directory: d)
        guard hidden % heads == 0, (hidden / heads) % 4 == 0 else {
            throw ConvertError("\(d)/config.json: bad vision shape (width \(hidden), heads \(heads)): heads must be a multiple of 4 values")
        }
        let act = c.hiddenAct ?? (v25 ? "silu" : "quick_gelu")
        guard act == (v25 ? "silu" : "quick_gelu") else {
            throw ConvertError("\(d)/config.json: vision hidden_act '\(act)' is not supported (\(v25 ? "silu" : "quick_gelu"))")
        }
        config = VisionConfig(family: family, imageSize: 40 * patch, patchSize: patch, hidden: hidden, feedForward: feedForward,
                              heads: heads, blockCount: layers, eps: 1e-6, hiddenAct: act, projectionDim: hidden,
                              featureSelect: "full", sourceBlockCount: layers)
        config.mergeSize = 2
        if v25 {
            let window = try bounded(c.windowSize ?? 112, "window_size", patch...Limits.imageSide.upperBound, directory: d)
            config.windowPatches = window / patch
            let full = c.fullattBlockIndexes ?? [7, 15, 23, 31]
            guard full.allSatisfy({ (0..<layers).contains($0) }) else {
                throw ConvertError("\(d)/config.json: fullatt_block_indexes \(full) are outside the \(layers)-layer tower")
            }
            config.fullAttentionLayers = full
        }
        (imageMean, imageStd) = family.defaultNormalization
    }

    /// The `clip.*` keys llama.cpp reads for the tower itself.
    func metadata() -> [(String, GGUFValue)] {
        config.metadata(mean: imageMean.map { Float($0) }, std: imageStd.map { Float($0) })
    }
}

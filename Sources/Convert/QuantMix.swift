import VZQKernels

/// llama.cpp's quantization mixes (llama-quantize's file types Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K): a base type
/// for every matrix, and more bits where a model is most sensitive. The rules are llama-quantize's
/// (llama_tensor_get_type, for these file types and dense models), restated:
///
/// - output.weight, and token_embd.weight when the model has no output.weight (tied): Q6_K, or Q8_0 when the row
///   length is not a multiple of the base type's block.
/// - attn_v (and a fused attn_qkv): Q4_K_M/Q5_K_M give Q6_K to the layers `usesMoreBits` picks; Q4_K_S gives Q5_K
///   to the first 4. A 70B-class model (80 layers, grouped KV heads) gets Q5_K where this leaves Q4_K.
/// - ffn_down: Q4_K_M/Q5_K_M give Q6_K to the layers `usesMoreBits` picks; Q4_K_S gives Q5_K to the first eighth.
/// - Every other matrix, and every matrix of a vision file (llama-quantize does not touch those): the base type.
/// - Then, for any type, a row length its block does not divide falls back as llama.cpp falls back: Q4_K → Q5_0,
///   Q5_K → Q5_1, Q6_K → Q8_0, and to F16 when not even 32 divides it.
public enum QuantMix: String, Sendable, CaseIterable {
    case q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k

    public var baseType: QuantType {
        switch self {
        case .q4_k_s, .q4_k_m: .q4_K
        case .q5_k_s, .q5_k_m: .q5_K
        case .q6_k: .q6_K
        }
    }

    /// llama.cpp's general.file_type (enum llama_ftype).
    public var fileType: UInt32 {
        switch self {
        case .q4_k_s: 14
        case .q4_k_m: 15
        case .q5_k_s: 16
        case .q5_k_m: 17
        case .q6_k: 18
        }
    }

    /// The layers (of `count`) where the *_M mixes spend more bits: the first and last eighth, and every third
    /// layer between.
    static func usesMoreBits(_ i: Int, of count: Int) -> Bool {
        i < count / 8 || i >= 7 * count / 8 || (i - count / 8) % 3 == 2
    }

    /// The type of one text-model matrix (before the row-length fallback).
    func type(for name: String, rowLength: Int, in file: MixContext) -> QuantType {
        let base = baseType
        let isOutput = name == "output.weight" || (file.tiedEmbeddings && name == "token_embd.weight")
        if isOutput { return rowLength % base.blockElements != 0 ? .q8_0 : .q6_K }
        if name.hasSuffix("attn_v.weight") || name.hasSuffix("attn_qkv.weight") {
            let i = file.attentionVIndex(name), n = file.attentionVCount
            var t = base
            if self == .q4_k_m || self == .q5_k_m, Self.usesMoreBits(i, of: n) {
                t = .q6_K
            } else if self == .q4_k_s, i < 4 {
                t = .q5_K
            }
            if file.seventyBClass, t == .q4_K { t = .q5_K }
            return t
        }
        if name.hasSuffix("ffn_down.weight"), let i = MixContext.layer(of: name) {
            let n = file.blockCount
            if self == .q4_k_m || self == .q5_k_m, Self.usesMoreBits(i, of: n) { return .q6_K }
            if self == .q4_k_s, i < n / 8 { return .q5_K }
        }
        return base
    }

    /// llama.cpp's fallback for a row length the type's block does not divide.
    static func fallback(_ type: QuantType, rowLength: Int) -> (QuantType, note: String?) {
        guard rowLength % type.blockElements != 0 else { return (type, nil) }
        let next: QuantType
        switch type {
        case .q4_K: next = .q5_0
        case .q5_K: next = .q5_1
        case .q6_K: next = .q8_0
        default: next = .f16
        }
        let chosen = rowLength % next.blockElements == 0 ? next : .f16
        return (chosen, "row length \(rowLength) is not a multiple of \(type.blockElements): stored as \(chosen) instead of \(type)")
    }
}

/// What the mix rules need to know about a whole text file before typing one of its tensors.
public struct MixContext: Sendable, Equatable {
    /// Transformer blocks (llama.cpp's n_layer).
    public var blockCount: Int
    /// Layers that have an attn_v (or attn_qkv) matrix, ascending: a tensor's index here is llama.cpp's counter.
    public var attentionVLayers: [Int]
    /// No output.weight: token_embd is also the output layer.
    public var tiedEmbeddings: Bool
    /// llama.cpp's 70B model class (80 layers with grouped KV heads).
    public var seventyBClass: Bool

    /// From the GGUF names of every tensor the file will hold.
    public init(tensorNames names: [String], groupedKV: Bool) {
        let layers = names.compactMap(Self.layer(of:))
        blockCount = (layers.max() ?? -1) + 1
        attentionVLayers = names.filter { $0.hasSuffix("attn_v.weight") || $0.hasSuffix("attn_qkv.weight") }
            .compactMap(Self.layer(of:)).sorted()
        tiedEmbeddings = !names.contains("output.weight")
        seventyBClass = blockCount == 80 && groupedKV
    }

    var attentionVCount: Int { attentionVLayers.count }

    func attentionVIndex(_ name: String) -> Int {
        guard let layer = Self.layer(of: name) else { return 0 }
        return attentionVLayers.firstIndex(of: layer) ?? 0
    }

    /// N of "blk.N.…" (text-model block tensors only).
    static func layer(of name: String) -> Int? {
        guard name.hasPrefix("blk.") else { return nil }
        return Int(name.dropFirst(4).prefix { $0.isNumber })
    }
}

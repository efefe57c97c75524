import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Which GGUF type each tensor gets.
///
/// - 1-D tensors (norms, biases, layer scales), position and class embeddings: F32.
/// - The conv patch embedding (4-D): F16 (F32 under --type f32).
/// - The token embedding: --token-embedding-type, else Q8_0 when --type is a 4- or 5-bit type (Q4_K and Q5_K
///   included), else --type; under a llama.cpp mix (q4_k_m, …) the mix decides (`QuantMix`).
/// - Other 2-D weights: --type, or the mix's choice for a text model's matrix; a row length the type's block does
///   not divide falls back as llama.cpp's llama-quantize falls back (K-quants to Q5_0/Q5_1/Q8_0, then F16), with a
///   note.
public struct TypePolicy: Sendable, Equatable {
    public static let outputTypes: [QuantType] = [.f32, .f16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]
    /// Types whose token embedding is stored as Q8_0 (embedding rows are read one at a time and cost no GEMM time).
    static let q8EmbeddingTypes: Set<QuantType> = [.q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K]
    /// What `--type` takes: a type, or a mix (q6_k is both: the mix, whose every matrix is Q6_K).
    public static var typeNames: [String] {
        outputTypes.map { $0.description.lowercased() }.filter { $0 != "q6_k" } + QuantMix.allCases.map(\.rawValue)
    }

    /// The type of every matrix (a mix's base type).
    public var type: QuantType
    /// llama.cpp's per-tensor rules on top of `type` (nil: one type for every matrix).
    public var mix: QuantMix?
    public var tokenEmbeddingType: QuantType?

    public init(type: QuantType, tokenEmbeddingType: QuantType? = nil) throws {
        for t in [type] + (tokenEmbeddingType.map { [$0] } ?? []) where !TypePolicy.outputTypes.contains(t) {
            throw ConvertError("cannot write \(t) tensors; the output types are " + TypePolicy.outputTypes.map(\.description).joined(separator: ", "))
        }
        self.type = type
        self.tokenEmbeddingType = tokenEmbeddingType
    }

    public init(mix: QuantMix, tokenEmbeddingType: QuantType? = nil) throws {
        try self.init(type: mix.baseType, tokenEmbeddingType: tokenEmbeddingType)
        self.mix = mix
    }

    /// `--type NAME`: a mix ("q4_k_m") or a type ("q4_0", "q4_k").
    public init(named name: String, tokenEmbeddingType: QuantType? = nil) throws {
        if let mix = QuantMix(rawValue: name.lowercased()) {
            try self.init(mix: mix, tokenEmbeddingType: tokenEmbeddingType)
        } else if let t = QuantType(name: name), TypePolicy.outputTypes.contains(t) {
            try self.init(type: t, tokenEmbeddingType: tokenEmbeddingType)
        } else {
            throw ConvertError("unknown type '\(name)'; --type takes " + TypePolicy.typeNames.joined(separator: ", "))
        }
    }

    /// llama.cpp's general.file_type (LlamaFileType) for the requested type (a single K type as llama-quantize
    /// --pure writes it: Q4_K_M's, Q5_K_M's, Q6_K's).
    public var fileType: UInt32 {
        if let mix { return mix.fileType }
        switch type {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
        case .q4_K: return 15
        case .q5_K: return 17
        case .q6_K: return 18
        default: return 0
        }
    }

    /// The type for a tensor with GGUF dims `dims` (innermost first), and a note when the policy had to fall back.
    /// `name` and `file` (a text model's tensor names) let a mix apply its per-tensor rules.
    public func choose(role: TensorRole, dims: [Int], name: String? = nil, file: MixContext? = nil) -> (QuantType, note: String?) {
        switch role {
        case .vector, .positionEmbedding, .classEmbedding, .layerScale:
            return (.f32, nil)
        case .patchEmbedding:
            return (type == .f32 ? .f32 : .f16, nil)
        case .tokenEmbedding, .matrix:
            if dims.count < 2 { return (.f32, nil) }
            let row = dims[0]
            let wanted: QuantType
            if role == .tokenEmbedding, let tokenEmbeddingType {
                wanted = tokenEmbeddingType
            } else if let mix, let name, let file {
                wanted = mix.type(for: name, rowLength: row, in: file)
            } else if role == .tokenEmbedding {
                wanted = Self.q8EmbeddingTypes.contains(type) ? .q8_0 : type
            } else {
                wanted = type
            }
            return QuantMix.fallback(wanted, rowLength: row)
        }
    }

    /// The role of a tensor in a GGUF file being re-quantized, from its llama.cpp name and dims.
    public static func role(ggufName name: String, dims: [Int]) -> TensorRole {
        if name == "token_embd.weight" { return .tokenEmbedding }
        if name.hasPrefix("v.position_embd") || name.contains("position_embd") { return .positionEmbedding }
        if name == "v.class_embd" { return .classEmbedding }
        if dims.count >= 3 { return .patchEmbedding }
        if dims.count <= 1 { return .vector }
        return .matrix
    }
}

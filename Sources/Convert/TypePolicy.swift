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
/// - The token embedding: --token-embedding-type, else Q8_0 when --type is a 4- or 5-bit type, else --type.
/// - Other 2-D weights: --type; a quantized type whose block does not divide the row length falls back to F16
///   (with a note).
public struct TypePolicy: Sendable, Equatable {
    public static let outputTypes: [QuantType] = [.f32, .f16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1]
    /// Types whose token embedding is stored as Q8_0 (embedding rows are read one at a time and cost no GEMM time).
    static let q8EmbeddingTypes: Set<QuantType> = [.q4_0, .q4_1, .q5_0, .q5_1]

    public var type: QuantType
    public var tokenEmbeddingType: QuantType?

    public init(type: QuantType, tokenEmbeddingType: QuantType? = nil) throws {
        for t in [type] + (tokenEmbeddingType.map { [$0] } ?? []) where !TypePolicy.outputTypes.contains(t) {
            throw ConvertError("cannot write \(t) tensors; the output types are " + TypePolicy.outputTypes.map(\.description).joined(separator: ", "))
        }
        self.type = type
        self.tokenEmbeddingType = tokenEmbeddingType
    }

    /// llama.cpp's general.file_type (LlamaFileType) for the requested type.
    public var fileType: UInt32 {
        switch type {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q5_0: 8
        case .q5_1: 9
        default: 0
        }
    }

    /// The type for a tensor with GGUF dims `dims` (innermost first), and a note when the policy had to fall back.
    public func choose(role: TensorRole, dims: [Int]) -> (QuantType, note: String?) {
        switch role {
        case .vector, .positionEmbedding, .classEmbedding, .layerScale:
            return (.f32, nil)
        case .patchEmbedding:
            return (type == .f32 ? .f32 : .f16, nil)
        case .tokenEmbedding, .matrix:
            if dims.count < 2 { return (.f32, nil) }
            let wanted = role == .tokenEmbedding ? (tokenEmbeddingType ?? (Self.q8EmbeddingTypes.contains(type) ? .q8_0 : type)) : type
            let row = dims[0]
            if row % wanted.blockElements != 0 {
                return (.f16, "row length \(row) is not a multiple of \(wanted.blockElements): stored as f16 instead of \(wanted)")
            }
            return (wanted, nil)
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

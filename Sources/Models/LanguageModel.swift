import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// A decoder the runtime drives: token embeddings and image rows in, logits out, its KV cache inside. Each family
/// (Llama/Mistral/Qwen2/Qwen2-VL today) is one file conforming to this, registered in
/// `LanguageModels` by the `general.architecture` its files carry; sessions and the bench see only this.
public protocol LanguageModel: AnyObject {
    /// `general.architecture` of the file.
    var architecture: String { get }
    /// Embedding width (rows of images spliced into a prompt must have it too).
    var hidden: Int { get }
    var vocab: Int { get }
    /// Positions the KV cache holds.
    var maxContext: Int { get }
    /// Positions already in the cache; the next row processed sits here.
    var position: Int { get }

    /// Token embeddings [tokens.count, hidden].
    func embeddings(_ tokens: [Int32]) throws -> [Float]
    /// Runs `embeddings` [n, hidden] from the current position; the logits of every row [n, vocab], or with
    /// `lastOnly` those of the last row [vocab]. `positions`: each row's (temporal, height, width) rotary position
    /// [n · 3] for a decoder with multimodal positions (image rows); nil: consecutive text positions.
    func prefill(embeddings: [Float], positions: [Int32]?, lastOnly: Bool) throws -> [Float]
    /// Whether image rows take (temporal, height, width) positions (Qwen2-VL's M-RoPE) rather than the next ones.
    var usesMultimodalPositions: Bool { get }
    /// The rotary position the next text row gets (`position` unless multimodal positions came before).
    var ropePosition: Int { get }
    /// One token in at the current position, its logits [vocab] out (valid until the next call).
    func decode(token: Int32) throws -> UnsafeBufferPointer<Float>
    /// Forgets the cache.
    func reset()
    /// Forgets the positions from `p` on.
    func truncate(to p: Int)

    /// Memory, as the bench reports it: packed weight matrices, the KV cache, and the whole arena (cache + scratch).
    var weightBytes: Int { get }
    var kvCacheBytes: Int { get }
    var arenaBytes: Int { get }
    /// Packed matrix element types in use, with the count of matrices of each.
    var weightTypes: [QuantType: Int] { get }
}

extension LanguageModel {
    /// Text rows (or rows at consecutive positions).
    public func prefill(embeddings: [Float], lastOnly: Bool) throws -> [Float] {
        try prefill(embeddings: embeddings, positions: nil, lastOnly: lastOnly)
    }
}

/// How a session sizes a language model.
public struct LanguageModelOptions: Sendable {
    public var maxContext: Int
    public var maxBatch: Int
    public var widenToF32: Bool?
    public var kvCache: KVCacheType

    public init(maxContext: Int, maxBatch: Int = 64, widenToF32: Bool? = nil, kvCache: KVCacheType = .f32) {
        (self.maxContext, self.maxBatch, self.widenToF32, self.kvCache) = (maxContext, maxBatch, widenToF32, kvCache)
    }
}

/// The registry of decoder families, keyed by `general.architecture`.
public enum LanguageModels {
    typealias Loader = @Sendable (GGUFFile, LanguageModelOptions) throws -> any LanguageModel

    static let loaders: [String: Loader] = {
        let llama: Loader = { file, o in
            try LlamaModel(file: file, maxContext: o.maxContext, maxBatch: o.maxBatch, widenToF32: o.widenToF32, kvCache: o.kvCache)
        }
        return ["llama": llama, "mistral": llama, "deci": llama, "qwen2": llama, "qwen2vl": llama]
    }()

    public static var architectures: [String] { loaders.keys.sorted() }

    /// The decoder of a text GGUF file.
    public static func load(_ file: GGUFFile, _ options: LanguageModelOptions) throws -> any LanguageModel {
        let arch = try file.metadata.string(GGUFKey.General.architecture)
        guard let load = loaders[arch] else {
            throw ModelError("\(file.path): architecture '\(arch)' is not a supported decoder (\(architectures.joined(separator: ", ")))")
        }
        return try load(file, options)
    }
}

import CQuant
import Foundation
import VZQFormats
import VZQKernels
import VZQSupport

/// A Llama-family decoder's shape, from `<arch>.*` GGUF metadata (llama, qwen2, qwen2vl — llama.cpp's keys).
public struct LlamaConfig: Sendable, Equatable {
    /// Which dims a rotation pairs: llama files hold Q/K rows permuted so pairs are adjacent (2i, 2i+1);
    /// qwen2 keeps Hugging Face's halves (i, i + d/2), what llama.cpp calls NEOX.
    public enum RopeLayout: Sendable { case interleaved, halfSplit }

    public var architecture: String
    public var hidden: Int
    public var layers: Int
    /// The largest of the per-layer widths below (what the shared activation buffers are planned for).
    public var feedForward: Int
    public var heads: Int
    public var kvHeads: Int
    /// Per layer (structurally pruned models, e.g. OpenELM, store GGUF arrays with one value per layer; otherwise
    /// every layer has the same value).
    public var layerHeads: [Int]
    public var layerKVHeads: [Int]
    public var layerFeedForward: [Int]
    public var headDim: Int
    public var ropeDim: Int
    public var ropeBase: Float
    public var rmsEps: Float
    public var contextLength: Int
    public var ropeLayout: RopeLayout
    /// `<arch>.rope.scaling.*` (nil: none).
    public var ropeScaling: RopeScaling?
    /// Multimodal RoPE (Qwen2-VL's M-RoPE): how many rotary pairs, from the first, follow each position stream
    /// (temporal, height, width); nil: one position per row. Pairs past the sections' sum take them again in turn.
    public var ropeSections: [Int]?

    /// Context-extension RoPE scaling as llama.cpp reads and applies it.
    public struct RopeScaling: Sendable, Equatable {
        public enum Kind: String, Sendable { case linear, yarn }
        public var kind: Kind
        /// Positions are stretched by this (llama.cpp's freq_scale = 1 / factor).
        public var factor: Float
        /// yarn: the context the model was trained on, and the rotation counts bounding the ramp between
        /// extrapolated (fast) and interpolated (slow) dims.
        public var originalContext: Int
        public var betaFast: Float
        public var betaSlow: Float
        /// yarn: how much of the ramp is applied (llama.cpp: 1 for yarn unless the file says otherwise).
        public var extFactor: Float
        /// yarn: a further factor on cos/sin (llama.cpp's yarn_attn_factor, default 1).
        public var attnFactor: Float

        /// The amplitude cos and sin are multiplied by: yarn's attn_factor · (1 + 0.1 ln factor), else 1.
        public var magnitude: Float {
            guard kind == .yarn, extFactor != 0 else { return 1 }
            return attnFactor * (1 + 0.1 * Foundation.log(factor))
        }

        /// The inverse frequency of rotary pair i (0 ..< ropeDim/2) given its unscaled one.
        /// linear: θ / factor. yarn (llama.cpp's rope_yarn, transformers' _compute_yarn_parameters): a blend of
        /// θ / factor (interpolated) and θ (extrapolated) with mix = ext_factor · ramp(i), ramp 1 below the
        /// correction range [low, high] of dims and 0 above it.
        func inverseFrequency(_ theta: Float, pair i: Int, ropeDim: Int, base: Float) -> Float {
            let interpolated = theta / factor
            guard kind == .yarn, extFactor != 0 else { return interpolated }
            // Dims whose wavelength makes `rotations` turns over the original context.
            func correctionDim(_ rotations: Float) -> Float {
                Float(ropeDim) * Foundation.log(Float(originalContext) / (rotations * 2 * .pi)) / (2 * Foundation.log(base))
            }
            let low = max(0, Foundation.floor(correctionDim(betaFast)))
            let high = min(Float(ropeDim - 1), Foundation.ceil(correctionDim(betaSlow)))
            let y = (Float(i) - low) / max(0.001, high - low)
            let mix = (1 - min(1, max(0, y))) * extFactor
            return interpolated * (1 - mix) + theta * mix
        }
    }

    /// Widths of the widest layer.
    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    public func heads(layer l: Int) -> Int { layerHeads[l] }
    public func kvHeads(layer l: Int) -> Int { layerKVHeads[l] }
    public func feedForward(layer l: Int) -> Int { layerFeedForward[l] }
    public func qDim(layer l: Int) -> Int { layerHeads[l] * headDim }
    public func kvDim(layer l: Int) -> Int { layerKVHeads[l] * headDim }

    /// A decoder whose layers all have the same widths (converter, presets). `headDim` defaults to hidden / heads,
    /// the rotary width to the head size.
    public init(architecture: String, hidden: Int, layers: Int, heads: Int, kvHeads: Int, feedForward: Int,
                headDim: Int? = nil, contextLength: Int, ropeBase: Float, rmsEps: Float) {
        self.architecture = architecture
        ropeLayout = architecture == "qwen2" || architecture == "qwen2vl" ? .halfSplit : .interleaved
        (self.hidden, self.layers, self.heads, self.kvHeads, self.feedForward) = (hidden, layers, heads, kvHeads, feedForward)
        (layerHeads, layerKVHeads, layerFeedForward) = ([Int](repeating: heads, count: layers), [Int](repeating: kvHeads, count: layers),
                                                        [Int](repeating: feedForward, count: layers))
        self.headDim = headDim ?? hidden / heads
        ropeDim = self.headDim
        (self.contextLength, self.ropeBase, self.rmsEps, ropeScaling) = (contextLength, ropeBase, rmsEps, nil)
        ropeSections = nil
    }

    /// The `<arch>.*` keys llama.cpp reads, the inverse of `init(metadata:)` for a config of uniform layers, with
    /// `vocab` token rows (the rope scaling keys are the converter's to add: it knows what the checkpoint said).
    public func metadata(vocab: Int) -> [(String, GGUFValue)] {
        let key = GGUFKey.Decoder(architecture)
        var meta: [(String, GGUFValue)] = [
            (key.contextLength, .uint32(UInt32(contextLength))),
            (key.embeddingLength, .uint32(UInt32(hidden))),
            (key.blockCount, .uint32(UInt32(layers))),
            (key.feedForwardLength, .uint32(UInt32(feedForward))),
            (key.ropeDimensionCount, .uint32(UInt32(ropeDim))),
            (key.ropeFreqBase, .float32(ropeBase)),
            (key.headCount, .uint32(UInt32(heads))),
            (key.headCountKV, .uint32(UInt32(kvHeads))),
            (key.rmsEpsilon, .float32(rmsEps)),
            (key.vocabSize, .uint32(UInt32(vocab))),
        ]
        if headDim * heads != hidden {
            meta.append((key.keyLength, .uint32(UInt32(headDim))))
            meta.append((key.valueLength, .uint32(UInt32(headDim))))
        }
        if let ropeSections {
            // llama.cpp's array has four entries (the fourth stream is unused by Qwen2-VL).
            let four = (ropeSections + [0, 0, 0, 0]).prefix(4)
            meta.append((key.ropeDimensionSections, .int32s(four.map { Int32($0) })))
        }
        return meta
    }

    public init(metadata m: GGUFMetadata) throws {
        let a = try m.string(GGUFKey.General.architecture)
        switch a {
        // "deci": llama.cpp's Llama with per-layer head / KV-head / FFN counts (DeciLM, and pruned Llama models).
        case "llama", "mistral", "deci": ropeLayout = .interleaved
        case "qwen2", "qwen2vl": ropeLayout = .halfSplit
        default: throw ModelError("\(m.file): architecture '\(a)' is not a supported decoder (llama, mistral, deci, qwen2, qwen2vl)")
        }
        architecture = a
        let key = GGUFKey.Decoder(a)
        hidden = try m.int(key.embeddingLength, in: Limits.width)
        layers = try m.int(key.blockCount, in: Limits.layers)
        let n = layers
        layerFeedForward = try Self.perLayer(m, key.feedForwardLength, layers: n, in: Limits.width)
        layerHeads = try Self.perLayer(m, key.headCount, layers: n, in: Limits.heads)
        layerKVHeads = m.contains(key.headCountKV)
            ? try Self.perLayer(m, key.headCountKV, layers: n, in: Limits.heads) : layerHeads
        for l in 0..<n {
            let h = layerHeads[l], kv = layerKVHeads[l]
            guard h > 0, kv > 0, h % kv == 0, layerFeedForward[l] > 0 else {
                throw ModelError("\(m.file): layer \(l): \(h) heads do not split into \(kv) key/value heads (feed-forward \(layerFeedForward[l]))")
            }
        }
        feedForward = layerFeedForward.max()!
        heads = layerHeads.max()!
        kvHeads = layerKVHeads.max()!
        headDim = try m.int(key.keyLength, in: Limits.width, default: max(1, hidden / heads))
        ropeDim = try m.int(key.ropeDimensionCount, in: Limits.width, default: headDim)
        ropeBase = try m.float(key.ropeFreqBase, in: Limits.ropeBase, default: 10000)
        rmsEps = try m.float(key.rmsEpsilon, in: Limits.epsilon, default: 1e-5)
        contextLength = try m.int(key.contextLength, in: Limits.context, default: 2048)
        ropeScaling = try Self.ropeScaling(m, a)
        guard ropeDim % 2 == 0, ropeDim <= headDim else {
            throw ModelError("\(m.file): \(a).rope.dimension_count \(ropeDim) must be even and at most the head size \(headDim)")
        }
        if a == "qwen2vl" {
            // Streams past the third carry video/extra positions Qwen2-VL does not use; they must be empty.
            let sections = try m.ints(key.ropeDimensionSections, in: 0...Limits.width.upperBound)
            guard (3...4).contains(sections.count), sections.dropFirst(3).allSatisfy({ $0 == 0 }),
                  sections.reduce(0, +) > 0 else {
                throw ModelError("\(m.file): \(key.ropeDimensionSections) \(sections) must be 3 non-empty sections (temporal, height, width) of rotary pairs")
            }
            ropeSections = Array(sections.prefix(3))
        }
    }

    /// `<arch>.rope.scaling.*` with llama.cpp's defaults; nil for "none" or no type.
    static func ropeScaling(_ m: GGUFMetadata, _ a: String) throws -> RopeScaling? {
        let key = GGUFKey.Decoder(a)
        let type = try m.string(key.ropeScaling("type"), default: "none")
        if type == "none" { return nil }
        guard let kind = RopeScaling.Kind(rawValue: type) else {
            throw ModelError("\(m.file): rope scaling '\(type)' is not supported (linear, yarn)")
        }
        let factor = try m.float(key.ropeScaling("factor"), in: Limits.ropeFactor, default: 1)
        let s = RopeScaling(kind: kind, factor: factor,
                            originalContext: try m.int(key.ropeScaling("original_context_length"), in: Limits.context,
                                                         default: try m.int(key.contextLength, in: Limits.context, default: 2048)),
                            betaFast: try m.float(key.ropeScaling("yarn_beta_fast"), default: 32),
                            betaSlow: try m.float(key.ropeScaling("yarn_beta_slow"), default: 1),
                            extFactor: try m.float(key.ropeScaling("yarn_ext_factor"), default: kind == .yarn ? 1 : 0),
                            attnFactor: try m.float(key.ropeScaling("yarn_attn_factor"), default: 1))
        guard s.originalContext > 0, s.betaFast > 0, s.betaSlow > 0 else {
            throw ModelError("\(m.file): yarn needs a positive original context and betas (\(s.originalContext), \(s.betaFast), \(s.betaSlow))")
        }
        return s
    }

    /// A per-layer integer: one value for every layer, or a GGUF array of exactly `layers` values.
    static func perLayer(_ m: GGUFMetadata, _ key: String, layers: Int, in range: ClosedRange<Int>) throws -> [Int] {
        if case .array = try m.value(key) {
            let values = try m.ints(key, in: range)
            guard values.count == layers else {
                throw ModelError("\(m.file): \(key) has \(values.count) values, expected one per layer (\(layers))")
            }
            return values
        }
        return Array(repeating: try m.int(key, in: range), count: layers)
    }
}

/// How the KV cache stores keys and values (llama.cpp's -ctk/-ctv types): fp32, fp16 (half the memory) or Q8_0
/// (34 bytes per 32 values, 27 % of fp32; rows must be whole blocks). A decode step's attention reads the rows as
/// stored; a prefill widens the rows it reads into fp32 scratch.
public enum KVCacheType: String, Sendable, CaseIterable {
    case f32, f16, q8_0

    public var quantType: QuantType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .q8_0: .q8_0
        }
    }
}

/// A Llama-style decoder (Llama, Mistral, Qwen2) with an F32, F16 or Q8_0 KV cache:
///   per layer: h = x + o(attn(rope(q(n)), rope(k(n)), v(n))),  n = rmsNorm(x)
///              x = h + down(silu(gate(m)) · up(m)),             m = rmsNorm(h)
///   logits = output(rmsNorm(x))
/// All activations, the KV cache (`maxContext` positions) and GEMM workspaces live in one arena planned at
/// creation for batches of at most `maxBatch` rows; nothing is allocated per token.
public final class LlamaModel: LanguageModel {
    public let config: LlamaConfig
    public let vocab: Int
    public let maxContext: Int
    public let maxBatch: Int
    public let kvCache: KVCacheType
    /// Positions already in the KV cache; the next row processed sits here.
    public private(set) var position = 0
    /// The rotary position the next text row gets: `position` unless image rows with their own positions (M-RoPE)
    /// came before, then one past the largest position so far (transformers' get_rope_index).
    public private(set) var ropePosition = 0
    /// `ropePosition` after each cache slot, so a truncation restores it.
    private var ropePositionAfter: [Int32] = []
    /// When set, every forward pass adds its o_proj and down_proj inputs here (calibration for pruning).
    public var statistics: ActivationStatistics?
    /// When set, those inputs' listed channels are held at fixed values (a pruning's effect, simulated).
    public var overrides: ChannelOverrides?

    struct Layer {
        let attnNorm, ffnNorm: UnsafePointer<Float>
        let q, k, v, o, gate, up, down: Linear
    }

    private let weights: GGUFWeights
    private let tokenEmbedding: GGUFTensorInfo
    private let tokenEmbeddingBytes: UnsafeRawBufferPointer
    private let layers: [Layer]
    private let outputNorm: UnsafePointer<Float>
    private let output: Linear
    /// Per layer: its head and key/value head counts.
    private let attention: [Attention]
    /// θ_i = base^(−2i/d) (÷ rope_freqs[i] when the file has them), i < ropeDim/2, then rope scaling (linear, yarn).
    private let inverseFrequencies: [Float]
    /// yarn's factor on cos and sin (1 otherwise).
    private let ropeMagnitude: Float

    private let arena: Arena
    private let x, xn, q, attn, gate, up, logits, scores: UnsafeMutablePointer<Float>
    /// Per layer [maxContext, that layer's kvDim] rows of `kvCache`'s type.
    private let keyCache, valueCache: [UnsafeMutableRawPointer]
    /// Bytes of one cache row per layer.
    private let kvRowBytes: [Int]
    /// F16/Q8_0 cache only: one layer's keys and values widened to fp32 for attention [maxContext, kvDim].
    private let keyScratch, valueScratch: UnsafeMutablePointer<Float>?
    private let gemmWorkspace, attnWorkspace: UnsafeMutableRawPointer

    /// - Parameters:
    ///   - widenToF32: quantized matrices are widened to F32 (the exact reference, 4 bytes a weight) instead of
    ///     packed (or, for types without GEMM kernels, repacked to Q8_0); nil: `VZQ_WIDEN_F32=1`.
    ///   - kvCache: the KV cache's element type (F16 and Q8_0 shrink it and add fp32 scratch for one layer).
    public init(file: GGUFFile, maxContext: Int, maxBatch: Int = 64, widenToF32: Bool? = nil,
                kvCache: KVCacheType = .f32) throws {
        let c = try LlamaConfig(metadata: file.metadata)
        config = c
        let w = GGUFWeights(file, widenToF32: widenToF32 ?? GGUFWeights.widenFromEnvironment)
        weights = w
        try w.requireBlocks(c.layers, key: "\(c.architecture).block_count") { "blk.\($0).attn_norm.weight" }
        tokenEmbedding = try w.info("token_embd.weight")
        guard tokenEmbedding.dims.count == 2, tokenEmbedding.dims[0] == c.hidden else {
            throw ModelError("\(file.path): token_embd.weight is \(tokenEmbedding.dims), expected [\(c.hidden), vocab]")
        }
        tokenEmbeddingBytes = file.bytes(of: tokenEmbedding)
        vocab = tokenEmbedding.dims[1]
        self.maxContext = maxContext
        self.maxBatch = max(1, min(maxBatch, maxContext))
        self.kvCache = kvCache
        let d = c.hidden
        layers = try (0..<c.layers).map { i in
            let p = "blk.\(i)", qDim = c.qDim(layer: i), kvDim = c.kvDim(layer: i), ff = c.feedForward(layer: i)
            return Layer(attnNorm: try w.vector("\(p).attn_norm.weight", count: d),
                         ffnNorm: try w.vector("\(p).ffn_norm.weight", count: d),
                         q: try Linear(w, "\(p).attn_q", rows: qDim, cols: d),
                         k: try Linear(w, "\(p).attn_k", rows: kvDim, cols: d),
                         v: try Linear(w, "\(p).attn_v", rows: kvDim, cols: d),
                         o: try Linear(w, "\(p).attn_output", rows: d, cols: qDim),
                         gate: try Linear(w, "\(p).ffn_gate", rows: ff, cols: d),
                         up: try Linear(w, "\(p).ffn_up", rows: ff, cols: d),
                         down: try Linear(w, "\(p).ffn_down", rows: d, cols: ff))
        }
        outputNorm = try w.vector("output_norm.weight", count: d)
        output = try Linear(w, w.has("output.weight") ? "output" : "token_embd", rows: vocab, cols: d, bias: false)
        attention = (0..<c.layers).map { Attention(heads: c.heads(layer: $0), kvHeads: c.kvHeads(layer: $0), headDim: c.headDim) }

        let half = c.ropeDim / 2
        let factors = try w.optionalVector("rope_freqs.weight", count: half)
        inverseFrequencies = (0..<half).map { i in
            let theta = Float(1 / pow(Double(c.ropeBase), Double(2 * i) / Double(c.ropeDim))) / (factors?[i] ?? 1)
            return c.ropeScaling?.inverseFrequency(theta, pair: i, ropeDim: c.ropeDim, base: c.ropeBase) ?? theta
        }
        ropeMagnitude = c.ropeScaling?.magnitude ?? 1

        let b = self.maxBatch
        var plan = ArenaPlan()
        let oX = plan.floats(b * d), oXn = plan.floats(b * d)
        let oQ = plan.floats(b * c.qDim), oAttn = plan.floats(b * c.qDim)
        let oGate = plan.floats(b * c.feedForward), oUp = plan.floats(b * c.feedForward)
        let oLogits = plan.floats(b * vocab)
        // Prefill scores one head at a time ([b, S]); a decode step scores all heads at once ([heads, S]).
        let oScores = plan.floats(Attention.scoreFloats(queries: max(b, c.qDim / c.headDim), keys: maxContext))
        guard kvCache != .q8_0 || c.headDim % 32 == 0 else {
            throw ModelError("a Q8_0 KV cache needs heads of a multiple of 32 values; this model's have \(c.headDim)")
        }
        kvRowBytes = try (0..<c.layers).map { l in
            guard let bytes = kvCache.quantType.rowBytes(c.kvDim(layer: l)) else {
                throw ModelError("a \(kvCache) KV cache cannot hold rows of \(c.kvDim(layer: l)) values")
            }
            return bytes
        }
        let oK = kvRowBytes.map { plan.raw(maxContext * $0) }
        let oV = kvRowBytes.map { plan.raw(maxContext * $0) }
        let oKs = kvCache != .f32 ? plan.floats(maxContext * c.kvDim) : nil
        let oVs = kvCache != .f32 ? plan.floats(maxContext * c.kvDim) : nil
        var ws = output.workspaceBytes(rows: b)
        for l in layers { for m in [l.q, l.k, l.v, l.o, l.gate, l.up, l.down] { ws = max(ws, m.workspaceBytes(rows: b)) } }
        let oWs = plan.raw(ws)
        let oAttnWs = plan.raw(attention.map { $0.workspaceBytes(keys: maxContext) }.max() ?? 0)
        let a = try Arena(plan, for: "a KV cache of \(maxContext) positions (\(kvCache)) with scratch for batches of \(b)")
        arena = a
        (x, xn, q, attn) = (a.floats(oX), a.floats(oXn), a.floats(oQ), a.floats(oAttn))
        (gate, up, logits, scores) = (a.floats(oGate), a.floats(oUp), a.floats(oLogits), a.floats(oScores))
        ropePositionAfter.reserveCapacity(maxContext)
        keyCache = oK.map { a.raw($0) }
        valueCache = oV.map { a.raw($0) }
        keyScratch = oKs.map { a.floats($0) }
        valueScratch = oVs.map { a.floats($0) }
        (gemmWorkspace, attnWorkspace) = (a.raw(oWs), a.raw(oAttnWs))
    }

    public convenience init(path: String, maxContext: Int, maxBatch: Int = 64, widenToF32: Bool? = nil,
                            kvCache: KVCacheType = .f32) throws {
        try self.init(file: GGUFFile(path: path), maxContext: maxContext, maxBatch: maxBatch, widenToF32: widenToF32,
                      kvCache: kvCache)
    }

    public var architecture: String { config.architecture }
    public var usesMultimodalPositions: Bool { config.ropeSections != nil }
    public var hidden: Int { config.hidden }

    /// Bytes of the one arena (activations, KV cache, workspaces).
    public var arenaBytes: Int { arena.bytes }

    /// Bytes the KV cache takes in the arena (with the F16/Q8_0 cache's fp32 scratch).
    public var kvCacheBytes: Int {
        let cached = kvRowBytes.reduce(0) { $0 + 2 * maxContext * $1 }
        let scratch = kvCache == .f32 ? 0 : 2 * maxContext * config.kvDim * MemoryLayout<Float>.size
        return cached + scratch
    }

    /// Bytes of packed weight matrices (the embedding table is read in place from the mapping and not counted
    /// unless it doubles as the output matrix).
    public var weightBytes: Int {
        layers.reduce(output.weight.packedBytes) { sum, l in
            [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].reduce(sum) { $0 + $1.weight.packedBytes }
        }
    }

    /// Packed matrix element types in use, with the count of matrices of each.
    public var weightTypes: [QuantType: Int] {
        var out: [QuantType: Int] = [output.weight.type: 1]
        for l in layers { for m in [l.q, l.k, l.v, l.o, l.gate, l.up, l.down] { out[m.weight.type, default: 0] += 1 } }
        return out
    }

    /// Forgets the cache: the next call starts at position 0.
    public func reset() {
        position = 0
        ropePosition = 0
        ropePositionAfter.removeAll(keepingCapacity: true)
    }

    /// Forgets every position from `p` on (their keys and values are overwritten by the next rows).
    public func truncate(to p: Int) {
        precondition(p >= 0 && p <= position, "truncate: \(p) is outside 0…\(position)")
        position = p
        ropePosition = p == 0 ? 0 : Int(ropePositionAfter[p - 1])
        ropePositionAfter.removeSubrange(p...)
    }

    // MARK: embeddings

    /// Writes the embedding rows of `tokens` (any stored type, dequantized) to `out` [count, hidden].
    public func embed(_ tokens: UnsafeBufferPointer<Int32>, into out: UnsafeMutablePointer<Float>) throws {
        let d = config.hidden
        let rowBytes = tokenEmbedding.type.rowBytes(d)!
        for (i, t) in tokens.enumerated() {
            guard t >= 0, Int(t) < vocab else { throw ModelError("token id \(t) is outside the vocabulary (\(vocab))") }
            try KernelError.check(cq_dequantize_row(tokenEmbedding.type.rawValue, tokenEmbeddingBytes.baseAddress! + Int(t) * rowBytes,
                                                    out + i * d, Int64(d)))
        }
    }

    public func embeddings(_ tokens: [Int32]) throws -> [Float] {
        var out = [Float](repeating: 0, count: tokens.count * config.hidden)
        try tokens.withUnsafeBufferPointer { t in try out.withUnsafeMutableBufferPointer { try embed(t, into: $0.baseAddress!) } }
        return out
    }

    // MARK: forward

    /// Prefill: runs `embeddings` [n, hidden] (token embeddings with any image rows spliced in) from the current
    /// position, in chunks of `maxBatch`; returns the logits of every row [n, vocab], or with `lastOnly` those of
    /// the last row [vocab] (generation needs no more, and the output matrix then runs on one row, not n).
    /// `positions`: each row's (temporal, height, width) rotary position [n · 3] (M-RoPE image rows); nil: text rows,
    /// at `ropePosition` on.
    public func prefill(embeddings: [Float], positions: [Int32]? = nil, lastOnly: Bool = false) throws -> [Float] {
        let d = config.hidden, n = embeddings.count / d
        guard n * d == embeddings.count else { throw ModelError("\(embeddings.count) values are not rows of \(d)") }
        if let positions, positions.count != 3 * n {
            throw ModelError("\(positions.count) rotary positions for \(n) rows (3 per row expected)")
        }
        guard position + n <= maxContext else {
            throw ModelError("\(position + n) positions exceed the context of \(maxContext) this model was created with")
        }
        var out = [Float](repeating: 0, count: (lastOnly ? min(n, 1) : n) * vocab)
        try embeddings.withUnsafeBufferPointer { e in
            try out.withUnsafeMutableBufferPointer { o in
                var start = 0
                while start < n {
                    let m = min(maxBatch, n - start)
                    x.update(from: e.baseAddress! + start * d, count: m * d)
                    let chunkPositions = positions.map { Array($0[(3 * start)..<(3 * (start + m))]) }
                    if lastOnly {
                        // Only the final chunk's last row needs logits.
                        try forward(rows: m, positions: chunkPositions, logitRows: start + m == n ? 1 : 0)
                        if start + m == n { o.baseAddress!.update(from: logits, count: vocab) }
                    } else {
                        try forward(rows: m, positions: chunkPositions)
                        (o.baseAddress! + start * vocab).update(from: logits, count: m * vocab)
                    }
                    start += m
                }
            }
        }
        return out
    }

    /// Prefill of token ids.
    public func prefill(tokens: [Int32]) throws -> [Float] { try prefill(embeddings: embeddings(tokens)) }

    /// One decode step: `token` at the current position; returns its logits [vocab] (a view of the arena, valid
    /// until the next call).
    public func decode(token: Int32) throws -> UnsafeBufferPointer<Float> {
        var t = token
        try withUnsafePointer(to: &t) { try embed(UnsafeBufferPointer(start: $0, count: 1), into: x) }
        try forward(rows: 1)
        return UnsafeBufferPointer(start: logits, count: vocab)
    }

    /// The decoder on the `n` rows in `x`, in cache slots position ..< position + n; logits into `logits`.
    /// `positions`: the rows' rotary positions [n · 3] (M-RoPE streams); nil: ropePosition, ropePosition + 1, …
    /// `logitRows`: how many of the last rows get logits (nil: all n), written from the start of `logits`.
    private func forward(rows n: Int, positions: [Int32]? = nil, logitRows: Int? = nil) throws {
        let c = config, d = c.hidden, p0 = position
        guard n <= maxBatch, p0 + n <= maxContext else {
            throw ModelError("\(p0 + n) positions exceed the context of \(maxContext) this model was created with")
        }
        let rotary = RotaryPositions(start: ropePosition, explicit: positions)
        let narrow = kvCache != .f32, kvType = kvCache.quantType.rawValue
        // One row (decode): attention reads the cache as it is stored (cq_attention_cached); nothing is widened.
        let decoding = n == 1
        for (l, layer) in layers.enumerated() {
            // This layer's widths (pruned models differ per layer).
            let qDim = c.qDim(layer: l), kvDim = c.kvDim(layer: l), ff = c.feedForward(layer: l)
            // fp32 keys/values attention reads: the cache itself, or (F16) the scratch the cache is widened into.
            let keys = keyScratch ?? keyCache[l].assumingMemoryBound(to: Float.self)
            let values = valueScratch ?? valueCache[l].assumingMemoryBound(to: Float.self)
            // A decode step's new row in a narrow cache is needed in fp32 only until it is quantized: the scratch's
            // first row holds it, so decoding never commits scratch pages for later positions.
            let rowAt = decoding && narrow ? 0 : p0 * kvDim
            let kRows = keys + rowAt, vRows = values + rowAt
            // Attention: the new keys and values go straight into the cache (F16: narrowed, then all rows widened).
            Ops.rmsNorm(x, rows: n, dim: d, weight: layer.attnNorm, eps: c.rmsEps, into: xn)
            try layer.q(xn, rows: n, into: q, workspace: gemmWorkspace)
            try layer.k(xn, rows: n, into: kRows, workspace: gemmWorkspace)
            try layer.v(xn, rows: n, into: vRows, workspace: gemmWorkspace)
            rope(q, rows: n, heads: c.heads(layer: l), at: rotary)
            rope(kRows, rows: n, heads: c.kvHeads(layer: l), at: rotary)
            if narrow {
                // Rows are whole blocks (checked at creation), so n rows quantize as one run of n · kvDim values.
                let newCount = Int64(n * kvDim), allCount = Int64((p0 + n) * kvDim), at = p0 * kvRowBytes[l]
                try KernelError.check(cq_quantize_row(kvType, kRows, keyCache[l] + at, newCount))
                try KernelError.check(cq_quantize_row(kvType, vRows, valueCache[l] + at, newCount))
                if !decoding {
                    try KernelError.check(cq_dequantize_row(kvType, keyCache[l], keys, allCount))
                    try KernelError.check(cq_dequantize_row(kvType, valueCache[l], values, allCount))
                }
            }
            if decoding {
                try attention[l].cached(q: q, ldq: qDim, k: keyCache[l], v: valueCache[l], type: kvCache.quantType, ld: kvDim,
                                        queries: n, keys: p0 + n, causalOffset: p0, scores: scores, into: attn, ldo: qDim)
            } else {
                try attention[l](q: q, ldq: qDim, k: keys, ldk: kvDim, v: values, ldv: kvDim,
                                 queries: n, keys: p0 + n, causalOffset: p0, scores: scores, workspace: attnWorkspace,
                                 into: attn, ldo: qDim)
            }
            statistics?.addAttention(layer: l, attn, rows: n)
            overrides?.applyAttention(layer: l, attn, rows: n, width: qDim)
            try layer.o(attn, rows: n, into: xn, workspace: gemmWorkspace)
            Ops.add(x, xn, count: n * d)
            // SwiGLU MLP.
            Ops.rmsNorm(x, rows: n, dim: d, weight: layer.ffnNorm, eps: c.rmsEps, into: xn)
            try layer.gate(xn, rows: n, into: gate, workspace: gemmWorkspace)
            try layer.up(xn, rows: n, into: up, workspace: gemmWorkspace)
            Ops.silu(gate, count: n * ff)
            Ops.mul(gate, up, count: n * ff)
            statistics?.addFeedForward(layer: l, gate, rows: n)
            overrides?.applyFeedForward(layer: l, gate, rows: n, width: ff)
            try layer.down(gate, rows: n, into: xn, workspace: gemmWorkspace)
            Ops.add(x, xn, count: n * d)
            statistics?.addResidual(layer: l, x, count: n * d)
        }
        let k = min(logitRows ?? n, n), tail = x + (n - k) * d
        if k > 0 {
            Ops.rmsNorm(tail, rows: k, dim: d, weight: outputNorm, eps: c.rmsEps, into: xn)
            try output(xn, rows: k, into: logits, workspace: gemmWorkspace)
        }
        position += n
        for r in 0..<n {
            ropePosition = max(ropePosition, rotary.largest(row: r) + 1)
            ropePositionAfter.append(Int32(ropePosition))
        }
    }

    /// Rows' rotary positions: consecutive from `start`, or three streams per row given by the caller.
    struct RotaryPositions {
        let start: Int
        let explicit: [Int32]?

        func position(row r: Int, stream s: Int) -> Int { explicit.map { Int($0[3 * r + s]) } ?? start + r }
        func largest(row r: Int) -> Int { explicit.map { Int(max($0[3 * r], $0[3 * r + 1], $0[3 * r + 2])) } ?? start + r }
    }

    /// Which position stream rotary pair i follows: with M-RoPE sections (t, h, w) the pairs are split among them
    /// in order, repeating past the sections' sum as ggml's rope_multi does (Qwen2-VL's sections fill the head
    /// exactly); else stream 0.
    private lazy var pairStream: [Int] = {
        let half = config.ropeDim / 2
        guard let sections = config.ropeSections else { return [Int](repeating: 0, count: half) }
        var cycle: [Int] = []
        for (s, count) in sections.enumerated() { cycle += [Int](repeating: s, count: count) }
        return (0..<half).map { cycle[$0 % cycle.count] }
    }()

    /// Rotates the first ropeDim dims of each head of `rows` rows ([rows, heads·headDim]) at their positions.
    private func rope(_ v: UnsafeMutablePointer<Float>, rows: Int, heads: Int, at positions: RotaryPositions) {
        let hd = config.headDim, half = config.ropeDim / 2
        let streams = pairStream
        for r in 0..<rows {
            for i in 0..<half {
                let pos = Float(positions.position(row: r, stream: streams[i]))
                let angle = pos * inverseFrequencies[i]
                let cs = Foundation.cos(angle) * ropeMagnitude, sn = Foundation.sin(angle) * ropeMagnitude
                for h in 0..<heads {
                    let base = v + r * heads * hd + h * hd
                    let (a, b) = config.ropeLayout == .interleaved ? (2 * i, 2 * i + 1) : (i, i + half)
                    let x0 = base[a], x1 = base[b]
                    base[a] = x0 * cs - x1 * sn
                    base[b] = x0 * sn + x1 * cs
                }
            }
        }
    }
}

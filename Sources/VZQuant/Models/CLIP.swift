import CQuant

/// The vision tower's shape, from an mmproj GGUF's `clip.vision.*` metadata (what llama.cpp reads) plus
/// vzquant's `vzquant.vision.*` keys when present.
public struct VisionConfig: Sendable, Equatable {
    public enum Family: String, Sendable { case clip }
    public enum Activation: String, Sendable { case gelu, quickGelu }

    public var family: Family = .clip
    public var imageSize: Int
    public var patchSize: Int
    public var channels = 3
    public var hidden: Int
    public var feedForward: Int
    public var heads: Int
    /// Blocks stored in the file, all of which run (the layers after the feature layer were dropped at conversion).
    public var blockCount: Int
    public var eps: Float
    public var activation: Activation
    public var hasClassToken = true
    /// "default" (patches only, CLS dropped) or "full".
    public var featureSelect: String
    public var featureLayer: Int?
    public var sourceBlockCount: Int?

    public var headDim: Int { hidden / heads }
    public var patchesPerSide: Int { imageSize / patchSize }
    public var patches: Int { patchesPerSide * patchesPerSide }
    public var tokens: Int { patches + (hasClassToken ? 1 : 0) }
    /// Values in one im2col'd patch: channel-major, then rows, then columns (the conv weight's order).
    public var patchValues: Int { channels * patchSize * patchSize }

    public init(metadata m: GGUFMetadata) throws {
        imageSize = try m.int("clip.vision.image_size")
        patchSize = try m.int("clip.vision.patch_size")
        hidden = try m.int("clip.vision.embedding_length")
        feedForward = try m.int("clip.vision.feed_forward_length")
        heads = try m.int("clip.vision.attention.head_count")
        blockCount = try m.int("clip.vision.block_count")
        eps = try m.float("clip.vision.attention.layer_norm_epsilon", default: 1e-5)
        activation = try m.bool("clip.use_gelu", default: false) ? .gelu : .quickGelu
        featureSelect = try m.string("vzquant.vision.feature_select", default: "default")
        featureLayer = m.contains("vzquant.vision.feature_layer") ? try m.int("vzquant.vision.feature_layer") : nil
        sourceBlockCount = m.contains("vzquant.vision.source_block_count") ? try m.int("vzquant.vision.source_block_count") : nil
        guard imageSize > 0, patchSize > 0, imageSize % patchSize == 0, heads > 0, hidden % heads == 0, blockCount > 0 else {
            throw ModelError("\(m.file): inconsistent clip.vision metadata (image \(imageSize), patch \(patchSize), hidden \(hidden), heads \(heads), blocks \(blockCount))")
        }
    }
}

/// What the encoder returns: the last block's output and, when asked, what VisionZip needs from that block.
public struct VisionOutput: Sendable {
    /// [tokens, hidden], CLS first.
    public var features: [Float]
    /// The last block's softmax attention [heads, T, T] (only when requested).
    public var attention: [Float]?
    /// The last block's keys (after bias) averaged over heads [T, headDim] (only when requested).
    public var keysMean: [Float]?
}

/// A CLIP ViT vision tower (LLaVA's):
///   x = [class; patches · W_patchᵀ] + pos;  x = preLN(x)
///   per block: x += out(attn(LN1(x)));  x += down(act(up(LN2(x))))
/// The first-block-to-last order runs the `blockCount` blocks the file stores.
public final class VisionEncoder {
    public let config: VisionConfig

    struct Block {
        let ln1w, ln1b, ln2w, ln2b: UnsafePointer<Float>
        let q, k, v, out, up, down: Linear
    }

    private let weights: GGUFWeights
    private let patchEmbedding: Linear
    private let classEmbedding: UnsafePointer<Float>?
    private let positionEmbedding: UnsafePointer<Float>
    private let preNormW, preNormB: UnsafePointer<Float>?
    private let blocks: [Block]
    private let attention: Attention

    // Scratch: one arena, sized for one image.
    private let arena: Arena
    private let patchesBuf, x, xn, q, k, v, attn, ff, scores: UnsafeMutablePointer<Float>
    private let gemmWorkspace, attnWorkspace: UnsafeMutableRawPointer

    public convenience init(path: String) throws { try self.init(file: GGUFFile(path: path)) }

    public init(file: GGUFFile) throws {
        let c = try VisionConfig(metadata: file.metadata)
        config = c
        let w = GGUFWeights(file)
        weights = w
        let d = c.hidden
        patchEmbedding = try Linear(w, "v.patch_embd", rows: d, cols: c.patchValues)
        classEmbedding = try w.optionalVector("v.class_embd", count: d)
        positionEmbedding = try w.vector("v.position_embd.weight", count: c.tokens * d)
        preNormW = try w.optionalVector("v.pre_ln.weight", count: d)
        preNormB = try w.optionalVector("v.pre_ln.bias", count: d)
        guard classEmbedding != nil else { throw ModelError("\(file.path): no v.class_embd (CLIP has a class token)") }
        blocks = try (0..<c.blockCount).map { i in
            let p = "v.blk.\(i)"
            return Block(ln1w: try w.vector("\(p).ln1.weight", count: d), ln1b: try w.vector("\(p).ln1.bias", count: d),
                         ln2w: try w.vector("\(p).ln2.weight", count: d), ln2b: try w.vector("\(p).ln2.bias", count: d),
                         q: try Linear(w, "\(p).attn_q", rows: d, cols: d), k: try Linear(w, "\(p).attn_k", rows: d, cols: d),
                         v: try Linear(w, "\(p).attn_v", rows: d, cols: d), out: try Linear(w, "\(p).attn_out", rows: d, cols: d),
                         up: try Linear(w, "\(p).ffn_up", rows: c.feedForward, cols: d),
                         down: try Linear(w, "\(p).ffn_down", rows: d, cols: c.feedForward))
        }
        attention = Attention(heads: c.heads, kvHeads: c.heads, headDim: c.headDim)

        let t = c.tokens
        var plan = ArenaPlan()
        let oPatches = plan.floats(c.patches * c.patchValues)
        let oX = plan.floats(t * d), oXn = plan.floats(t * d)
        let oQ = plan.floats(t * d), oK = plan.floats(t * d), oV = plan.floats(t * d), oAttn = plan.floats(t * d)
        let oFF = plan.floats(t * max(c.feedForward, d))
        let oScores = plan.floats(Attention.scoreFloats(queries: t, keys: t))
        var ws = patchEmbedding.workspaceBytes(rows: c.patches)
        for b in blocks { for l in [b.q, b.k, b.v, b.out, b.up, b.down] { ws = max(ws, l.workspaceBytes(rows: t)) } }
        let oWs = plan.raw(ws)
        let oAttnWs = plan.raw(attention.workspaceBytes(keys: t))
        arena = Arena(plan)
        (patchesBuf, x, xn) = (arena.floats(oPatches), arena.floats(oX), arena.floats(oXn))
        (q, k, v, attn) = (arena.floats(oQ), arena.floats(oK), arena.floats(oV), arena.floats(oAttn))
        (ff, scores) = (arena.floats(oFF), arena.floats(oScores))
        (gemmWorkspace, attnWorkspace) = (arena.raw(oWs), arena.raw(oAttnWs))
    }

    /// Runs the tower on one normalised image [channels, imageSize, imageSize] (CHW).
    /// - Parameter keepAttention: also return the last block's attention probabilities and head-averaged keys.
    public func callAsFunction(pixels: [Float], keepAttention: Bool = false) throws -> VisionOutput {
        let c = config, d = c.hidden, t = c.tokens, s = c.imageSize, p = c.patchSize
        guard pixels.count == c.channels * s * s else {
            throw ModelError("image has \(pixels.count) values, expected \(c.channels)×\(s)×\(s)")
        }
        // im2col: patch (py, px) → [c][ky][kx], the conv weight's order.
        pixels.withUnsafeBufferPointer { px in
            var o = 0
            for py in 0..<c.patchesPerSide {
                for pxi in 0..<c.patchesPerSide {
                    for ch in 0..<c.channels {
                        for ky in 0..<p {
                            let row = ch * s * s + (py * p + ky) * s + pxi * p
                            for kx in 0..<p { patchesBuf[o] = px[row + kx]; o += 1 }
                        }
                    }
                }
            }
        }
        // Embeddings: CLS row, then the patch projections; plus positions.
        x.update(from: classEmbedding!, count: d)
        try patchEmbedding(patchesBuf, rows: c.patches, into: x + d, workspace: gemmWorkspace)
        Ops.add(x, positionEmbedding, count: t * d)
        if let preNormW { Ops.layerNorm(x, rows: t, dim: d, weight: preNormW, bias: preNormB, eps: c.eps, into: x) }

        var probs: [Float]? = keepAttention ? [Float](repeating: 0, count: c.heads * t * t) : nil
        var keysMean: [Float]? = nil
        for (i, b) in blocks.enumerated() {
            let last = i == blocks.count - 1
            // Attention.
            Ops.layerNorm(x, rows: t, dim: d, weight: b.ln1w, bias: b.ln1b, eps: c.eps, into: xn)
            try b.q(xn, rows: t, into: q, workspace: gemmWorkspace)
            try b.k(xn, rows: t, into: k, workspace: gemmWorkspace)
            try b.v(xn, rows: t, into: v, workspace: gemmWorkspace)
            if last && keepAttention {
                try probs!.withUnsafeMutableBufferPointer {
                    try attention(q: q, ldq: d, k: k, ldk: d, v: v, ldv: d, queries: t, keys: t, causalOffset: nil,
                                  scores: scores, workspace: attnWorkspace, into: attn, ldo: d, probabilities: $0.baseAddress)
                }
                keysMean = headMean(k, tokens: t)
            } else {
                try attention(q: q, ldq: d, k: k, ldk: d, v: v, ldv: d, queries: t, keys: t, causalOffset: nil,
                              scores: scores, workspace: attnWorkspace, into: attn, ldo: d)
            }
            try b.out(attn, rows: t, into: xn, workspace: gemmWorkspace)
            Ops.add(x, xn, count: t * d)
            // MLP.
            Ops.layerNorm(x, rows: t, dim: d, weight: b.ln2w, bias: b.ln2b, eps: c.eps, into: xn)
            try b.up(xn, rows: t, into: ff, workspace: gemmWorkspace)
            switch c.activation {
            case .gelu: Ops.gelu(ff, count: t * c.feedForward)
            case .quickGelu: Ops.quickGelu(ff, count: t * c.feedForward)
            }
            try b.down(ff, rows: t, into: xn, workspace: gemmWorkspace)
            Ops.add(x, xn, count: t * d)
        }
        return VisionOutput(features: Array(UnsafeBufferPointer(start: x, count: t * d)), attention: probs, keysMean: keysMean)
    }

    /// [T, heads·hd] → mean over heads [T, hd].
    private func headMean(_ k: UnsafePointer<Float>, tokens t: Int) -> [Float] {
        let hd = config.headDim, h = config.heads
        var out = [Float](repeating: 0, count: t * hd)
        for r in 0..<t {
            for j in 0..<hd {
                var s: Float = 0
                for g in 0..<h { s += k[r * config.hidden + g * hd + j] }
                out[r * hd + j] = s / Float(h)
            }
        }
        return out
    }
}

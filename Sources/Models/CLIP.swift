import CQuant
import VZQFormats
import VZQKernels
import VZQSupport

/// The ViT families the vision towers run (and the mmproj writer knows).
public enum VisionFamily: String, Sendable {
    case clip, siglip, dinov2
    /// Qwen2-VL's tower (LayerNorm, quick-GELU MLP, 2-D rotary positions) and Qwen2.5-VL's (RMSNorm, SwiGLU,
    /// windowed attention); both `QwenVisionEncoder`.
    case qwen2vl
    case qwen25vl = "qwen2.5vl"

    /// Towers of 14×14 patches over two frames with 2-D rotary positions and a 2×2 patch merger.
    public var isQwen: Bool { self == .qwen2vl || self == .qwen25vl }

    /// image_mean / image_std each family's processor uses when a file (or preprocessor_config.json) does not say.
    public var defaultNormalization: (mean: [Double], std: [Double]) {
        switch self {
        case .clip, .qwen2vl, .qwen25vl: ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
        case .siglip: ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        case .dinov2: ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        }
    }
}

/// The vision tower's shape, from an mmproj GGUF's `clip.vision.*` metadata (what llama.cpp reads) plus
/// vzquant's `vzquant.vision.*` keys when present.
public struct VisionConfig: Sendable, Equatable {
    public enum Activation: String, Sendable { case gelu, geluTanh, quickGelu, silu }

    /// From `vzquant.vision.family`; files without it (llama.cpp's) are CLIP unless their tensors say otherwise
    /// (see `VisionEncoder.init`).
    public var family: VisionFamily
    public var imageSize: Int
    public var patchSize: Int
    public var channels = 3
    public var hidden: Int
    public var feedForward: Int
    public var heads: Int
    /// Blocks stored in the file, all of which run (the layers after the feature layer were dropped at conversion).
    public var blockCount: Int
    /// Per block, when structurally pruned (`vzquant prune`): its attention heads (of `headDim` values each) and FFN
    /// width; nil: every block has `heads` and `feedForward`.
    public var layerHeads: [Int]?
    public var layerFeedForward: [Int]?
    public var eps: Float
    public var activation: Activation
    /// "default" (patches only, CLS dropped) or "full".
    public var featureSelect: String
    public var featureLayer: Int?
    public var sourceBlockCount: Int?
    /// Hugging Face's hidden_act when the file says (`vzquant.vision.hidden_act`); nil in llama.cpp's files.
    public var hiddenAct: String?
    /// `clip.vision.projection_dim` (CLIP's projection head, written for llama.cpp; the runtime does not use it).
    public var projectionDim: Int?
    /// Qwen2.5-VL: attention runs within windows of this many patches a side (window_size / patch_size) except in
    /// `fullAttentionLayers`; nil: every layer attends to the whole image.
    public var windowPatches: Int?
    public var fullAttentionLayers: [Int] = []
    /// Qwen: patches merged into one language-model row per side (2).
    public var mergeSize = 1

    public func heads(layer l: Int) -> Int { layerHeads?[l] ?? heads }
    public func feedForward(layer l: Int) -> Int { layerFeedForward?[l] ?? feedForward }

    /// CLIP and DINOv2 prepend a class token; SigLIP and Qwen have none.
    public var hasClassToken: Bool { family == .clip || family == .dinov2 }
    public var headDim: Int { hidden / heads }
    /// The grid the position embedding was trained on (imageSize / patchSize per side).
    public var patchesPerSide: Int { imageSize / patchSize }
    public var patches: Int { patchesPerSide * patchesPerSide }
    /// Tokens of an image at `imageSize`.
    public var tokens: Int { patches + (hasClassToken ? 1 : 0) }
    /// Tokens of an image of height × width pixels (each side cut down to whole patches).
    public func tokens(height: Int, width: Int) -> Int {
        (height / patchSize) * (width / patchSize) + (hasClassToken ? 1 : 0)
    }
    /// Values in one im2col'd patch: channel-major, then rows, then columns (the conv weight's order).
    public var patchValues: Int { channels * patchSize * patchSize }

    /// A tower described directly (converter, presets): `blockCount` blocks stored, of `sourceBlockCount` in the
    /// published tower.
    public init(family: VisionFamily, imageSize: Int, patchSize: Int, hidden: Int, feedForward: Int, heads: Int,
                blockCount: Int, eps: Float, hiddenAct: String, projectionDim: Int, featureSelect: String = "default",
                featureLayer: Int? = nil, sourceBlockCount: Int? = nil) {
        (self.family, self.imageSize, self.patchSize, self.hidden, self.feedForward) = (family, imageSize, patchSize, hidden, feedForward)
        (self.heads, self.blockCount, self.eps, self.hiddenAct, self.projectionDim) = (heads, blockCount, eps, hiddenAct, projectionDim)
        (self.featureSelect, self.featureLayer, self.sourceBlockCount) = (featureSelect, featureLayer, sourceBlockCount)
        activation = Self.activation(hiddenAct: hiddenAct) ?? (hiddenAct.hasPrefix("gelu") ? .gelu : .quickGelu)
    }

    /// Hugging Face's activation names.
    static func activation(hiddenAct: String) -> Activation? {
        switch hiddenAct {
        case "gelu": .gelu
        case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": .geluTanh
        case "quick_gelu": .quickGelu
        case "silu": .silu
        default: nil
        }
    }

    /// The `clip.*` keys llama.cpp reads for the tower (the inverse of `init(metadata:)` for them), with the
    /// image normalisation; the `vzquant.*` keys are the writer's to add.
    public func metadata(mean: [Float], std: [Float]) -> [(String, GGUFValue)] {
        var qwen: [(String, GGUFValue)] = []
        if family == .qwen25vl {
            qwen.append((GGUFKey.Vision.useSilu, .bool(true)))
            // llama.cpp's n_wa_pattern when the full-attention layers are every n-th, else the list.
            let n = (fullAttentionLayers.first ?? -1) + 1
            if n > 0, fullAttentionLayers == (0..<blockCount).filter({ ($0 + 1) % n == 0 }) {
                qwen.append((GGUFKey.Vision.windowAttentionPattern, .uint32(UInt32(n))))
            } else {
                qwen.append((GGUFKey.Vision.fullAttentionLayers, .int32s(fullAttentionLayers.map { Int32($0) })))
            }
        }
        return qwen + [
            (GGUFKey.Vision.useGelu, .bool((hiddenAct ?? "").hasPrefix("gelu"))),
            (GGUFKey.Vision.imageSize, .uint32(UInt32(imageSize))),
            (GGUFKey.Vision.patchSize, .uint32(UInt32(patchSize))),
            (GGUFKey.Vision.embeddingLength, .uint32(UInt32(hidden))),
            (GGUFKey.Vision.feedForwardLength, .uint32(UInt32(feedForward))),
            (GGUFKey.Vision.projectionDim, .uint32(UInt32(projectionDim ?? hidden))),
            (GGUFKey.Vision.blockCount, .uint32(UInt32(blockCount))),
            (GGUFKey.Vision.headCount, .uint32(UInt32(heads))),
            (GGUFKey.Vision.layerNormEpsilon, .float32(eps)),
            (GGUFKey.Vision.imageMean, .float32s(mean)),
            (GGUFKey.Vision.imageStd, .float32s(std)),
        ]
    }

    public init(metadata m: GGUFMetadata) throws {
        // llama.cpp's files name no family: Qwen's mergers say it through the projector type.
        let projector = try m.string(GGUFKey.Vision.projectorType, default: "")
        let implied: VisionFamily = projector == "qwen2vl_merger" ? .qwen2vl : projector == "qwen2.5vl_merger" ? .qwen25vl : .clip
        let familyName = try m.string(GGUFKey.VZQ.visionFamily, default: implied.rawValue)
        guard let f = VisionFamily(rawValue: familyName) else {
            throw ModelError("\(m.file): vision family '\(familyName)' is not supported (clip, siglip, dinov2)")
        }
        family = f
        imageSize = try m.int(GGUFKey.Vision.imageSize, in: Limits.imageSide)
        patchSize = try m.int(GGUFKey.Vision.patchSize, in: Limits.patchSide)
        hidden = try m.int(GGUFKey.Vision.embeddingLength, in: Limits.width)
        feedForward = try m.int(GGUFKey.Vision.feedForwardLength, in: Limits.width)
        heads = try m.int(GGUFKey.Vision.headCount, in: Limits.heads)
        blockCount = try m.int(GGUFKey.Vision.blockCount, in: Limits.layers)
        eps = try m.float(GGUFKey.Vision.layerNormEpsilon, in: Limits.epsilon, default: 1e-5)
        activation = try m.bool(GGUFKey.Vision.useGelu, default: false) ? .gelu : .quickGelu
        if m.contains(GGUFKey.VZQ.visionHiddenAct) {
            let act = try m.string(GGUFKey.VZQ.visionHiddenAct)
            guard let a = Self.activation(hiddenAct: act) else {
                throw ModelError("\(m.file): vision activation '\(act)' is not supported (gelu, gelu_pytorch_tanh, quick_gelu)")
            }
            activation = a
            hiddenAct = act
        }
        projectionDim = m.contains(GGUFKey.Vision.projectionDim) ? try m.int(GGUFKey.Vision.projectionDim, in: Limits.width) : nil
        for (key, limit) in [(GGUFKey.VZQ.visionLayerHeads, heads), (GGUFKey.VZQ.visionLayerFeedForward, feedForward)]
        where m.contains(key) {
            let values = try m.ints(key, in: 1...max(1, limit))
            guard values.count == blockCount else {
                throw ModelError("\(m.file): \(key) has \(values.count) values, expected one per block (\(blockCount))")
            }
            if key == GGUFKey.VZQ.visionLayerHeads { layerHeads = values } else { layerFeedForward = values }
        }
        featureSelect = try m.string(GGUFKey.VZQ.featureSelect, default: "default")
        featureLayer = m.contains(GGUFKey.VZQ.featureLayer) ? try m.int(GGUFKey.VZQ.featureLayer, in: -Limits.layers.upperBound...Limits.layers.upperBound) : nil
        sourceBlockCount = m.contains(GGUFKey.VZQ.sourceBlockCount) ? try m.int(GGUFKey.VZQ.sourceBlockCount, in: Limits.layers) : nil
        if f.isQwen {
            mergeSize = 2
            activation = f == .qwen25vl ? .silu : .quickGelu
            if f == .qwen25vl {
                let windowPixels = try m.int(GGUFKey.Vision.windowSize, in: Limits.imageSide, default: 112)
                windowPatches = max(1, windowPixels / patchSize)
                fullAttentionLayers = try Self.fullAttentionLayers(m, blocks: blockCount)
            }
        }
        guard imageSize > 0, patchSize > 0, imageSize % patchSize == 0, heads > 0, hidden % heads == 0, blockCount > 0 else {
            throw ModelError("\(m.file): inconsistent clip.vision metadata (image \(imageSize), patch \(patchSize), hidden \(hidden), heads \(heads), blocks \(blockCount))")
        }
    }
}

extension VisionConfig {
    /// Qwen2.5-VL's full-attention layers: `clip.vision.wa_layer_indexes` when the file lists them, else every
    /// layer i with (i + 1) a multiple of `clip.vision.n_wa_pattern` (llama.cpp's two ways of saying it).
    static func fullAttentionLayers(_ m: GGUFMetadata, blocks: Int) throws -> [Int] {
        if m.contains(GGUFKey.Vision.fullAttentionLayers) {
            return try m.ints(GGUFKey.Vision.fullAttentionLayers, in: 0...(blocks - 1))
        }
        let pattern = try m.int(GGUFKey.Vision.windowAttentionPattern, in: 1...Limits.layers.upperBound)
        return (0..<blocks).filter { ($0 + 1) % pattern == 0 }
    }
}

/// What a caller (a token reducer) asks the encoder to measure in its last block, besides the block's output.
public struct AttentionProbe: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// The softmax attention [heads, T, T] (tests, maps; big: T² per head).
    public static let fullMaps = AttentionProbe(rawValue: 1)
    /// Each head's attention row of the first query [heads, T] (with a CLS token: the CLS query's).
    public static let firstQueryRows = AttentionProbe(rawValue: 2)
    /// The attention each token receives, averaged over heads and queries [T] (summed in Double).
    public static let receivedAttention = AttentionProbe(rawValue: 4)
    /// The block's keys (after bias) averaged over heads [T, headDim].
    public static let headMeanKeys = AttentionProbe(rawValue: 8)
}

/// What the encoder returns: the last block's output and, when probed, what was measured in that block.
public struct VisionOutput: Sendable {
    /// The last block's output [tokens, hidden], CLS first where the family has one (transformers'
    /// hidden_states[-1]; for LLaVA the feature layer, since the later blocks were not converted).
    public var features: [Float]
    /// `features` through the final layernorm (transformers' last_hidden_state), when the file has `v.post_ln`.
    public var normalized: [Float]?
    /// Every block's input and the last block's output [blockCount + 1][tokens · hidden] (only when requested).
    public var hiddenStates: [[Float]]?
    /// `AttentionProbe.fullMaps`: the last block's softmax attention [heads, T, T].
    public var attention: [Float]?
    /// `.firstQueryRows`: the last block's first query row per head [heads, T] (with CLS: the CLS attention).
    public var firstRowAttention: [Float]?
    /// `.receivedAttention`: the attention each token receives in the last block, averaged over heads and queries [T].
    public var receivedAttention: [Double]?
    /// `.headMeanKeys`: the last block's keys (after bias) averaged over heads [T, headDim].
    public var keysMean: [Float]?
    /// The patch grid the image was cut into.
    public var gridRows: Int
    public var gridColumns: Int
}

/// A ViT vision tower: CLIP (LLaVA's), SigLIP or DINOv2, which differ only in a few steps:
///   x = [class;] patches · W_patchᵀ (+ b) + pos       CLS: CLIP, DINOv2; pos bicubically resized: DINOv2 (DINOv2.swift)
///   x = preLN(x)                                      CLIP
///   per block: x += ls1 ⊙ out(attn(LN1(x)))           ls1/ls2: DINOv2
///              x += ls2 ⊙ down(act(up(LN2(x))))       act: quick GELU / GELU (CLIP), tanh GELU (SigLIP), GELU (DINOv2)
///   normalized = postLN(x)                            when the file has v.post_ln (SigLIP, DINOv2; not LLaVA's CLIP)
/// The first-block-to-last order runs the `blockCount` blocks the file stores; SigLIP's attention-pooling head is
/// not converted.
public final class VisionEncoder {
    public private(set) var config: VisionConfig

    struct Block {
        let ln1w, ln1b, ln2w, ln2b: UnsafePointer<Float>
        let q, k, v, out, up, down: Linear
        let ls1, ls2: UnsafePointer<Float>?
        /// This block's heads (a pruned tower's differ per block) and FFN width.
        let attention: Attention
        let feedForward: Int
        var qDim: Int { attention.heads * attention.headDim }
    }

    /// Every buffer one forward pass of `tokens` tokens needs, carved from one arena.
    struct Scratch {
        let tokens: Int
        let arena: Arena
        let patches, x, xn, q, k, v, attn, ff, scores, positions: UnsafeMutablePointer<Float>
        let gemmWorkspace, attnWorkspace: UnsafeMutableRawPointer
    }

    private let weights: GGUFWeights
    private let patchEmbedding: Linear
    private let classEmbedding: UnsafePointer<Float>?
    private let positionEmbedding: UnsafePointer<Float>
    private let preNormW, preNormB: UnsafePointer<Float>?
    private let postNormW, postNormB: UnsafePointer<Float>?
    private let blocks: [Block]
    /// When set, every forward pass adds its attn_out and ffn_down inputs here (calibration for pruning).
    public var statistics: ActivationStatistics?
    /// When set, those inputs' listed channels are held at fixed values (a pruning's effect, simulated).
    public var overrides: ChannelOverrides?
    /// Sized for the native image; replaced by a bigger one the first time a larger image (DINOv2) comes.
    private var scratch: Scratch

    public convenience init(path: String) throws { try self.init(file: GGUFFile(path: path)) }

    public init(file: GGUFFile) throws {
        var c = try VisionConfig(metadata: file.metadata)
        let w = GGUFWeights(file)
        if !file.metadata.contains(GGUFKey.VZQ.visionFamily) {
            // llama.cpp's files: the tensors tell the families apart.
            if !w.has("v.class_embd") { c.family = .siglip } else if w.has("v.blk.0.ls1.weight") { c.family = .dinov2 }
            // clip.use_gelu only says "some gelu"; SigLIP's is the tanh approximation (gelu_pytorch_tanh).
            if c.family == .siglip, c.activation == .gelu, !file.metadata.contains(GGUFKey.VZQ.visionHiddenAct) {
                c.activation = .geluTanh
            }
        }
        guard !c.family.isQwen else { throw ModelError("\(file.path): a Qwen vision tower runs in QwenVisionEncoder") }
        config = c
        weights = w
        try w.requireBlocks(c.blockCount, key: GGUFKey.Vision.blockCount) { "v.blk.\($0).ln1.weight" }
        let d = c.hidden
        patchEmbedding = try Linear(w, "v.patch_embd", rows: d, cols: c.patchValues)
        classEmbedding = try w.optionalVector("v.class_embd", count: d)
        positionEmbedding = try w.vector("v.position_embd.weight", count: c.tokens * d)
        preNormW = try w.optionalVector("v.pre_ln.weight", count: d)
        preNormB = try w.optionalVector("v.pre_ln.bias", count: d)
        postNormW = try w.optionalVector("v.post_ln.weight", count: d)
        postNormB = try w.optionalVector("v.post_ln.bias", count: d)
        if c.hasClassToken, classEmbedding == nil { throw ModelError("\(file.path): no v.class_embd (\(c.family.rawValue) has a class token)") }
        blocks = try (0..<c.blockCount).map { i in
            let p = "v.blk.\(i)"
            let layerScale = c.family == .dinov2
            let qDim = c.heads(layer: i) * c.headDim, ff = c.feedForward(layer: i)
            return Block(ln1w: try w.vector("\(p).ln1.weight", count: d), ln1b: try w.vector("\(p).ln1.bias", count: d),
                         ln2w: try w.vector("\(p).ln2.weight", count: d), ln2b: try w.vector("\(p).ln2.bias", count: d),
                         q: try Linear(w, "\(p).attn_q", rows: qDim, cols: d), k: try Linear(w, "\(p).attn_k", rows: qDim, cols: d),
                         v: try Linear(w, "\(p).attn_v", rows: qDim, cols: d), out: try Linear(w, "\(p).attn_out", rows: d, cols: qDim),
                         up: try Linear(w, "\(p).ffn_up", rows: ff, cols: d),
                         down: try Linear(w, "\(p).ffn_down", rows: d, cols: ff),
                         ls1: layerScale ? try w.vector("\(p).ls1.weight", count: d) : nil,
                         ls2: layerScale ? try w.vector("\(p).ls2.weight", count: d) : nil,
                         attention: Attention(heads: c.heads(layer: i), kvHeads: c.heads(layer: i), headDim: c.headDim),
                         feedForward: ff)
        }
        scratch = try Self.plan(tokens: c.tokens, config: c, patchEmbedding: patchEmbedding, blocks: blocks)
    }

    /// Bytes of packed weight matrices (patch embedding and every block's; vectors are read from the mapping).
    public var weightBytes: Int {
        blocks.reduce(patchEmbedding.weight.packedBytes) { sum, b in
            [b.q, b.k, b.v, b.out, b.up, b.down].reduce(sum) { $0 + $1.weight.packedBytes }
        }
    }

    /// Bytes of the scratch arena (activations, scores, workspaces) as planned so far: the native image's tokens,
    /// or the largest image run since.
    public var scratchBytes: Int { scratch.arena.bytes }

    private static func plan(tokens t: Int, config c: VisionConfig, patchEmbedding: Linear, blocks: [Block]) throws -> Scratch {
        let d = c.hidden
        var plan = ArenaPlan()
        let oPatches = plan.floats(t * c.patchValues)
        let oX = plan.floats(t * d), oXn = plan.floats(t * d)
        let oQ = plan.floats(t * d), oK = plan.floats(t * d), oV = plan.floats(t * d), oAttn = plan.floats(t * d)
        let oFF = plan.floats(t * max(c.feedForward, d))
        let oScores = plan.floats(Attention.scoreFloats(queries: t, keys: t))
        let oPositions = plan.floats(t * d)
        var ws = patchEmbedding.workspaceBytes(rows: t)
        for b in blocks { for l in [b.q, b.k, b.v, b.out, b.up, b.down] { ws = max(ws, l.workspaceBytes(rows: t)) } }
        let oWs = plan.raw(ws)
        let oAttnWs = plan.raw(blocks.map { $0.attention.workspaceBytes(keys: t) }.max() ?? 0)
        let a = try Arena(plan, for: "the vision encoder's scratch for \(t) tokens")
        return Scratch(tokens: t, arena: a, patches: a.floats(oPatches), x: a.floats(oX), xn: a.floats(oXn),
                       q: a.floats(oQ), k: a.floats(oK), v: a.floats(oV), attn: a.floats(oAttn), ff: a.floats(oFF),
                       scores: a.floats(oScores), positions: a.floats(oPositions),
                       gemmWorkspace: a.raw(oWs), attnWorkspace: a.raw(oAttnWs))
    }

    /// Runs the tower on one normalised image [channels, height, width] (CHW); height and width default to
    /// `imageSize`. Only DINOv2 takes other sizes (its position embedding is resized to the patch grid).
    /// - Parameters:
    ///   - probe: what to measure in the last block's attention besides its output (a token reducer's request).
    ///   - keepHiddenStates: also return every block's input and the last block's output.
    public func callAsFunction(pixels: [Float], height: Int? = nil, width: Int? = nil, probe requested: AttentionProbe = [],
                               keepHiddenStates: Bool = false) throws -> VisionOutput {
        let c = config, d = c.hidden, p = c.patchSize
        let hPx = height ?? c.imageSize, wPx = width ?? c.imageSize
        guard pixels.count == c.channels * hPx * wPx else {
            throw ModelError("image has \(pixels.count) values, expected \(c.channels)×\(hPx)×\(wPx)")
        }
        let rows = hPx / p, cols = wPx / p, n = rows * cols
        guard n > 0 else { throw ModelError("image \(hPx)×\(wPx) is smaller than one \(p)×\(p) patch") }
        let native = rows == c.patchesPerSide && cols == c.patchesPerSide
        if !native, c.family != .dinov2 {
            throw ModelError("\(c.family.rawValue) runs at \(c.imageSize)×\(c.imageSize) only (got \(hPx)×\(wPx))")
        }
        let first = c.hasClassToken ? 1 : 0, t = n + first
        if t > scratch.tokens {
            scratch = try Self.plan(tokens: t, config: c, patchEmbedding: patchEmbedding, blocks: blocks)
        }
        let s = scratch
        let x = s.x, xn = s.xn

        // im2col: patch (py, px) → [c][ky][kx], the conv weight's order (pixels past the last whole patch unused).
        pixels.withUnsafeBufferPointer { px in
            var o = 0
            for py in 0..<rows {
                for pxi in 0..<cols {
                    for ch in 0..<c.channels {
                        for ky in 0..<p {
                            let row = ch * hPx * wPx + (py * p + ky) * wPx + pxi * p
                            for kx in 0..<p { s.patches[o] = px[row + kx]; o += 1 }
                        }
                    }
                }
            }
        }
        // Embeddings: CLS row (if any), then the patch projections; plus positions.
        if let classEmbedding { x.update(from: classEmbedding, count: d) }
        try patchEmbedding(s.patches, rows: n, into: x + first * d, workspace: s.gemmWorkspace)
        // DINOv2 resizes unless the patch count matches and the image is square (transformers' test, kept exactly).
        if c.family == .dinov2, !(n == c.patches && hPx == wPx) {
            Self.interpolatePositions(positionEmbedding, grid: c.patchesPerSide, dim: d, rows: rows, cols: cols,
                                      into: s.positions)
            Ops.add(x, s.positions, count: t * d)
        } else {
            Ops.add(x, positionEmbedding, count: t * d)
        }
        if let preNormW { Ops.layerNorm(x, rows: t, dim: d, weight: preNormW, bias: preNormB, eps: c.eps, into: x) }

        var hidden: [[Float]]? = keepHiddenStates ? [] : nil
        var probe = Probed()
        for (i, b) in blocks.enumerated() {
            let last = i == blocks.count - 1
            hidden?.append(Array(UnsafeBufferPointer(start: x, count: t * d)))
            // Attention.
            Ops.layerNorm(x, rows: t, dim: d, weight: b.ln1w, bias: b.ln1b, eps: c.eps, into: xn)
            try b.q(xn, rows: t, into: s.q, workspace: s.gemmWorkspace)
            try b.k(xn, rows: t, into: s.k, workspace: s.gemmWorkspace)
            try b.v(xn, rows: t, into: s.v, workspace: s.gemmWorkspace)
            let qd = b.qDim, ff = b.feedForward
            if last, !requested.isEmpty {
                probe = try attentionProbed(requested, s, block: b, tokens: t)
            } else {
                try b.attention(q: s.q, ldq: qd, k: s.k, ldk: qd, v: s.v, ldv: qd, queries: t, keys: t, causalOffset: nil,
                                scores: s.scores, workspace: s.attnWorkspace, into: s.attn, ldo: qd)
            }
            statistics?.addAttention(layer: i, s.attn, rows: t)
            overrides?.applyAttention(layer: i, s.attn, rows: t, width: qd)
            try b.out(s.attn, rows: t, into: xn, workspace: s.gemmWorkspace)
            if let ls1 = b.ls1 { Ops.scaleColumns(xn, rows: t, dim: d, scale: ls1) }
            Ops.add(x, xn, count: t * d)
            // MLP.
            Ops.layerNorm(x, rows: t, dim: d, weight: b.ln2w, bias: b.ln2b, eps: c.eps, into: xn)
            try b.up(xn, rows: t, into: s.ff, workspace: s.gemmWorkspace)
            switch c.activation {
            case .gelu: Ops.gelu(s.ff, count: t * ff)
            case .geluTanh: Ops.geluTanh(s.ff, count: t * ff)
            case .quickGelu: Ops.quickGelu(s.ff, count: t * ff)
            case .silu: Ops.silu(s.ff, count: t * ff)
            }
            statistics?.addFeedForward(layer: i, s.ff, rows: t)
            overrides?.applyFeedForward(layer: i, s.ff, rows: t, width: ff)
            try b.down(s.ff, rows: t, into: xn, workspace: s.gemmWorkspace)
            if let ls2 = b.ls2 { Ops.scaleColumns(xn, rows: t, dim: d, scale: ls2) }
            Ops.add(x, xn, count: t * d)
            statistics?.addResidual(layer: i, x, count: t * d)
        }
        let features = Array(UnsafeBufferPointer(start: x, count: t * d))
        hidden?.append(features)
        var normalized: [Float]? = nil
        if let postNormW {
            Ops.layerNorm(x, rows: t, dim: d, weight: postNormW, bias: postNormB, eps: c.eps, into: xn)
            normalized = Array(UnsafeBufferPointer(start: xn, count: t * d))
        }
        return VisionOutput(features: features, normalized: normalized, hiddenStates: hidden, attention: probe.maps,
                            firstRowAttention: probe.firstRows, receivedAttention: probe.received, keysMean: probe.keysMean,
                            gridRows: rows, gridColumns: cols)
    }

    /// What a probe of the last block measured.
    private struct Probed {
        var maps: [Float]?, firstRows: [Float]?, received: [Double]?, keysMean: [Float]?
    }

    /// The last block's attention (into `s.attn`) with what `requested` asks recorded on the way.
    private func attentionProbed(_ requested: AttentionProbe, _ s: Scratch, block b: Block, tokens t: Int) throws -> Probed {
        let heads = b.attention.heads, qd = b.qDim
        func buffer<T: Numeric>(_ wanted: AttentionProbe, _ n: Int, _: T.Type) -> UnsafeMutableBufferPointer<T>? {
            guard requested.contains(wanted) else { return nil }
            let b = UnsafeMutableBufferPointer<T>.allocate(capacity: n)
            b.initialize(repeating: 0)
            return b
        }
        let maps = buffer(.fullMaps, heads * t * t, Float.self)
        let rows = buffer(.firstQueryRows, heads * t, Float.self)
        let sums = buffer(.receivedAttention, t, Double.self)
        defer { maps?.deallocate(); rows?.deallocate(); sums?.deallocate() }
        try b.attention(q: s.q, ldq: qd, k: s.k, ldk: qd, v: s.v, ldv: qd, queries: t, keys: t, causalOffset: nil,
                        scores: s.scores, workspace: s.attnWorkspace, into: s.attn, ldo: qd,
                        probabilities: maps?.baseAddress, firstRows: rows?.baseAddress, columnSums: sums?.baseAddress)
        // Received attention as a mean over heads and queries.
        let n = Double(heads * t)
        return Probed(maps: maps.map(Array.init), firstRows: rows.map(Array.init), received: sums.map { $0.map { $0 / n } },
                      keysMean: requested.contains(.headMeanKeys) ? headMean(s.k, heads: heads, tokens: t) : nil)
    }

    /// [T, heads·hd] → mean over heads [T, hd].
    private func headMean(_ k: UnsafePointer<Float>, heads h: Int, tokens t: Int) -> [Float] {
        let hd = config.headDim
        var out = [Float](repeating: 0, count: t * hd)
        for r in 0..<t {
            for j in 0..<hd {
                var s: Float = 0
                for g in 0..<h { s += k[r * h * hd + g * hd + j] }
                out[r * hd + j] = s / Float(h)
            }
        }
        return out
    }
}

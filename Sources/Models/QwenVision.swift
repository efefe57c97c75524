import CQuant
import Foundation
import VZQFormats
import VZQKernels
import VZQSupport

/// Qwen2-VL's and Qwen2.5-VL's vision tower, at the image's own resolution (a multiple of 28 px a side):
///   x      = patches · W_patchᵀ                 14×14 patches over two frames; an image is its own second frame,
///                                               so the two temporal kernels are summed once at load
///   block: x += out(attn(rope₂(q), rope₂(k), v)) of norm1(x)
///          x += mlp(norm2(x))
///   norm:  LayerNorm (Qwen2-VL), RMSNorm (Qwen2.5-VL)
///   mlp:   fc2(quickGELU(fc1(x))) (Qwen2-VL), down(SiLU(gate(x)) ⊙ up(x)) (Qwen2.5-VL)
///   rope₂: the first half of each head's rotary pairs turn with the patch's row, the second with its column,
///          θ_j = 10000^(−4j/headDim) (transformers' VisionRotaryEmbedding over headDim/2)
///   normalized = post_ln(x) (the merger's ln_q; the projector then folds 2×2 patches and applies its MLP)
/// Qwen2.5-VL attends within windows of `windowPatches`² patches (112 px) except in the full-attention layers.
/// Rows run in window order (windows in raster order, merge groups in raster order inside a window, the 2×2
/// patches of a group in raster order), transformers' order, so every window is one contiguous run; outputs come
/// back in raster order of patches.
public final class QwenVisionEncoder {
    public private(set) var config: VisionConfig

    struct Block {
        let norm1w, norm2w: UnsafePointer<Float>
        let norm1b, norm2b: UnsafePointer<Float>?
        let q, k, v, out, up, down: Linear
        let gate: Linear?
    }

    struct Scratch {
        let tokens: Int
        let arena: Arena
        let patches, x, xn, q, k, v, attn, ff, ff2, scores: UnsafeMutablePointer<Float>
        let gemmWorkspace, attnWorkspace: UnsafeMutableRawPointer
    }

    private let weights: GGUFWeights
    private let patchEmbedding: PackedMatrix
    private let patchBias: UnsafePointer<Float>?
    private let postNormW: UnsafePointer<Float>
    private let postNormB: UnsafePointer<Float>?
    private let blocks: [Block]
    private let attention: Attention
    /// θ_j for j < headDim/4.
    private let inverseFrequencies: [Float]
    private var scratch: Scratch

    public convenience init(path: String) throws { try self.init(file: GGUFFile(path: path)) }

    public init(file: GGUFFile) throws {
        let c = try VisionConfig(metadata: file.metadata)
        guard c.family.isQwen else { throw ModelError("\(file.path): not a Qwen2-VL or Qwen2.5-VL vision tower") }
        guard c.headDim % 4 == 0, c.mergeSize == 2 else {
            throw ModelError("\(file.path): Qwen vision heads must be a multiple of 4 values (got \(c.headDim)) and merge 2×2 patches (got \(c.mergeSize))")
        }
        config = c
        let w = GGUFWeights(file)
        weights = w
        try w.requireBlocks(c.blockCount, key: GGUFKey.Vision.blockCount) { "v.blk.\($0).ln1.weight" }
        let d = c.hidden, frame = c.channels * c.patchSize * c.patchSize
        patchEmbedding = try Self.summedFrames(w, rows: d, frameValues: frame)
        patchBias = try w.optionalVector("v.patch_embd.bias", count: d)
        postNormW = try w.vector("v.post_ln.weight", count: d)
        postNormB = try w.optionalVector("v.post_ln.bias", count: d)
        let swiglu = c.family == .qwen25vl
        blocks = try (0..<c.blockCount).map { i in
            let p = "v.blk.\(i)"
            return Block(norm1w: try w.vector("\(p).ln1.weight", count: d), norm2w: try w.vector("\(p).ln2.weight", count: d),
                         norm1b: try w.optionalVector("\(p).ln1.bias", count: d),
                         norm2b: try w.optionalVector("\(p).ln2.bias", count: d),
                         q: try Linear(w, "\(p).attn_q", rows: d, cols: d), k: try Linear(w, "\(p).attn_k", rows: d, cols: d),
                         v: try Linear(w, "\(p).attn_v", rows: d, cols: d), out: try Linear(w, "\(p).attn_out", rows: d, cols: d),
                         up: try Linear(w, "\(p).ffn_up", rows: c.feedForward, cols: d),
                         down: try Linear(w, "\(p).ffn_down", rows: d, cols: c.feedForward),
                         gate: swiglu ? try Linear(w, "\(p).ffn_gate", rows: c.feedForward, cols: d) : nil)
        }
        attention = Attention(heads: c.heads, kvHeads: c.heads, headDim: c.headDim)
        let quarter = c.headDim / 4
        inverseFrequencies = (0..<quarter).map { j in Float(1 / pow(10000.0, Double(4 * j) / Double(c.headDim))) }
        scratch = try Self.plan(tokens: max(1, c.patches), config: c, patchEmbedding: patchEmbedding, blocks: blocks,
                                attention: attention)
    }

    /// The patch embedding over one frame: the stored kernel for frame 0 (`v.patch_embd.weight`) plus, when the
    /// file has it, frame 1's (`v.patch_embd.weight.1`, llama.cpp's split of the 3-D convolution). A file may
    /// instead hold the whole [hidden, channels·2·p·p] kernel, whose two frames are summed here.
    static func summedFrames(_ w: GGUFWeights, rows d: Int, frameValues: Int) throws -> PackedMatrix {
        func values(_ name: String) throws -> [Float] {
            let t = try w.info(name)
            return try t.type.dequantize(w.file.bytes(of: t), count: t.elementCount)
        }
        let first = try values("v.patch_embd.weight")
        var summed = [Float](repeating: 0, count: d * frameValues)
        if first.count == d * frameValues {
            summed = first
            if w.has("v.patch_embd.weight.1") {
                let second = try values("v.patch_embd.weight.1")
                guard second.count == first.count else {
                    throw ModelError("\(w.file.path): v.patch_embd.weight.1 has \(second.count) values, expected \(first.count)")
                }
                for i in summed.indices { summed[i] += second[i] }
            }
        } else if first.count == 2 * d * frameValues {
            // [hidden][channel][frame][ky][kx]: add the two frames of each channel.
            let channels = 3, plane = frameValues / channels
            for r in 0..<d {
                for ch in 0..<channels {
                    for i in 0..<plane {
                        let src = ((r * channels + ch) * 2) * plane + i
                        summed[r * frameValues + ch * plane + i] = first[src] + first[src + plane]
                    }
                }
            }
        } else {
            throw ModelError("\(w.file.path): v.patch_embd.weight has \(first.count) values, expected \(d)×\(frameValues) (or two frames)")
        }
        return try summed.withUnsafeBytes { try PackedMatrix(type: .f32, bytes: $0.baseAddress!, rows: d, cols: frameValues) }
    }

    public var weightBytes: Int {
        blocks.reduce(patchEmbedding.packedBytes) { sum, b in
            ([b.q, b.k, b.v, b.out, b.up, b.down] + (b.gate.map { [$0] } ?? [])).reduce(sum) { $0 + $1.weight.packedBytes }
        }
    }

    public var scratchBytes: Int { scratch.arena.bytes }

    private static func plan(tokens t: Int, config c: VisionConfig, patchEmbedding: PackedMatrix, blocks: [Block],
                             attention: Attention) throws -> Scratch {
        let d = c.hidden, frame = c.channels * c.patchSize * c.patchSize
        var plan = ArenaPlan()
        let oPatches = plan.floats(t * frame)
        let oX = plan.floats(t * d), oXn = plan.floats(t * d)
        let oQ = plan.floats(t * d), oK = plan.floats(t * d), oV = plan.floats(t * d), oAttn = plan.floats(t * d)
        let oFF = plan.floats(t * c.feedForward), oFF2 = plan.floats(c.family == .qwen25vl ? t * c.feedForward : 1)
        let oScores = plan.floats(Attention.scoreFloats(queries: t, keys: t))
        var ws = patchEmbedding.workspaceBytes(rows: t)
        for b in blocks {
            for l in [b.q, b.k, b.v, b.out, b.up, b.down] + (b.gate.map { [$0] } ?? []) { ws = max(ws, l.workspaceBytes(rows: t)) }
        }
        let oWs = plan.raw(ws)
        let oAttnWs = plan.raw(attention.workspaceBytes(keys: t))
        let a = try Arena(plan, for: "the Qwen vision tower's scratch for \(t) patches")
        return Scratch(tokens: t, arena: a, patches: a.floats(oPatches), x: a.floats(oX), xn: a.floats(oXn),
                       q: a.floats(oQ), k: a.floats(oK), v: a.floats(oV), attn: a.floats(oAttn), ff: a.floats(oFF),
                       ff2: a.floats(oFF2), scores: a.floats(oScores), gemmWorkspace: a.raw(oWs),
                       attnWorkspace: a.raw(oAttnWs))
    }

    /// The order rows run in and the windows they form: `order[k]` is the raster index of the patch in row k;
    /// `windows` the row ranges attending among themselves in windowed layers (one range without windows).
    /// Windows are `windowPatches`² patches in raster order over the grid (the last row and column of windows
    /// cut short); inside, merge groups in raster order, then each group's patches.
    static func windowOrder(rows: Int, columns: Int, merge m: Int, windowPatches: Int?) -> (order: [Int], windows: [Range<Int>]) {
        let groupRows = rows / m, groupColumns = columns / m
        let side = max(1, (windowPatches ?? max(rows, columns)) / m)  // window side in merge groups
        var order: [Int] = []
        order.reserveCapacity(rows * columns)
        var windows: [Range<Int>] = []
        for wy in stride(from: 0, to: groupRows, by: side) {
            for wx in stride(from: 0, to: groupColumns, by: side) {
                let start = order.count
                for gy in wy ..< min(wy + side, groupRows) {
                    for gx in wx ..< min(wx + side, groupColumns) {
                        for r in 0..<m { for c in 0..<m { order.append((gy * m + r) * columns + gx * m + c) } }
                    }
                }
                windows.append(start ..< order.count)
            }
        }
        return (order, windowPatches == nil ? [0 ..< order.count] : windows)
    }

    /// Runs the tower on one normalised image [3, height, width], height and width multiples of
    /// patchSize · mergeSize. The probe measures the last full-attention layer (the last block of Qwen2-VL).
    public func callAsFunction(pixels: [Float], height: Int?, width: Int?, probe requested: AttentionProbe,
                               keepHiddenStates: Bool) throws -> VisionOutput {
        let c = config, d = c.hidden, p = c.patchSize, unit = p * c.mergeSize
        let hPx = height ?? c.imageSize, wPx = width ?? c.imageSize
        guard pixels.count == c.channels * hPx * wPx else {
            throw ModelError("image has \(pixels.count) values, expected \(c.channels)×\(hPx)×\(wPx)")
        }
        guard hPx >= unit, wPx >= unit, hPx % unit == 0, wPx % unit == 0 else {
            throw ModelError("a Qwen vision tower takes sides that are multiples of \(unit) px (got \(wPx)×\(hPx))")
        }
        let rows = hPx / p, cols = wPx / p, t = rows * cols
        if t > scratch.tokens {
            scratch = try Self.plan(tokens: t, config: c, patchEmbedding: patchEmbedding, blocks: blocks, attention: attention)
        }
        let s = scratch
        let x = s.x, xn = s.xn
        let (order, windows) = Self.windowOrder(rows: rows, columns: cols, merge: c.mergeSize, windowPatches: c.windowPatches)
        let full = [0 ..< t]

        // im2col in row order: patch → [c][ky][kx] (one frame; the kernels were summed).
        let frame = c.channels * p * p
        pixels.withUnsafeBufferPointer { px in
            for (k, patch) in order.enumerated() {
                let py = patch / cols, pxi = patch % cols
                var o = k * frame
                for ch in 0..<c.channels {
                    for ky in 0..<p {
                        let row = ch * hPx * wPx + (py * p + ky) * wPx + pxi * p
                        for kx in 0..<p { s.patches[o] = px[row + kx]; o += 1 }
                    }
                }
            }
        }
        try patchEmbedding.multiply(s.patches, rows: t, bias: patchBias, into: x, workspace: s.gemmWorkspace)

        // Rotary angles per row: pairs j < hd/4 turn with the patch's row, pairs hd/4 + j with its column.
        let hd = c.headDim, quarter = hd / 4
        var cosines = [Float](repeating: 0, count: t * 2 * quarter), sines = cosines
        for (k, patch) in order.enumerated() {
            let (py, pxi) = (Float(patch / cols), Float(patch % cols))
            for j in 0..<quarter {
                let a = py * inverseFrequencies[j], b = pxi * inverseFrequencies[j]
                cosines[k * 2 * quarter + j] = Foundation.cos(a); sines[k * 2 * quarter + j] = Foundation.sin(a)
                cosines[k * 2 * quarter + quarter + j] = Foundation.cos(b); sines[k * 2 * quarter + quarter + j] = Foundation.sin(b)
            }
        }
        func rotate(_ v: UnsafeMutablePointer<Float>) {
            let half = hd / 2
            for k in 0..<t {
                for h in 0..<c.heads {
                    let base = v + k * d + h * hd
                    for i in 0..<half {
                        let cs = cosines[k * half + i], sn = sines[k * half + i]
                        let x0 = base[i], x1 = base[i + half]
                        base[i] = x0 * cs - x1 * sn
                        base[i + half] = x0 * sn + x1 * cs
                    }
                }
            }
        }

        let probeLayer = (0..<blocks.count).last { c.windowPatches == nil || c.fullAttentionLayers.contains($0) } ?? blocks.count - 1
        var hidden: [[Float]]? = keepHiddenStates ? [] : nil
        var received: [Double]?, keysMean: [Float]?, maps: [Float]?
        for (i, b) in blocks.enumerated() {
            hidden?.append(Self.raster(x, order: order, width: d))
            norm(x, rows: t, weight: b.norm1w, bias: b.norm1b, into: xn)
            try b.q(xn, rows: t, into: s.q, workspace: s.gemmWorkspace)
            try b.k(xn, rows: t, into: s.k, workspace: s.gemmWorkspace)
            try b.v(xn, rows: t, into: s.v, workspace: s.gemmWorkspace)
            rotate(s.q)
            rotate(s.k)
            let spans = c.windowPatches == nil || c.fullAttentionLayers.contains(i) ? full : windows
            if i == probeLayer, !requested.isEmpty {
                // Only full attention is probed: every patch sees every other.
                let sums = requested.contains(.receivedAttention) ? UnsafeMutablePointer<Double>.allocate(capacity: t) : nil
                let probabilities = requested.contains(.fullMaps) ? UnsafeMutablePointer<Float>.allocate(capacity: c.heads * t * t) : nil
                defer { sums?.deallocate(); probabilities?.deallocate() }
                try attention(q: s.q, ldq: d, k: s.k, ldk: d, v: s.v, ldv: d, queries: t, keys: t, causalOffset: nil,
                              scores: s.scores, workspace: s.attnWorkspace, into: s.attn, ldo: d,
                              probabilities: probabilities, columnSums: sums)
                if let sums {
                    let n = Double(c.heads * t)
                    var r = [Double](repeating: 0, count: t)
                    for (k, patch) in order.enumerated() { r[patch] = sums[k] / n }
                    received = r
                }
                if let probabilities {
                    // [heads, T, T] in raster order on both axes.
                    var m = [Float](repeating: 0, count: c.heads * t * t)
                    for h in 0..<c.heads {
                        for (qi, qp) in order.enumerated() {
                            for (ki, kp) in order.enumerated() { m[(h * t + qp) * t + kp] = probabilities[(h * t + qi) * t + ki] }
                        }
                    }
                    maps = m
                }
                if requested.contains(.headMeanKeys) { keysMean = headMean(s.k, order: order) }
            } else {
                for span in spans {
                    let o = span.lowerBound * d
                    try attention(q: s.q + o, ldq: d, k: s.k + o, ldk: d, v: s.v + o, ldv: d, queries: span.count,
                                  keys: span.count, causalOffset: nil, scores: s.scores, workspace: s.attnWorkspace,
                                  into: s.attn + o, ldo: d)
                }
            }
            try b.out(s.attn, rows: t, into: xn, workspace: s.gemmWorkspace)
            Ops.add(x, xn, count: t * d)
            norm(x, rows: t, weight: b.norm2w, bias: b.norm2b, into: xn)
            let ff = c.feedForward
            try b.up(xn, rows: t, into: s.ff, workspace: s.gemmWorkspace)
            if let gate = b.gate {
                try gate(xn, rows: t, into: s.ff2, workspace: s.gemmWorkspace)
                Ops.silu(s.ff2, count: t * ff)
                Ops.mul(s.ff, s.ff2, count: t * ff)
            } else {
                Ops.quickGelu(s.ff, count: t * ff)
            }
            try b.down(s.ff, rows: t, into: xn, workspace: s.gemmWorkspace)
            Ops.add(x, xn, count: t * d)
        }
        let features = Self.raster(x, order: order, width: d)
        hidden?.append(features)
        norm(x, rows: t, weight: postNormW, bias: postNormB, into: xn)
        let normalized = Self.raster(xn, order: order, width: d)
        return VisionOutput(features: features, normalized: normalized, hiddenStates: hidden, attention: maps,
                            firstRowAttention: nil, receivedAttention: received, keysMean: keysMean,
                            gridRows: rows, gridColumns: cols)
    }

    /// LayerNorm (with bias, Qwen2-VL) or RMSNorm (no bias, Qwen2.5-VL), by the family.
    private func norm(_ x: UnsafePointer<Float>, rows: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                      into out: UnsafeMutablePointer<Float>) {
        if config.family == .qwen25vl {
            Ops.rmsNorm(x, rows: rows, dim: config.hidden, weight: weight, eps: config.eps, into: out)
        } else {
            Ops.layerNorm(x, rows: rows, dim: config.hidden, weight: weight, bias: bias, eps: config.eps, into: out)
        }
    }

    /// Rows in run order → raster order of patches.
    static func raster(_ x: UnsafePointer<Float>, order: [Int], width d: Int) -> [Float] {
        var out = [Float](repeating: 0, count: order.count * d)
        out.withUnsafeMutableBufferPointer { o in
            for (k, patch) in order.enumerated() { (o.baseAddress! + patch * d).update(from: x + k * d, count: d) }
        }
        return out
    }

    /// Keys averaged over heads, in raster order [T, headDim].
    private func headMean(_ k: UnsafePointer<Float>, order: [Int]) -> [Float] {
        let hd = config.headDim, h = config.heads, d = config.hidden
        var out = [Float](repeating: 0, count: order.count * hd)
        for (row, patch) in order.enumerated() {
            for j in 0..<hd {
                var s: Float = 0
                for g in 0..<h { s += k[row * d + g * hd + j] }
                out[patch * hd + j] = s / Float(h)
            }
        }
        return out
    }
}

extension QwenVisionEncoder: VisionTower {}

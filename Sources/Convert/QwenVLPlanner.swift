import Foundation
import VZQModels
import VZQFormats
import VZQKernels
import VZQSupport

/// Qwen2-VL's and Qwen2.5-VL's vision tower and merger → llama.cpp's mmproj layout (conversion/qwenvl.py):
///   patch_embed.proj.weight [D, 3, 2, p, p]  → v.patch_embd.weight, v.patch_embd.weight.1 (one [D, 3, p, p] per frame)
///   blocks.N.norm1 / norm2                   → v.blk.N.ln1 / ln2 (LayerNorm with bias; RMSNorm weight for 2.5)
///   blocks.N.attn.qkv [3D, D] (+ bias)       → v.blk.N.attn_q / attn_k / attn_v (rows 0..<D, D..<2D, 2D..<3D)
///   blocks.N.attn.proj                       → v.blk.N.attn_out
///   blocks.N.mlp.fc1 / fc2                   → v.blk.N.ffn_up / ffn_down (Qwen2-VL)
///   blocks.N.mlp.gate_proj / up_proj / down_proj → v.blk.N.ffn_gate / ffn_up / ffn_down (Qwen2.5-VL)
///   merger.ln_q                              → v.post_ln
///   merger.mlp.0 / merger.mlp.2              → mm.0 / mm.2
enum QwenVisionTable {
    static func plan(_ p: VisionParams, textHidden: Int) -> [TensorSpec] {
        let d = p.hidden, ff = p.feedForward, v25 = p.family == .qwen25vl
        var out: [TensorSpec] = []
        func add(_ gguf: String, _ hf: String, _ shape: [Int], _ role: TensorRole, rows: Range<Int>? = nil) {
            out.append(TensorSpec(gguf: gguf, hf: hf, shape: shape, role: role, sourceRows: rows))
        }
        for i in 0..<p.keptLayers {
            let g = "v.blk.\(i)", h = "blocks.\(i)"
            for (name, source) in [("ln1", "norm1"), ("ln2", "norm2")] {
                add("\(g).\(name).weight", "\(h).\(source).weight", [d], .vector)
                if !v25 { add("\(g).\(name).bias", "\(h).\(source).bias", [d], .vector) }
            }
            for (k, name) in ["attn_q", "attn_k", "attn_v"].enumerated() {
                let rows = (k * d)..<((k + 1) * d)
                add("\(g).\(name).weight", "\(h).attn.qkv.weight", [3 * d, d], .matrix, rows: rows)
                add("\(g).\(name).bias", "\(h).attn.qkv.bias", [3 * d], .vector, rows: rows)
            }
            add("\(g).attn_out.weight", "\(h).attn.proj.weight", [d, d], .matrix)
            add("\(g).attn_out.bias", "\(h).attn.proj.bias", [d], .vector)
            let mlp: [(String, String, [Int])] = v25
                ? [("ffn_gate", "mlp.gate_proj", [ff, d]), ("ffn_up", "mlp.up_proj", [ff, d]), ("ffn_down", "mlp.down_proj", [d, ff])]
                : [("ffn_up", "mlp.fc1", [ff, d]), ("ffn_down", "mlp.fc2", [d, ff])]
            for (name, source, shape) in mlp {
                add("\(g).\(name).weight", "\(h).\(source).weight", shape, .matrix)
                add("\(g).\(name).bias", "\(h).\(source).bias", [shape[0]], .vector)
            }
        }
        add("v.post_ln.weight", "merger.ln_q.weight", [d], .vector)
        if !v25 { add("v.post_ln.bias", "merger.ln_q.bias", [d], .vector) }
        add("mm.0.weight", "merger.mlp.0.weight", [4 * d, 4 * d], .matrix)
        add("mm.0.bias", "merger.mlp.0.bias", [4 * d], .vector)
        add("mm.2.weight", "merger.mlp.2.weight", [textHidden, 4 * d], .matrix)
        add("mm.2.bias", "merger.mlp.2.bias", [textHidden], .vector)
        return out
    }

    /// The 3-D patch kernel [D, C, 2, p, p] as llama.cpp stores it: one [D, C, p, p] kernel per frame, F32.
    static func patchFrames(_ values: [Float], hidden d: Int, channels c: Int, patch p: Int) -> [[Float]] {
        let plane = p * p
        var frames = [[Float]](repeating: [Float](repeating: 0, count: d * c * plane), count: 2)
        for r in 0..<d {
            for ch in 0..<c {
                for f in 0..<2 {
                    let src = ((r * c + ch) * 2 + f) * plane, dst = (r * c + ch) * plane
                    frames[f].replaceSubrange(dst..<(dst + plane), with: values[src..<(src + plane)])
                }
            }
        }
        return frames
    }
}

extension HFPlanner {
    /// The mmproj of a Qwen2-VL / Qwen2.5-VL checkpoint.
    static func planQwenVision(_ config: HFConfig, _ arch: HFArchitecture, directory dir: String, options: ConvertOptions,
                               index: inout ComponentIndex, name: String, note: (String) -> Void) throws -> FilePlan {
        let family: VisionFamily = arch == .qwen25vl ? .qwen25vl : .qwen2vl
        guard let vcfg = config.visionConfig else { throw ConvertError("\(dir)/config.json: a \(arch.rawValue) model needs a vision_config") }
        var v = try VisionParams(qwen: vcfg, family: family, directory: dir)
        let t = try TextParams(config.textConfig ?? config.asText, tiedDefault: config.tieWordEmbeddings, directory: dir)
        if let out = vcfg.outHiddenSize ?? (arch == .qwen2vl ? vcfg.hiddenSize : nil), out != t.hidden {
            throw ConvertError("\(dir)/config.json: the vision merger makes rows of \(out), the text model takes \(t.hidden)")
        }
        v.config.projectionDim = t.hidden
        let mmproj = options.mmprojOutput!

        // The patch kernel, split into its two frames.
        let patchName = "patch_embed.proj.weight"
        guard let patch = index.lookup(.vision, patchName) else {
            throw ConvertError("\(index.checkpointPath): missing tensor for v.patch_embd.weight (expected '\(patchName)' in the vision tower)")
        }
        let (d, c, p) = (v.hidden, v.channels, v.patchSize)
        guard patch.shape == [d, c, 2, p, p] else {
            throw ConvertError("\(patch.file): tensor '\(patch.name)' has shape \(patch.shape), but config.json implies \([d, c, 2, p, p]) (for v.patch_embd.weight)")
        }
        let values = try patch.quantType().dequantize(patch.bytes, count: d * c * 2 * p * p)
        let frames = QwenVisionTable.patchFrames(values, hidden: d, channels: c, patch: p)
        index.markUsedIfPresent(.vision, patchName)
        var tensors = [PlannedTensor.generated(name: "v.patch_embd.weight", dims: [p, p, c, d], values: frames[0]),
                       PlannedTensor.generated(name: "v.patch_embd.weight.1", dims: [p, p, c, d], values: frames[1])]
        tensors += try index.resolve(QwenVisionTable.plan(v, textHidden: t.hidden), component: .vision, policy: options.policy,
                                     file: mmproj, note: note)

        let pre = try HFPreprocessorConfig.load(directory: dir)
        try applyNormalization(pre, to: &v, directory: dir)
        let minPixels = try bounded(pre?.minPixels ?? pre?.size?.shortestEdge ?? 56 * 56, "min_pixels", Limits.imagePixels, directory: dir)
        let maxPixels = try bounded(pre?.maxPixels ?? pre?.size?.longestEdge ?? (family == .qwen25vl ? 12_845_056 : 28 * 28 * 1280),
                                    "max_pixels", minPixels...Limits.imagePixels.upperBound, directory: dir)
        var meta: [(String, GGUFValue)] = [
            (GGUFKey.General.architecture, .string("clip")),
            (GGUFKey.General.name, .string(name)),
            (GGUFKey.General.fileType, .uint32(options.policy.fileType)),
            (GGUFKey.General.quantizationVersion, .uint32(2)),
            (GGUFKey.Vision.hasTextEncoder, .bool(false)),
            (GGUFKey.Vision.hasVisionEncoder, .bool(true)),
            (GGUFKey.Vision.projectorType, .string(family == .qwen25vl ? "qwen2.5vl_merger" : "qwen2vl_merger")),
        ]
        meta += v.metadata()
        // Every patch feeds the merger (there is no CLS to drop).
        meta += [(GGUFKey.VZQ.featureSelect, .string(v.featureSelect)),
                 (GGUFKey.VZQ.sourceBlockCount, .uint32(UInt32(v.sourceLayers))),
                 (GGUFKey.VZQ.visionFamily, .string(family.rawValue)),
                 (GGUFKey.VZQ.visionHiddenAct, .string(v.hiddenAct)),
                 (GGUFKey.VZQ.minPixels, .uint32(UInt32(minPixels))),
                 (GGUFKey.VZQ.maxPixels, .uint32(UInt32(maxPixels)))]
        return FilePlan(path: mmproj, metadata: meta, tensors: tensors)
    }
}

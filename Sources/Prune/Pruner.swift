import Foundation
import VZQConvert
import VZQFamilies
import VZQFormats
import VZQImage
import VZQKernels
import VZQModels
import VZQRuntime
import VZQSupport
import VZQText

/// `vzquant prune`: calibrate a GGUF decoder, score and allocate (`StructuredPruning`), and write the pruned file
/// with the structures physically gone — per-layer head / KV-head / FFN counts as llama.cpp's per-layer arrays,
/// the bias compensation as `attn_output.bias` / `ffn_down.bias`, sliced matrices re-quantized in their own type
/// (or all tensors in `policy`'s) — tensor by tensor, atomically.
/// `vzquant prune`: calibrate a GGUF decoder and/or vision tower, score and allocate (`StructuredPruning`), and
/// write the pruned files with the structures physically gone — per-layer head / KV-head / FFN counts as llama.cpp's
/// per-layer arrays for the decoder, `vzquant.vision.layer_*` arrays for the tower, the bias compensation folded into
/// the output projections' biases, sliced matrices re-quantized in their own type (or all tensors in `policy`'s) —
/// tensor by tensor, atomically (both files or neither).
public enum Pruner {
    public struct Options: Sendable {
        /// A GGUF decoder, a GGUF mmproj (a vision tower alone), or a Hugging Face checkpoint directory.
        public var source: String
        public var output: String
        /// The vision file pruned together with the decoder (modal-adaptive), and where it goes.
        public var mmproj: String?
        public var mmprojOutput: String?
        public var target: Double
        public var allocation: StructuredPruning.Allocation = .adaptive
        /// A UTF-8 text whose tokens are cut into calibration sequences; nil: sequences the model writes itself.
        public var calibrationText: String?
        public var sequences = 16
        public var sequenceLength = 128
        /// Calibration images for the vision tower (JPEG/PNG paths); empty: `CalibrationImages.builtIn`.
        public var calibrationImages: [String] = []
        public var images = 16
        public var seed: UInt64 = 1
        /// Re-quantize the output as `vzquant convert --type` would (q4_0 … q6_k, llama.cpp's mixes, f16); nil:
        /// every tensor keeps its own type.
        public var policy: TypePolicy?
        public init(source: String, output: String, target: Double) {
            (self.source, self.output, self.target) = (source, output, target)
        }
    }

    public struct Report: Sendable {
        public var plan: StructuredPruning.Plan
        /// The decoder's and the tower's configs before pruning (nil: not pruned).
        public var config: LlamaConfig?
        public var vision: VisionConfig?
        public var calibrationTokens: Int
        public var calibrationImages: Int
        public var parametersBefore: Int
        public var parametersAfter: Int
    }

    public static func run(_ o: Options, note: (String) -> Void = { _ in }) throws -> Report {
        try OutputPath.validate(o.output)
        if let out = o.mmprojOutput { try OutputPath.validate(out) }
        guard (0 ..< 1).contains(o.target) else { throw ModelError("the pruning target must be in [0, 1), got \(o.target)") }
        guard o.sequences >= 1, o.sequenceLength >= 8, o.images >= 1 else {
            throw ModelError("calibration needs at least 1 sequence of at least 8 tokens and 1 image (got \(o.sequences) × \(o.sequenceLength), \(o.images))")
        }
        guard (o.mmproj == nil) == (o.mmprojOutput == nil) || FileManager.default.isDirectory(o.source) else {
            throw ModelError("--mmproj and --mmproj-out go together: the pruned vision file needs a place")
        }
        guard FileManager.default.isDirectory(o.source) else {
            return try run(o, gguf: o.source, mmproj: o.mmproj, note: note)
        }
        // A Hugging Face checkpoint: converted to f16 GGUF files beside the outputs first (removed afterwards), so
        // calibration and slicing read one format; --type then decides the outputs' types (default: f16).
        func temporary(_ output: String) -> String {
            let directory = (output as NSString).deletingLastPathComponent
            return (directory.isEmpty ? "" : directory + "/") + ".\((output as NSString).lastPathComponent).source-\(getpid()).gguf"
        }
        let text = temporary(o.output), vision = o.mmprojOutput.map(temporary)
        defer { for p in [text] + (vision.map { [$0] } ?? []) { try? FileManager.default.removeItem(atPath: p) } }
        _ = try Converter.run(ConvertOptions(source: o.source, output: text, mmprojOutput: vision,
                                             policy: try TypePolicy(type: .f16), threads: Threads.count), note: note)
        let textExists = FileManager.default.fileExists(atPath: text)
        guard textExists || vision != nil else { throw ModelError("\(o.source): nothing to prune") }
        if !textExists, let vision {
            // A vision encoder checkpoint (CLIP, SigLIP, DINOv2): its tower is the whole model.
            var v = o
            v.output = o.mmprojOutput!
            return try run(v, gguf: vision, mmproj: nil, note: note)
        }
        return try run(o, gguf: text, mmproj: vision, note: note)
    }

    static func run(_ o: Options, gguf source: String, mmproj: String?, note: (String) -> Void) throws -> Report {
        let file = try GGUFFile(path: source)
        // An mmproj on its own: the tower is what is pruned.
        if try file.metadata.string(GGUFKey.General.architecture) == "clip" {
            guard mmproj == nil else { throw ModelError("\(source) is a vision file; give the decoder first and the mmproj with --mmproj") }
            let (layers, tower) = try visionLayers(o, file: file, note: note)
            let plan = try StructuredPruning.plan(layers, target: o.target, allocation: o.allocation)
            let stats = tower.statistics
            try writeAllOrNothing([o.output]) { _, temp in
                try writeVision(file, config: tower.config, plan: plan, statistics: stats, policy: o.policy, to: temp)
            }
            return Report(plan: plan, config: nil, vision: tower.config, calibrationTokens: 0, calibrationImages: stats.count > 0 ? o.images : 0,
                          parametersBefore: parameters(file), parametersAfter: try parameters(GGUFFile(path: o.output)))
        }
        let config = try LlamaConfig(metadata: file.metadata)
        let session = try Session(model: source, options: SessionOptions(contextLength: o.sequenceLength,
                                                                          batch: min(128, o.sequenceLength), kvCache: .f32))
        guard let model = session.model as? LlamaModel else { throw ModelError("\(o.source): pruning takes Llama-family decoders") }

        // Calibration: the channel statistics of the o_proj and down_proj inputs.
        let sequences = try calibrationSequences(o, session: session)
        let statistics = ActivationStatistics(config: config)
        model.statistics = statistics
        defer { model.statistics = nil }
        for s in sequences {
            session.reset()
            _ = try model.prefill(embeddings: try model.embeddings(s), lastOnly: true)
        }
        session.reset()
        note("calibration: \(sequences.count) sequences, \(statistics.count) tokens")

        let norms = try projectionNorms(file, layers: config.layers, output: "attn_output", prefix: "blk")
        var layers = StructuredPruning.layers(config: config, statistics: statistics, outputColumnNorms: norms.output,
                                              downColumnNorms: norms.down, neuronBlock: norms.neuronBlock)
        // The decoder keeps the proxy sensitivity (1 / its layer's residual mean square): measured sensitivities
        // (logit error or KL on the calibration probe) pruned SmolLM2 worse than uniform; the proxy, better.
        // The tower, calibrated on images, joins the same ranking: modal-adaptive allocation.
        var visionFile: GGUFFile?, tower: (config: VisionConfig, statistics: ActivationStatistics)?
        if let mmproj {
            let f = try GGUFFile(path: mmproj)
            let (v, t) = try visionLayers(o, file: f, note: note)
            layers += v
            (visionFile, tower) = (f, t)
        }
        let plan = try StructuredPruning.plan(layers, target: o.target, allocation: o.allocation)
        var outputs = [o.output]
        if let out = o.mmprojOutput, tower != nil { outputs.append(out) }
        try writeAllOrNothing(outputs) { i, temp in
            if i == 0 {
                try write(file, config: config, plan: plan, statistics: statistics, policy: o.policy, to: temp)
            } else if let visionFile, let tower {
                try writeVision(visionFile, config: tower.config, plan: plan, statistics: tower.statistics, policy: o.policy, to: temp)
            }
        }
        var before = parameters(file), after = try parameters(GGUFFile(path: o.output))
        if let visionFile, let out = o.mmprojOutput {
            before += parameters(visionFile)
            after += try parameters(GGUFFile(path: out))
        }
        return Report(plan: plan, config: config, vision: tower?.config, calibrationTokens: statistics.count,
                      calibrationImages: tower == nil ? 0 : o.images, parametersBefore: before, parametersAfter: after)
    }

    static func parameters(_ file: GGUFFile) -> Int { file.tensors.reduce(0) { $0 + $1.elementCount } }

    /// Writes every output to a temporary file, then renames them all into place: both files or neither.
    static func writeAllOrNothing(_ paths: [String], _ write: (Int, String) throws -> Void) throws {
        _ = try Converter.writeAllOrNothing(paths) { i, temp in try write(i, temp) }
    }

    /// Σ‖a − b‖² / Σ‖b‖² over all outputs (a tower's features).
    static func relativeSquaredError(_ a: [[Float]], _ b: [[Float]]) -> Double {
        var e = 0.0, energy = 0.0
        for (x, y) in zip(a, b) {
            for (u, v) in zip(x, y) { e += (Double(u) - Double(v)) * (Double(u) - Double(v)); energy += Double(v) * Double(v) }
        }
        return e / max(energy, .leastNormalMagnitude)
    }

    /// Each tower layer's sensitivity, measured (see `StructuredPruning`): for heads and for neurons, the
    /// lowest-scored `fraction` of the layer's are held at their calibration means while `outputs` runs the probe
    /// set; the relative squared error of those outputs against the unpruned ones, per unit of score removed, is the
    /// layer's sensitivity for that kind. One probe run per layer and kind.
    static func measureSensitivity(_ layers: inout [StructuredPruning.Layer], statistics s: ActivationStatistics,
                                   channelsPerGroup: (Int) -> Int, fraction: Double, note: (String) -> Void,
                                   outputs: (ChannelOverrides?) throws -> [[Float]]) throws {
        let reference = try outputs(nil)
        let n = s.count
        func error(_ overrides: ChannelOverrides) throws -> Double { relativeSquaredError(try outputs(overrides), reference) }
        for i in layers.indices {
            let layer = layers[i], l = layer.index
            // Groups: the lowest-scored share, at least one, never all.
            let groups = (0 ..< layer.groupScores.count).sorted { (layer.groupScores[$0], $0) < (layer.groupScores[$1], $1) }
                .prefix(min(layer.groupScores.count - 1, max(1, Int((fraction * Double(layer.groupScores.count)).rounded()))))
            if !groups.isEmpty {
                let overrides = ChannelOverrides(layers: s.attention.count), width = channelsPerGroup(l)
                for g in groups {
                    for j in (g * width) ..< ((g + 1) * width) {
                        overrides.attention[l].append((j, Float(s.attention[l].mean(j, count: n))))
                    }
                }
                let predicted = groups.reduce(0.0) { $0 + layer.groupScores[$1] }
                layers[i].groupSensitivity = try error(overrides) / max(predicted, .leastNormalMagnitude)
            }
            let neurons = (0 ..< layer.neuronScores.count).sorted { (layer.neuronScores[$0], $0) < (layer.neuronScores[$1], $1) }
                .prefix(max(1, Int((fraction * Double(layer.neuronScores.count)).rounded())))
            let overrides = ChannelOverrides(layers: s.feedForward.count)
            for j in neurons { overrides.feedForward[l].append((j, Float(s.feedForward[l].mean(j, count: n)))) }
            let predicted = neurons.reduce(0.0) { $0 + layer.neuronScores[$1] }
            layers[i].neuronSensitivity = try error(overrides) / max(predicted, .leastNormalMagnitude)
        }
        note("sensitivity: \(layers.count) layers × 2 probe runs")
    }

    /// The tower of an mmproj (with or without a projector: a bare CLIP, SigLIP or DINOv2 encoder is fine) and the
    /// family that cuts and preprocesses its images.
    public static func tower(_ file: GGUFFile) throws -> (VisionEncoder, any VLMFamily) {
        let config = try VisionConfig(metadata: file.metadata)
        guard !config.family.isQwen else {
            throw ModelError("\(file.path): pruning takes CLIP, SigLIP and DINOv2 towers (not \(config.family.rawValue))")
        }
        let encoder = try VisionEncoder(file: file)
        let name = try file.metadata.string(GGUFKey.Vision.projectorType, default: Projector.Kind.mlp.rawValue)
        let family = try VLMFamilies.make(metadata: file.metadata, encoder: encoder.config, projector: Projector.Kind(rawValue: name) ?? .mlp)
        return (encoder, family)
    }

    /// The tower's layers scored on calibration images: each image cut and preprocessed as the mmproj's family
    /// does, through the tower with the statistics hooked in.
    static func visionLayers(_ o: Options, file: GGUFFile, note: (String) -> Void) throws
        -> ([StructuredPruning.Layer], (config: VisionConfig, statistics: ActivationStatistics)) {
        let (encoder, family) = try tower(file)
        let c = encoder.config
        let statistics = ActivationStatistics(vision: c)
        encoder.statistics = statistics
        defer { encoder.statistics = nil }
        let images = o.calibrationImages.isEmpty
            ? CalibrationImages.builtIn(count: o.images, seed: o.seed)
            : try o.calibrationImages.prefix(o.images).map { try ImageDecoder.decode(file: $0) }
        var crops = 0
        for image in images {
            for crop in family.crops(of: image) {
                let prepared = try family.processor.prepare(crop)
                _ = try encoder(pixels: prepared.normalizedCHW(mean: family.processor.mean, std: family.processor.std),
                                height: prepared.height, width: prepared.width)
                crops += 1
            }
        }
        note("vision calibration: \(images.count) images, \(crops) crops, \(statistics.count) tokens")
        let norms = try projectionNorms(file, layers: c.blockCount, output: "attn_out", prefix: "v.blk")
        var layers = StructuredPruning.layers(vision: c, statistics: statistics, outputColumnNorms: norms.output,
                                              downColumnNorms: norms.down, neuronBlock: norms.neuronBlock)
        encoder.statistics = nil
        if o.allocation == .adaptive, o.target > 0 {
            // The tower's output as the projector reads it: after the final norm where the file has one.
            // 4 crops, spread over the calibration images and their crops (a SmolVLM image alone has 13).
            let all = images.flatMap { family.crops(of: $0) }
            let step = max(1, all.count / 4)
            let probe = try stride(from: 0, to: all.count, by: step).prefix(4).map { i -> (pixels: [Float], height: Int, width: Int) in
                let prepared = try family.processor.prepare(all[i])
                return (prepared.normalizedCHW(mean: family.processor.mean, std: family.processor.std), prepared.height, prepared.width)
            }
            try measureSensitivity(&layers, statistics: statistics, channelsPerGroup: { _ in c.headDim }, fraction: o.target,
                                   note: note) { overrides in
                encoder.overrides = overrides
                defer { encoder.overrides = nil }
                return try probe.map { p in
                    let out = try encoder(pixels: p.pixels, height: p.height, width: p.width)
                    return out.normalized ?? out.features
                }
            }
        }
        return (layers, (c, statistics))
    }

    /// Calibration token sequences: cut from the given text, or written by the model itself (top-40 sampling at
    /// temperature 1 from a few everyday openings, seeded), so no data has to ship.
    static func calibrationSequences(_ o: Options, session: Session) throws -> [[Int32]] {
        let n = o.sequenceLength
        if let text = o.calibrationText {
            let tokens = session.tokenizer.encode(text, addSpecial: false, parseSpecial: false)
            let count = min(o.sequences, tokens.count / n)
            guard count >= 1 else { throw ModelError("the calibration text has \(tokens.count) tokens, fewer than one sequence of \(n)") }
            return (0..<count).map { Array(tokens[($0 * n)..<(($0 + 1) * n)]) }
        }
        let openings = ["The", "In the morning", "Once upon a time", "Scientists have", "Here is a recipe",
                        "The history of", "How to", "My favourite", "def main():", "Dear team,", "A new study", "When"]
        var rng = SeededRandom(seed: o.seed)
        var out: [[Int32]] = []
        for i in 0..<o.sequences {
            session.reset()
            var ids = session.tokenizer.addBOS ? session.tokenizer.bos.map { [$0] } ?? [] : []
            ids += session.tokenizer.encode(openings[i % openings.count], addSpecial: false)
            try session.prefill([.tokens(ids)], addBOS: false)
            while ids.count < n {
                let next = sample(session.lastLogits, rng: &rng)
                ids.append(next)
                if ids.count < n { try session.decode(next) }
            }
            out.append(ids)
        }
        session.reset()
        return out
    }

    /// Top-40, temperature 1.
    static func sample(_ logits: [Float], rng: inout SeededRandom) -> Int32 {
        let top = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(40)
        let m = Double(logits[top.first!])
        let weights = top.map { exp(Double(logits[$0]) - m) }
        var r = Double(rng.next() >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (i, w) in zip(top, weights) {
            r -= w
            if r <= 0 { return Int32(i) }
        }
        return Int32(top.last!)
    }

    static func tensor(_ file: GGUFFile, _ name: String) throws -> GGUFTensorInfo {
        guard let t = file.tensorInfo(name) else { throw ModelError("\(file.path): no tensor '\(name)'") }
        return t
    }

    /// Per layer, the column norms of the attention output projection (`output`) and of ffn_down under
    /// `prefix`.N, and the neuron block kept counts are multiples of (32, or ffn_down's type block if larger).
    static func projectionNorms(_ file: GGUFFile, layers: Int, output: String, prefix: String) throws
        -> (output: [[Double]], down: [[Double]], neuronBlock: Int) {
        var outputNorms: [[Double]] = [], downNorms: [[Double]] = []
        for l in 0..<layers {
            outputNorms.append(try columnSquaredNorms(file, "\(prefix).\(l).\(output).weight"))
            downNorms.append(try columnSquaredNorms(file, "\(prefix).\(l).ffn_down.weight"))
        }
        let downType = try tensor(file, "\(prefix).0.ffn_down.weight").type
        return (outputNorms, downNorms, max(32, downType.blockElements))
    }

    /// ‖W[:, j]‖² for every input column j of a [rows = outputs, row length = inputs] matrix.
    static func columnSquaredNorms(_ file: GGUFFile, _ name: String) throws -> [Double] {
        let t = try tensor(file, name)
        let cols = t.dims[0], rows = t.elementCount / cols
        let w = try t.type.dequantize(file.bytes(of: t), count: t.elementCount)
        var norms = [Double](repeating: 0, count: cols)
        for r in 0..<rows { for j in 0..<cols { norms[j] += Double(w[r * cols + j]) * Double(w[r * cols + j]) } }
        return norms
    }

    // MARK: writing

    /// How one source tensor becomes its pruned self.
    enum Slice {
        case copy
        /// Keep these output rows (q/k/v, gate/up and their biases).
        case rows([Int])
        /// Keep these input columns (o / attn_out, down); the removed columns' inputs, held at their means, are folded
        /// into `bias`: b + Σ_{removed j} W[:, j] · mean(x_j) (a new bias after the matrix when the file has none).
        case columns([Int], bias: (name: String, means: [Double]))
    }

    /// The decoder's slices and per-layer counts. llama.cpp's llama loader takes one head count for all layers; its
    /// "deci" architecture is the same decoder with per-layer counts, so a pruned llama file is written as deci (keys
    /// renamed); qwen2 stays qwen2 (its rotary layout differs; vzquant runs it, llama.cpp's qwen2 loader does not
    /// take per-layer heads).
    static func write(_ file: GGUFFile, config c: LlamaConfig, plan: StructuredPruning.Plan,
                      statistics: ActivationStatistics, policy: TypePolicy? = nil, to path: String) throws {
        let hd = c.headDim, n = statistics.count
        var slices: [String: Slice] = [:]
        let layers = plan.layers(.text)
        for (l, p) in layers.enumerated() {
            let perGroup = c.heads(layer: l) / c.kvHeads(layer: l)
            let qRows = p.keptGroups.flatMap { g in (g * perGroup * hd) ..< ((g + 1) * perGroup * hd) }
            let kvRows = p.keptGroups.flatMap { g in (g * hd) ..< ((g + 1) * hd) }
            let attnMeans = (0 ..< c.qDim(layer: l)).map { statistics.attention[l].mean($0, count: n) }
            let ffnMeans = (0 ..< c.feedForward(layer: l)).map { statistics.feedForward[l].mean($0, count: n) }
            slices["blk.\(l).attn_q.weight"] = .rows(qRows)
            slices["blk.\(l).attn_q.bias"] = .rows(qRows)
            for t in ["attn_k", "attn_v"] {
                slices["blk.\(l).\(t).weight"] = .rows(kvRows)
                slices["blk.\(l).\(t).bias"] = .rows(kvRows)
            }
            slices["blk.\(l).attn_output.weight"] = .columns(qRows, bias: ("blk.\(l).attn_output.bias", attnMeans))
            slices["blk.\(l).ffn_gate.weight"] = .rows(p.keptNeurons)
            slices["blk.\(l).ffn_up.weight"] = .rows(p.keptNeurons)
            slices["blk.\(l).ffn_down.weight"] = .columns(p.keptNeurons, bias: ("blk.\(l).ffn_down.bias", ffnMeans))
        }
        let arch = c.architecture == "qwen2" ? "qwen2" : "deci"
        try writeSliced(file, slices: slices, policy: policy, groupedKV: c.kvHeads < c.heads, to: path) { writer in
            for key in file.metadata.keys where key != GGUF.alignmentKey {
                guard let v = file.metadata[key] else { continue }
                writer.metadata.set(key.hasPrefix(c.architecture + ".") ? arch + key.dropFirst(c.architecture.count) : key, v)
            }
            writer.metadata.set(GGUFKey.General.architecture, .string(arch))
            let k = GGUFKey.Decoder(arch)
            writer.metadata.set(k.headCount, .int32s(layers.enumerated().map { Int32($0.element.keptGroups.count * c.heads(layer: $0.offset) / c.kvHeads(layer: $0.offset)) }))
            writer.metadata.set(k.headCountKV, .int32s(layers.map { Int32($0.keptGroups.count) }))
            // The head size no longer follows from hidden / heads: say it (llama.cpp derives it the same way).
            writer.metadata.set(k.keyLength, .uint32(UInt32(hd)))
            writer.metadata.set(k.valueLength, .uint32(UInt32(hd)))
            writer.metadata.set(k.feedForwardLength, .int32s(layers.map { Int32($0.keptNeurons.count) }))
            describe(plan, module: .text, in: writer)
        }
    }

    /// The tower's slices (heads of headDim rows/columns, FFN neurons) and its per-block counts under vzquant keys.
    static func writeVision(_ file: GGUFFile, config c: VisionConfig, plan: StructuredPruning.Plan,
                            statistics: ActivationStatistics, policy: TypePolicy? = nil, to path: String) throws {
        let hd = c.headDim, n = statistics.count
        var slices: [String: Slice] = [:]
        let layers = plan.layers(.vision)
        for (l, p) in layers.enumerated() {
            let rows = p.keptGroups.flatMap { h in (h * hd) ..< ((h + 1) * hd) }
            let attnMeans = (0 ..< c.heads(layer: l) * hd).map { statistics.attention[l].mean($0, count: n) }
            let ffnMeans = (0 ..< c.feedForward(layer: l)).map { statistics.feedForward[l].mean($0, count: n) }
            let b = "v.blk.\(l)"
            for t in ["attn_q", "attn_k", "attn_v"] {
                slices["\(b).\(t).weight"] = .rows(rows)
                slices["\(b).\(t).bias"] = .rows(rows)
            }
            slices["\(b).attn_out.weight"] = .columns(rows, bias: ("\(b).attn_out.bias", attnMeans))
            slices["\(b).ffn_up.weight"] = .rows(p.keptNeurons)
            slices["\(b).ffn_up.bias"] = .rows(p.keptNeurons)
            slices["\(b).ffn_down.weight"] = .columns(p.keptNeurons, bias: ("\(b).ffn_down.bias", ffnMeans))
        }
        try writeSliced(file, slices: slices, policy: policy, groupedKV: false, to: path) { writer in
            for key in file.metadata.keys where key != GGUF.alignmentKey {
                if let v = file.metadata[key] { writer.metadata.set(key, v) }
            }
            writer.metadata.set(GGUFKey.VZQ.visionLayerHeads, .int32s(layers.map { Int32($0.keptGroups.count) }))
            writer.metadata.set(GGUFKey.VZQ.visionLayerFeedForward, .int32s(layers.map { Int32($0.keptNeurons.count) }))
            describe(plan, module: .vision, in: writer)
        }
    }

    static func describe(_ plan: StructuredPruning.Plan, module: StructuredPruning.Module, in writer: GGUFWriter) {
        let prefix = module == .text ? "vzquant.prune" : "vzquant.vision.prune"
        writer.metadata.set("\(prefix).criterion", .string("flap-fluctuation-bias-compensated"))
        writer.metadata.set("\(prefix).allocation", .string(plan.allocation.rawValue))
        writer.metadata.set("\(prefix).target", .float32(Float(plan.target)))
        writer.metadata.set("\(prefix).removed_fraction", .float32(Float(plan.removedFraction(module))))
    }

    /// Every tensor of `file` through its slice (new biases after their folded projections), re-typed by `policy`
    /// when given, with the metadata `describe` sets; written tensor by tensor.
    static func writeSliced(_ file: GGUFFile, slices: [String: Slice], policy: TypePolicy?, groupedKV: Bool, to path: String,
                            metadata: (GGUFWriter) -> Void) throws {
        struct Out { let name: String; let dims: [Int]; let type: QuantType; let make: () throws -> [UInt8] }
        var outs: [Out] = []
        // A folded projection and its bias read the same dequantized matrix, kept here between them.
        var dequantized: (name: String, values: [Float])?
        func values(of t: GGUFTensorInfo) throws -> [Float] {
            if let d = dequantized, d.name == t.name { return d.values }
            let w = try t.type.dequantize(file.bytes(of: t), count: t.elementCount)
            dequantized = (t.name, w)
            return w
        }
        // b[r] += Σ over removed columns j of W[:, j] · mean(x_j): the removed inputs held at their mean.
        func compensation(_ weight: GGUFTensorInfo, keep: [Int], means: [Double]) throws -> [Double] {
            let w = try values(of: weight)
            let cols = weight.dims[0], rows = weight.elementCount / cols, kept = Set(keep)
            var b = [Double](repeating: 0, count: rows)
            for r in 0..<rows { for j in 0..<cols where !kept.contains(j) { b[r] += Double(w[r * cols + j]) * means[j] } }
            return b
        }
        var folded: [String: (weight: GGUFTensorInfo, keep: [Int], means: [Double])] = [:]
        for (name, slice) in slices {
            if case let .columns(keep, bias) = slice, let t = file.tensorInfo(name) { folded[bias.name] = (t, keep, bias.means) }
        }
        for t in file.tensors {
            if let f = folded[t.name] {
                // An existing bias: the compensation is added to it (vision towers).
                outs.append(Out(name: t.name, dims: t.dims, type: .f32) {
                    let base = try t.type.dequantize(file.bytes(of: t), count: t.elementCount)
                    let b = try compensation(f.weight, keep: f.keep, means: f.means)
                    dequantized = nil
                    return zip(base, b).map { Float(Double($0) + $1) }.withUnsafeBytes { Array($0) }
                })
                continue
            }
            switch slices[t.name] ?? .copy {
            case .copy:
                outs.append(Out(name: t.name, dims: t.dims, type: t.type) { Array(file.bytes(of: t)) })
            case let .rows(keep):
                let cols = t.dims[0]
                let dims = t.dims.count == 1 ? [keep.count] : [cols, keep.count]
                let rowLength = t.dims.count == 1 ? 1 : cols
                let type = t.dims.count == 1 ? t.type : fitting(t.type, cols: cols)
                outs.append(Out(name: t.name, dims: dims, type: type) {
                    let w = try t.type.dequantize(file.bytes(of: t), count: t.elementCount)
                    var out = [Float]()
                    out.reserveCapacity(keep.count * rowLength)
                    for r in keep { out += w[(r * rowLength) ..< ((r + 1) * rowLength)] }
                    return try type.quantize(out)
                })
            case let .columns(keep, bias):
                let cols = t.dims[0], rows = t.elementCount / cols
                let type = fitting(t.type, cols: keep.count)
                outs.append(Out(name: t.name, dims: [keep.count, rows], type: type) {
                    let w = try values(of: t)
                    var out = [Float](repeating: 0, count: keep.count * rows)
                    for r in 0..<rows { for (k, j) in keep.enumerated() { out[r * keep.count + k] = w[r * cols + j] } }
                    return try type.quantize(out)
                })
                if file.tensorInfo(bias.name) == nil {
                    outs.append(Out(name: bias.name, dims: [rows], type: .f32) {
                        let b = try compensation(t, keep: keep, means: bias.means)
                        dequantized = nil
                        return b.map { Float($0) }.withUnsafeBytes { Array($0) }
                    })
                }
            }
        }
        if let policy {
            // Every tensor through the converter's choice for its role and (pruned) shape; data re-quantized from f32.
            let mix = MixContext(tensorNames: outs.map(\.name), groupedKV: groupedKV)
            outs = outs.map { o in
                let role: TensorRole = o.name == "token_embd.weight" ? .tokenEmbedding
                    : o.name.hasPrefix("v.patch_embd") ? .patchEmbedding
                    : o.name.hasPrefix("v.position_embd") ? .positionEmbedding
                    : o.name == "v.class_embd" ? .classEmbedding
                    : o.dims.count >= 2 ? .matrix : .vector
                let (type, _) = policy.choose(role: role, dims: o.dims, name: o.name, file: mix)
                guard type != o.type else { return o }
                return Out(name: o.name, dims: o.dims, type: type) {
                    let bytes = try o.make()
                    let count = o.dims.reduce(1, *)
                    let values = try bytes.withUnsafeBytes { try o.type.dequantize($0, count: count) }
                    return try type.quantize(values)
                }
            }
        }
        let writer = GGUFWriter(alignment: file.alignment)
        metadata(writer)
        if let policy { writer.metadata.set(GGUFKey.General.fileType, .uint32(policy.fileType)) }
        for o in outs { try writer.addTensor(name: o.name, dims: o.dims, type: o.type) }
        var index = 0
        try writer.write(to: path) { info, sink in
            let bytes = try outs[index].make()
            index += 1
            guard bytes.count == info.byteCount else {
                throw ModelError("pruned tensor '\(info.name)': \(bytes.count) bytes, expected \(info.byteCount)")
            }
            try sink.write(bytes)
        }
    }

    /// The tensor's own type when its block divides the new row length, else q8_0 (32), else f16.
    static func fitting(_ type: QuantType, cols: Int) -> QuantType {
        if cols % type.blockElements == 0 { return type }
        return cols % QuantType.q8_0.blockElements == 0 ? .q8_0 : .f16
    }
}

extension FileManager {
    func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}

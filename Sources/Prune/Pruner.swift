import Foundation
import VZQConvert
import VZQFormats
import VZQKernels
import VZQModels
import VZQRuntime
import VZQSupport
import VZQText

/// `vzquant prune`: calibrate a GGUF decoder, score and allocate (`StructuredPruning`), and write the pruned file
/// with the structures physically gone — per-layer head / KV-head / FFN counts as llama.cpp's per-layer arrays,
/// the bias compensation as `attn_output.bias` / `ffn_down.bias`, sliced matrices re-quantized in their own type
/// (or all tensors in `policy`'s) — tensor by tensor, atomically.
public enum Pruner {
    public struct Options: Sendable {
        public var source: String
        public var output: String
        public var target: Double
        public var allocation: StructuredPruning.Allocation = .adaptive
        /// A UTF-8 text whose tokens are cut into calibration sequences; nil: sequences the model writes itself.
        public var calibrationText: String?
        public var sequences = 16
        public var sequenceLength = 128
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
        public var config: LlamaConfig
        public var calibrationTokens: Int
        public var parametersBefore: Int
        public var parametersAfter: Int
    }

    public static func run(_ o: Options, note: (String) -> Void = { _ in }) throws -> Report {
        try OutputPath.validate(o.output)
        guard (0 ..< 1).contains(o.target) else { throw ModelError("the pruning target must be in [0, 1), got \(o.target)") }
        guard o.sequences >= 1, o.sequenceLength >= 8 else {
            throw ModelError("calibration needs at least 1 sequence of at least 8 tokens (got \(o.sequences) × \(o.sequenceLength))")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: o.source, isDirectory: &isDirectory), isDirectory.boolValue else {
            return try run(o, gguf: o.source, note: note)
        }
        // A Hugging Face checkpoint: converted to an f16 GGUF beside the output first (removed afterwards), so
        // calibration and slicing read one format; --type then decides the output's types (default: f16).
        let directory = (o.output as NSString).deletingLastPathComponent
        let converted = (directory.isEmpty ? "" : directory + "/") + ".\((o.output as NSString).lastPathComponent).source-\(getpid()).gguf"
        defer { try? FileManager.default.removeItem(atPath: converted) }
        _ = try Converter.run(ConvertOptions(source: o.source, output: converted, mmprojOutput: nil,
                                             policy: try TypePolicy(type: .f16), threads: Threads.count), note: note)
        return try run(o, gguf: converted, note: note)
    }

    static func run(_ o: Options, gguf source: String, note: (String) -> Void) throws -> Report {
        let file = try GGUFFile(path: source)
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

        var outputNorms: [[Double]] = [], downNorms: [[Double]] = []
        for l in 0..<config.layers {
            outputNorms.append(try columnSquaredNorms(file, "blk.\(l).attn_output.weight"))
            downNorms.append(try columnSquaredNorms(file, "blk.\(l).ffn_down.weight"))
        }
        let scores = StructuredPruning.scores(config: config, statistics: statistics, outputColumnNorms: outputNorms,
                                              downColumnNorms: downNorms)
        let downType = try tensor(file, "blk.0.ffn_down.weight").type
        let plan = try StructuredPruning.plan(config: config, scores: scores, target: o.target, allocation: o.allocation,
                                              neuronBlock: max(32, downType.blockElements))
        try write(file, config: config, plan: plan, statistics: statistics, policy: o.policy, to: o.output)
        let before = file.tensors.reduce(0) { $0 + $1.elementCount }
        let after = try GGUFFile(path: o.output).tensors.reduce(0) { $0 + $1.elementCount }
        return Report(plan: plan, config: config, calibrationTokens: statistics.count, parametersBefore: before,
                      parametersAfter: after)
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
        case rows([Int])        // keep these output rows (q/k/v, gate/up, their biases)
        case columns([Int], bias: (name: String, means: [Double])?)  // keep these input columns (o, down), fold the rest
    }

    static func write(_ file: GGUFFile, config c: LlamaConfig, plan: StructuredPruning.Plan,
                      statistics: ActivationStatistics, policy: TypePolicy? = nil, to path: String) throws {
        let hd = c.headDim
        var slices: [String: Slice] = [:]
        for (l, p) in plan.layers.enumerated() {
            let perGroup = c.heads(layer: l) / c.kvHeads(layer: l)
            let qRows = p.keptGroups.flatMap { g in (g * perGroup * hd) ..< ((g + 1) * perGroup * hd) }
            let kvRows = p.keptGroups.flatMap { g in (g * hd) ..< ((g + 1) * hd) }
            let n = statistics.count
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

        // The output's tensors: each source tensor (its slice), and after each folded projection its bias.
        struct Out { let name: String; let dims: [Int]; let type: QuantType; let make: () throws -> [UInt8] }
        var outs: [Out] = []
        // A folded projection is written just before its bias: both read the same dequantized matrix, kept here.
        var dequantized: (name: String, values: [Float])?
        func values(of t: GGUFTensorInfo) throws -> [Float] {
            if let d = dequantized, d.name == t.name { return d.values }
            let w = try t.type.dequantize(file.bytes(of: t), count: t.elementCount)
            dequantized = (t.name, w)
            return w
        }
        for t in file.tensors {
            if t.name.hasSuffix("attn_output.bias") || t.name.hasSuffix("ffn_down.bias") {
                throw ModelError("\(file.path): '\(t.name)' exists already; pruning a model with output biases is not supported")
            }
            let slice = slices[t.name] ?? .copy
            switch slice {
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
                if let bias {
                    let kept = Set(keep)
                    outs.append(Out(name: bias.name, dims: [rows], type: .f32) {
                        // b = Σ over removed columns j of W[:, j] · mean(x_j): the removed inputs held at their mean.
                        let w = try values(of: t)
                        dequantized = nil
                        var b = [Double](repeating: 0, count: rows)
                        for r in 0..<rows { for j in 0..<cols where !kept.contains(j) { b[r] += Double(w[r * cols + j]) * bias.means[j] } }
                        return b.map { Float($0) }.withUnsafeBytes { Array($0) }
                    })
                }
            }
        }

        // llama.cpp's llama loader takes one head count for all layers; its "deci" architecture is the same
        // decoder with per-layer counts. A pruned llama file is written as deci (keys renamed); qwen2 stays qwen2
        // (its rotary layout differs; vzquant runs it, llama.cpp's qwen2 loader does not take per-layer heads).
        let arch = c.architecture == "qwen2" ? "qwen2" : "deci"
        if let policy {
            // Every tensor through the converter's choice for its role and (pruned) shape; data re-quantized from f32.
            let mix = MixContext(tensorNames: outs.map(\.name), groupedKV: c.kvHeads < c.heads)
            outs = try outs.map { o in
                let role: TensorRole = o.name == "token_embd.weight" ? .tokenEmbedding : o.dims.count >= 2 ? .matrix : .vector
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
        for key in file.metadata.keys where key != GGUF.alignmentKey {
            guard let v = file.metadata[key] else { continue }
            if key.hasPrefix(c.architecture + ".") {
                writer.metadata.set(arch + key.dropFirst(c.architecture.count), v)
            } else {
                writer.metadata.set(key, v)
            }
        }
        writer.metadata.set(GGUFKey.General.architecture, .string(arch))
        let k = GGUFKey.Decoder(arch)
        writer.metadata.set(k.headCount, .int32s(plan.layers.enumerated().map { Int32($0.element.keptGroups.count * c.heads(layer: $0.offset) / c.kvHeads(layer: $0.offset)) }))
        writer.metadata.set(k.headCountKV, .int32s(plan.layers.map { Int32($0.keptGroups.count) }))
        // The head size no longer follows from hidden / heads: say it (llama.cpp derives it the same way).
        writer.metadata.set(k.keyLength, .uint32(UInt32(hd)))
        writer.metadata.set(k.valueLength, .uint32(UInt32(hd)))
        writer.metadata.set(k.feedForwardLength, .int32s(plan.layers.map { Int32($0.keptNeurons.count) }))
        if let policy { writer.metadata.set(GGUFKey.General.fileType, .uint32(policy.fileType)) }
        writer.metadata.set("vzquant.prune.criterion", .string("flap-fluctuation-bias-compensated"))
        writer.metadata.set("vzquant.prune.allocation", .string(plan.allocation.rawValue))
        writer.metadata.set("vzquant.prune.target", .float32(Float(plan.target)))
        writer.metadata.set("vzquant.prune.removed_fraction", .float32(Float(plan.removedFraction)))
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

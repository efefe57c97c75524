import ArgumentParser
import Foundation
import VZQuant

/// `vzquant prune SRC.gguf -o OUT.gguf --target 0.2 [--allocation adaptive|uniform] [--calibration TEXT]`.
struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove whole attention-head groups and FFN neurons from a GGUF decoder (training-free, FLAP criterion).",
        discussion: """
            The target is the fraction of prunable parameters (q, k, v, o, gate, up, down) removed. Heads go by whole \
            KV groups, scored with neurons by FLAP's fluctuation metric (variance of a channel's input × the squared \
            norm of its output-projection column) on calibration tokens, with the removed channels' means folded into \
            new attn_output / ffn_down biases. --allocation adaptive (default) ranks standardised scores over the \
            whole model; uniform prunes every layer alike. The output keeps each tensor's type and carries per-layer \
            head, KV-head and FFN counts as llama.cpp's per-layer arrays.
            """
    )

    @Argument(help: "Source: a GGUF decoder (llama, mistral, deci, qwen2) or a Hugging Face checkpoint directory (converted to f16 on the way).")
    var source: String

    @Option(name: [.customShort("o"), .long], help: "Output GGUF.")
    var output: String

    @Option(name: .long, help: "Fraction of prunable parameters to remove, in [0, 1).")
    var target: Double

    @Option(name: .long, help: "adaptive (standardised scores ranked over the model) or uniform (every layer alike).")
    var allocation = "adaptive"

    @Option(name: .long, help: "UTF-8 text for calibration (default: sequences the model writes itself, seeded).")
    var calibration: String?

    @Option(name: .long, help: "Calibration sequences.")
    var sequences = 16

    @Option(name: .customLong("sequence-length"), help: "Tokens per calibration sequence.")
    var sequenceLength = 128

    @Option(name: .long, help: "Seed of the self-written calibration.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Re-quantize the output as convert --type does (q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, the mixes q4_k_m, q4_k_s, q5_k_m, q5_k_s, f16, f32); default: each tensor keeps its type.")
    var type: String?

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        guard (0 ..< 1).contains(target) else { throw ValidationError("--target must be in [0, 1)") }
        guard StructuredPruning.Allocation(rawValue: allocation) != nil else { throw ValidationError("--allocation must be adaptive or uniform") }
        if let type { do { _ = try TypePolicy(named: type) } catch { throw ValidationError("--type: \(error)") } }
        guard sequences >= 1, sequenceLength >= 8 else { throw ValidationError("--sequences must be ≥ 1 and --sequence-length ≥ 8") }
    }

    func run() throws {
        try compute.apply()
        do {
            var o = Pruner.Options(source: source, output: output, target: target)
            o.allocation = StructuredPruning.Allocation(rawValue: allocation) ?? .adaptive
            o.sequences = sequences
            o.sequenceLength = sequenceLength
            o.seed = seed
            o.policy = try type.map { try TypePolicy(named: $0) }
            if let calibration {
                let bytes = try InputFile.read(calibration, limit: Limits.textFileBytes)
                guard let text = String(validating: bytes, as: UTF8.self) else { fail("\(calibration): not UTF-8 text") }
                o.calibrationText = text
            }
            let r = try Pruner.run(o) { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
            let c = r.config
            print(String(format: "%@: removed %.1f %% of %d prunable parameters (%@), %d → %d parameters",
                         output, 100 * r.plan.removedFraction, r.plan.prunableParameters, r.plan.allocation.rawValue,
                         r.parametersBefore, r.parametersAfter))
            print("layer  kv groups  heads  ffn")
            for (l, p) in r.plan.layers.enumerated() {
                let perGroup = c.heads(layer: l) / c.kvHeads(layer: l)
                print(String(format: "%5d  %2d/%-2d      %2d/%-2d  %5d/%-5d", l, p.keptGroups.count, c.kvHeads(layer: l),
                             p.keptGroups.count * perGroup, c.heads(layer: l), p.keptNeurons.count, c.feedForward(layer: l)))
            }
        } catch {
            fail("\(error)")
        }
    }
}

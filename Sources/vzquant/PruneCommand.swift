import ArgumentParser
import Foundation
import VZQuant

/// `vzquant prune SRC -o OUT --target 0.2 [--mmproj MM --mmproj-out OUT_MM] [--allocation adaptive|uniform]
/// [--calibration TEXT] [--calibration-images DIR]`.
struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove whole attention heads and FFN neurons from a decoder and/or its vision tower (training-free, FLAP criterion, modal-adaptive).",
        discussion: """
            The target is the fraction of prunable parameters (q, k, v, o and the FFN matrices of the decoder, the \
            tower, or both) removed. Decoder heads go by whole KV groups, a tower's head by head; all are scored with \
            the FFN neurons by FLAP's fluctuation metric (variance of a channel's input × the squared norm of its \
            output-projection column) on calibration tokens and images, with the removed channels' means folded into \
            the output projections' biases. --allocation adaptive (default) ranks the relative output error per \
            parameter over every layer of both modalities, so the decoder and the tower end up pruned to different, \
            measured degrees; uniform prunes every layer alike. The decoder keeps llama.cpp's per-layer head / KV-head \
            / FFN arrays; the tower its per-block counts under vzquant.vision.layer_*. SRC may also be an mmproj alone \
            (CLIP, SigLIP, DINOv2: -o names the pruned mmproj).
            """
    )

    @Argument(help: "Source: a GGUF decoder (llama, mistral, deci, qwen2), an mmproj GGUF, or a Hugging Face checkpoint directory (converted to f16 on the way).")
    var source: String

    @Option(name: [.customShort("o"), .long], help: "Output GGUF.")
    var output: String

    @Option(name: .long, help: "The decoder's mmproj, pruned with it (modal-adaptive); needs --mmproj-out.")
    var mmproj: String?

    @Option(name: .customLong("mmproj-out"), help: "Where the pruned mmproj goes (with --mmproj, or a Hugging Face VLM source).")
    var mmprojOutput: String?

    @Option(name: .long, help: "Fraction of prunable parameters to remove, in [0, 1).")
    var target: Double

    @Option(name: .long, help: "adaptive (standardised scores ranked over the model) or uniform (every layer alike).")
    var allocation = "adaptive"

    @Option(name: .long, help: "UTF-8 text for calibration (default: sequences the model writes itself, seeded).")
    var calibration: String?

    @Option(name: .long, help: "Calibration sequences.")
    var sequences = 16

    @Option(name: .customLong("calibration-images"), help: "A directory of JPEG/PNG calibration images for the vision tower (default: built-in generated scenes).")
    var calibrationImages: String?

    @Option(name: .long, help: "Calibration images used.")
    var images = 16

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
        guard images >= 1 else { throw ValidationError("--images must be ≥ 1") }
        if mmproj != nil, mmprojOutput == nil { throw ValidationError("--mmproj needs --mmproj-out (where the pruned vision file goes)") }
    }

    func run() throws {
        try compute.apply()
        do {
            var o = Pruner.Options(source: source, output: output, target: target)
            o.allocation = StructuredPruning.Allocation(rawValue: allocation) ?? .adaptive
            o.sequences = sequences
            o.sequenceLength = sequenceLength
            o.seed = seed
            (o.mmproj, o.mmprojOutput, o.images) = (mmproj, mmprojOutput, images)
            if let calibrationImages {
                let names = try FileManager.default.contentsOfDirectory(atPath: calibrationImages).sorted()
                o.calibrationImages = names.filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }
                    .map { (calibrationImages as NSString).appendingPathComponent($0) }
                guard !o.calibrationImages.isEmpty else { fail("\(calibrationImages): no .jpg, .jpeg or .png images") }
            }
            o.policy = try type.map { try TypePolicy(named: $0) }
            if let calibration {
                let bytes = try InputFile.read(calibration, limit: Limits.textFileBytes)
                guard let text = String(validating: bytes, as: UTF8.self) else { fail("\(calibration): not UTF-8 text") }
                o.calibrationText = text
            }
            let r = try Pruner.run(o) { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
            print(String(format: "removed %.1f %% of %d prunable parameters (%@), %d → %d parameters",
                         100 * r.plan.removedFraction, r.plan.prunableParameters, r.plan.allocation.rawValue,
                         r.parametersBefore, r.parametersAfter))
            for module in [StructuredPruning.Module.text, .vision] {
                guard let totals = r.plan.modules[module] else { continue }
                print(String(format: "%@: removed %.1f %% of its %d prunable parameters",
                             module == .text ? "language model" : "vision tower", 100 * r.plan.removedFraction(module), totals.prunable))
                print(module == .text ? "layer  kv groups  heads  ffn          removed" : "block  heads  ffn          removed")
                for p in r.plan.layers(module) {
                    let perGroup = module == .text ? r.config.map { $0.heads(layer: p.index) / $0.kvHeads(layer: p.index) } ?? 1 : 1
                    let counts = module == .text
                        ? String(format: "%2d/%-2d      %2d/%-2d", p.keptGroups.count, p.groups, p.keptGroups.count * perGroup, p.groups * perGroup)
                        : String(format: "%2d/%-2d", p.keptGroups.count, p.groups)
                    print(String(format: "%5d  %@  %5d/%-5d  %5.1f %%", p.index, counts, p.keptNeurons.count, p.neurons, 100 * p.removedFraction))
                }
            }
        } catch {
            fail("\(error)")
        }
    }
}

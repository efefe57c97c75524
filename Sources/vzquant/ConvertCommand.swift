import ArgumentParser
import Foundation
import VZQuant

/// `vzquant convert SRC -o OUT.gguf [--mmproj-out MMPROJ.gguf] --type …`: Hugging Face checkpoint or GGUF → GGUF
/// files llama.cpp loads (a text model and an `mmproj` vision file).
/// `vzquant convert --preset NAME -o OUT.gguf [--mmproj-out MMPROJ.gguf] --type … [--seed S]`: a synthetic model of
/// a published architecture and size with seeded random weights (see ModelPreset), for benchmarks.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a Hugging Face model directory (or re-quantize a GGUF file) to llama.cpp GGUF files.",
        discussion: """
            Architectures: \(HFArchitecture.supportedList). For LLaVA, -o gets the text model and --mmproj-out the \
            vision tower + projector (only the layers up to vision_feature_layer). Vision encoders alone are written \
            to --mmproj-out (or -o). Types: --type applies to 2-D weights; norms, biases and position/class \
            embeddings stay f32, the patch embedding f16; the token embedding is q8_0 under 4/5-bit types unless \
            --token-embedding-type says otherwise. Tensors stream one at a time; outputs appear only when complete.

            --preset NAME instead of a source writes a model of that architecture and size with seeded random \
            weights (generated directly in the target type): \(ModelPreset.names.joined(separator: ", ")).
            """
    )

    @Argument(help: "Hugging Face model directory (config.json + *.safetensors), or a .gguf file to re-quantize.")
    var source: String?

    @Option(name: .long, help: "Write a synthetic model of this architecture instead of converting a source.")
    var preset: String?

    @Option(name: .long, help: "Seed of a --preset model's random weights (same seed, same bytes).")
    var seed: UInt64 = 0

    @Option(name: [.customShort("o"), .long], help: "Output GGUF (the text model of a VLM).")
    var output: String

    @Option(name: .customLong("mmproj-out"), help: "Output GGUF for the vision tower + projector (required for LLaVA).")
    var mmprojOut: String?

    @Option(name: .long, help: "Type of 2-D weights (\(TypePolicy.typeNames.joined(separator: ", "))); q4_k_m, q4_k_s, q5_k_m, q5_k_s and q6_k are llama.cpp's mixes.")
    var type: String = "q8_0"

    @Option(name: .customLong("token-embedding-type"), help: "Type of token_embd (default: q8_0 for q4_0/q4_1/q5_0/q5_1/q4_k/q5_k, the mix's choice for a mix, else --type).")
    var tokenEmbeddingType: String?

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        switch (source, preset) {
        case (nil, nil): throw ValidationError("give a source (model directory or .gguf file) or --preset NAME")
        case (.some, .some): throw ValidationError("give either a source or --preset, not both")
        case (nil, let name?):
            guard (try? ModelPreset.named(name)) != nil else {
                throw ValidationError("unknown preset '\(name)'; known presets: \(ModelPreset.names.joined(separator: ", "))")
            }
        default: break
        }
        do { _ = try TypePolicy(named: type) } catch { throw ValidationError("--type: \(error)") }
        if let value = tokenEmbeddingType {
            guard let t = QuantType(name: value), TypePolicy.outputTypes.contains(t) else {
                throw ValidationError("--token-embedding-type '\(value)' is not one of \(TypePolicy.outputTypes.map(\.description).joined(separator: ", "))")
            }
        }
    }

    func run() throws {
        try compute.apply()
        if let preset { return try writePreset(preset) }
        guard let source else { throw ValidationError("no source given") }
        let policy = try TypePolicy(named: type, tokenEmbeddingType: tokenEmbeddingType.flatMap(QuantType.init(name:)))
        let options = ConvertOptions(source: source, output: output, mmprojOutput: mmprojOut, policy: policy, threads: Threads.count)
        let progress = ConvertProgress.forStdout()
        do {
            let summary = try Converter.run(options, progress: progress) { note in
                FileHandle.standardError.write(Data(("note: " + note + "\n").utf8))
            }
            for line in summary.lines { print(line) }
        } catch {
            // One line, exit code 1; Converter has removed every temporary file.
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// The synthetic model of `--preset`, with progress (bytes written / total) on stderr for big ones.
    private func writePreset(_ name: String) throws {
        let embeddingType = tokenEmbeddingType.flatMap(QuantType.init(name:))
        do {
            guard let type = QuantType(name: type) else {
                throw ConvertError("presets are generated per type, not as a mix: write --type f16 and re-quantize that file with --type \(type)")
            }
            let preset = try ModelPreset.named(name)
            let plan = try SyntheticModel.plan(preset: preset, type: type, tokenEmbeddingType: embeddingType)
            let total = plan.text.tensorBytes + (mmprojOut == nil ? 0 : plan.mmproj.tensorBytes)
            let showProgress = total >= 256 << 20
            var shown = -1
            let summary = try SyntheticModel.write(preset: preset, type: type, tokenEmbeddingType: embeddingType,
                                                   textPath: output, mmprojPath: mmprojOut, seed: seed) { done, total in
                guard showProgress else { return }
                let percent = total > 0 ? done * 100 / total : 100
                guard percent != shown else { return }
                shown = percent
                let line = String(format: "\r%@: %.0f / %.0f MB (%d%%)", preset.name, Double(done) / 1e6, Double(total) / 1e6, percent)
                FileHandle.standardError.write(Data(line.utf8))
            }
            if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
            print("\(preset.name) (synthetic, seed \(seed)): \(preset.summary)")
            for line in summary.lines { print(line) }
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

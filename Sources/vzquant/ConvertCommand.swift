import ArgumentParser
import Foundation
import VZQuant

/// `vzquant convert SRC -o OUT.gguf [--mmproj-out MMPROJ.gguf] --type …`: Hugging Face checkpoint or GGUF → GGUF
/// files llama.cpp loads (a text model and an `mmproj` vision file).
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a Hugging Face model directory (or re-quantize a GGUF file) to llama.cpp GGUF files.",
        discussion: """
            Architectures: \(HFArchitecture.supportedList). For LLaVA, -o gets the text model and --mmproj-out the \
            vision tower + projector (only the layers up to vision_feature_layer). Vision encoders alone are written \
            to --mmproj-out (or -o). Types: --type applies to 2-D weights; norms, biases and position/class \
            embeddings stay f32, the patch embedding f16; the token embedding is q8_0 under --type q4_0 unless \
            --token-embedding-type says otherwise. Tensors stream one at a time; outputs appear only when complete.
            """
    )

    @Argument(help: "Hugging Face model directory (config.json + *.safetensors), or a .gguf file to re-quantize.")
    var source: String

    @Option(name: [.customShort("o"), .long], help: "Output GGUF (the text model of a VLM).")
    var output: String

    @Option(name: .customLong("mmproj-out"), help: "Output GGUF for the vision tower + projector (required for LLaVA).")
    var mmprojOut: String?

    @Option(name: .long, help: "Type of 2-D weights: q4_0, q8_0, f16, f32.")
    var type: String = "q8_0"

    @Option(name: .customLong("token-embedding-type"), help: "Type of token_embd (default: q8_0 for --type q4_0, else --type).")
    var tokenEmbeddingType: String?

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        for (flag, value) in [("--type", type), ("--token-embedding-type", tokenEmbeddingType)] {
            guard let value else { continue }
            guard let t = QuantType(name: value), TypePolicy.outputTypes.contains(t) else {
                throw ValidationError("\(flag) '\(value)' is not one of q4_0, q8_0, f16, f32")
            }
        }
    }

    func run() throws {
        try compute.apply()
        let policy = try TypePolicy(type: QuantType(name: type)!, tokenEmbeddingType: tokenEmbeddingType.flatMap(QuantType.init(name:)))
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
}

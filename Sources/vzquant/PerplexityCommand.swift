import ArgumentParser
import Foundation
import VZQuant

/// `vzquant perplexity -m MODEL.gguf -f TEXT [--ctx-size 512] [--json]`: llama-perplexity's measure, comparable with it.
struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text file, scored as llama.cpp's llama-perplexity scores it.",
        discussion: """
            The text is tokenized once (BOS first when the file adds one) and cut into non-overlapping chunks of \
            --ctx-size tokens; each chunk runs on an empty cache with its first token replaced by BOS (when the file \
            adds one), and only its second half is scored. --json prints {"perplexity", "tokens", "chunks"} as the \
            last line (tokens: the tokens scored).
            """
    )

    @Option(name: [.customShort("m"), .long], help: "Text model GGUF.")
    var model: String

    @Option(name: [.customShort("f"), .customLong("file")], help: "Text file (UTF-8).")
    var file: String

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "Tokens per chunk (as llama-perplexity's -c).")
    var contextLength = 512

    @Option(name: .customLong("chunks"), help: "At most this many chunks (default: all the text gives).")
    var chunks: Int?

    @Option(name: .customLong("batch-size"), help: "Rows per prefill step.")
    var batch = 256

    @Option(name: [.customLong("cache-type"), .customLong("kv-type")], help: "KV cache type: f32, f16 or q8_0.")
    var kvType = "f16"

    @Option(name: .customLong("kl-base"), help: "Reference model (e.g. the dense one of a pruned model): also report the mean KL divergence from it.")
    var klBase: String?

    @Flag(name: .long, help: "Print {\"perplexity\", \"tokens\", \"chunks\"} (and \"kl_divergence\" with --kl-base) as the last line.")
    var json = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        guard contextLength >= 4 else { throw ValidationError("--ctx-size must be at least 4") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1") }
        if batch < 1 { throw ValidationError("--batch-size must be at least 1") }
        guard KVCacheType(rawValue: kvType) != nil else { throw ValidationError("--cache-type must be f32, f16 or q8_0") }
    }

    func run() throws {
        try compute.apply()
        do {
            let bytes = try InputFile.read(file, limit: Limits.textFileBytes)
            guard let text = String(validating: bytes, as: UTF8.self) else { fail("\(file): not UTF-8 text") }
            let options = SessionOptions(contextLength: contextLength, batch: min(batch, contextLength),
                                         kvCache: KVCacheType(rawValue: kvType) ?? .f16)
            let session = try Session(model: model, options: options)
            let reference = try klBase.map { try Session(model: $0, options: options) }
            let tokens = Perplexity.tokenize(text, with: session.tokenizer)
            FileHandle.standardError.write(Data("\(tokens.count) tokens, chunks of \(contextLength)\n".utf8))
            let result = try Perplexity.measure(tokens: tokens, session: session, context: contextLength, maxChunks: chunks,
                                               reference: reference) { c, n, ppl in
                FileHandle.standardError.write(Data(String(format: "[%d/%d] %.4f\n", c, n, ppl).utf8))
            }
            if json {
                var object: [String: Any] = ["perplexity": result.perplexity, "tokens": result.tokens, "chunks": result.chunks]
                if let kl = result.klDivergence { object["kl_divergence"] = kl }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(String(format: "perplexity %.4f over %d tokens (%d chunks of %d)", result.perplexity, result.tokens,
                             result.chunks, contextLength))
                if let kl = result.klDivergence { print(String(format: "KL divergence from %@: %.6f nats per token", klBase ?? "", kl)) }
            }
        } catch {
            fail("\(error)")
        }
    }
}

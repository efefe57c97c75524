import ArgumentParser
import Foundation
import VZQuant

/// The model files and how big a cache to plan (run, chat, bench).
struct ModelOptions: ParsableArguments {
    @Option(name: [.customShort("m"), .long], help: "Text model GGUF.")
    var model: String

    @Option(name: .long, help: "Vision file (mmproj GGUF) for --image.")
    var mmproj: String?

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "KV cache positions (default: the model's context, at most 2048).")
    var contextLength: Int?

    @Option(name: .customLong("batch-size"), help: "Rows per prefill step.")
    var batch = 256

    @Option(name: [.customLong("cache-type"), .customLong("kv-type")],
            help: "KV cache element type: f32, f16 (half the memory) or q8_0 (27 %), as llama.cpp's -ctk/-ctv.")
    var kvType = "f16"

    @Option(name: .customLong("max-image-pixels"),
            help: "Qwen2-VL / Qwen2.5-VL: resize images to at most this many pixels (lowers the mmproj's max_pixels; fewer visual tokens).")
    var maxImagePixels: Int?

    func validate() throws {
        if let contextLength, contextLength < 1 { throw ValidationError("--ctx-size must be at least 1") }
        if let maxImagePixels, !Limits.imagePixels.contains(maxImagePixels) {
            throw ValidationError("--max-image-pixels must be between 1 and \(Limits.imagePixels.upperBound)")
        }
        if batch < 1 { throw ValidationError("--batch-size must be at least 1") }
        guard KVCacheType(rawValue: kvType) != nil else { throw ValidationError("--cache-type must be f32, f16 or q8_0") }
    }

    var sessionOptions: SessionOptions {
        var o = SessionOptions(contextLength: contextLength, batch: batch, kvCache: KVCacheType(rawValue: kvType) ?? .f32)
        o.maxImagePixels = maxImagePixels
        return o
    }
}

/// Images and VisionZip (every command that takes an image).
struct ImageOptions: ParsableArguments {
    @Option(name: .long, help: "Image file (JPEG or PNG); repeat for several. Each goes where the prompt says <image>, else before the prompt.")
    var image: [String] = []

    @Option(name: .customLong("visual-tokens"), help: "Visual tokens per image/crop after VisionZip: a number (split dominant:contextual ≈ 84:16, as the paper), or 'all' (VisionZip off). Default 64.")
    var visualTokens: String?

    @Option(name: .long, help: "VisionZip dominant tokens (CLS included); with --contextual instead of --visual-tokens.")
    var dominant: Int?

    @Option(name: .long, help: "VisionZip contextual tokens; with --dominant.")
    var contextual: Int?

    @Option(name: .customLong("token-reducer"), help: "Which visual tokens to keep: visionzip (attention: dominant + merged contextual tokens) or divprune (feature diversity, no attention).")
    var tokenReducer = "visionzip"

    @Option(name: .long, help: "How contextual tokens merge: sum (target + mean of members, the reference) or mean.")
    var merge = "sum"

    @Option(name: .customLong("visionzip-map"), help: "Write the image as the encoder saw it with VisionZip's kept patches highlighted (.png or .ppm).")
    var visionZipMap: String?

    @Option(name: .customLong("max-decode-pixels"), help: "Refuse image files larger than this many pixels (decompression bombs).")
    var maxDecodePixels = 64_000_000

    @Option(name: .customLong("max-image-bytes"), help: "Refuse image files larger than this many bytes.")
    var maxImageBytes = 256 << 20

    func validate() throws {
        _ = try parsedVisualTokens()
        guard VisionZip.Merge(rawValue: merge) != nil else { throw ValidationError("--merge must be sum or mean") }
        do { _ = try TokenReducers.named(tokenReducer) } catch { throw ValidationError("--token-reducer: \(error)") }
        guard maxDecodePixels > 0, maxImageBytes > 0 else { throw ValidationError("image limits must be positive") }
    }

    /// `--visual-tokens N|all`, or `--dominant D --contextual C` (both or neither) instead.
    func parsedVisualTokens() throws -> VisualTokens {
        do {
            switch (dominant, contextual) {
            case let (d?, c?):
                guard visualTokens == nil else { throw ValidationError("give either --visual-tokens or --dominant/--contextual, not both") }
                return try VisualTokens(dominant: d, contextual: c)
            case (nil, nil):
                return try VisualTokens(visualTokens ?? String(VisualTokens.defaultBudget))
            default:
                throw ValidationError("--dominant and --contextual go together")
            }
        } catch let e as ValidationError {
            throw e
        } catch {
            throw ValidationError("--visual-tokens: \(error)")
        }
    }

    var mergeMode: VisionZip.Merge { VisionZip.Merge(rawValue: merge) ?? .sum }

    /// The reducer `--token-reducer` names (validated).
    var reducer: any TokenReducer { (try? TokenReducers.named(tokenReducer)) ?? VisionZipReducer() }

    var decodeOptions: ImageDecodeOptions { ImageDecodeOptions(maxPixels: maxDecodePixels, maxFileBytes: maxImageBytes) }
}

/// The prompt format (run, chat).
struct TemplateOptions: ParsableArguments {
    @Option(name: .long, help: "System message (templated prompts only).")
    var system: String?

    @Option(name: .customLong("chat-template"), help: "Template: \(ChatTemplate.Family.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the file).")
    var chatTemplate: String?

    /// --chat-template, else what the file's tokenizer.chat_template says.
    func template(for session: Session) throws -> ChatTemplate {
        try chatTemplate.map { try ChatTemplate(name: $0) } ?? ChatTemplate.detect(metadata: session.metadata)
    }
}

/// Sampling and stopping (run, chat).
struct SamplingOptions: ParsableArguments {
    @Option(name: [.customShort("n"), .customLong("n-predict")], help: "Tokens to generate at most.")
    var maxTokens = 256

    @Option(name: .long, help: "Temperature; 0 = greedy.")
    var temp: Float = 0.8

    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = off).")
    var topK = 40

    @Option(name: .customLong("top-p"), help: "Keep the smallest set of tokens with this much probability (1 = off).")
    var topP: Float = 0.95

    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than this fraction of the best one (0 = off).")
    var minP: Float = 0

    @Option(name: .customLong("repeat-penalty"), help: "Penalty for tokens among the last 64 (1 = off).")
    var repeatPenalty: Float = 1.0

    @Option(name: .long, help: "Random seed (default: from the clock).")
    var seed: UInt64?

    @Option(name: .long, help: "Stop when this text appears (repeatable); the template's own stops are always on.")
    var stop: [String] = []

    func validate() throws {
        if maxTokens < 0 { throw ValidationError("--n-predict must be ≥ 0") }
        if !(temp >= 0) { throw ValidationError("--temp must be ≥ 0") }
        if topK < 0 { throw ValidationError("--top-k must be ≥ 0") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        if !(minP >= 0 && minP < 1) { throw ValidationError("--min-p must be in [0, 1)") }
        if !(repeatPenalty > 0) { throw ValidationError("--repeat-penalty must be > 0") }
    }

    var parameters: SamplingParameters {
        SamplingParameters(temperature: temp, topK: topK, topP: topP, minP: minP, repeatPenalty: repeatPenalty,
                           seed: seed ?? UInt64(truncatingIfNeeded: DispatchTime.now().uptimeNanoseconds))
    }
}

/// Ctrl-C during generation ends it cleanly (the text so far is kept); a second Ctrl-C, or one at chat's prompt,
/// quits at once.
enum Interrupt {
    nonisolated(unsafe) static var requested: sig_atomic_t = 0
    nonisolated(unsafe) static var atPrompt = false

    static func install() {
        signal(SIGINT) { _ in
            if Interrupt.requested != 0 || Interrupt.atPrompt { _exit(130) }
            Interrupt.requested = 1
        }
    }

    static func take() -> Bool {
        guard requested != 0 else { return false }
        requested = 0
        return true
    }
}

/// Writes to stdout without buffering delays (streamed tokens must show as they come).
func emit(_ text: String) {
    guard !text.isEmpty else { return }
    FileHandle.standardOutput.write(Data(text.utf8))
}

func note(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

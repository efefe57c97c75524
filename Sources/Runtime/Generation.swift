import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Why generation ended.
public enum StopReason: String, Sendable, Codable {
    /// An end-of-generation token (EOS, end of turn).
    case endOfText = "eos"
    /// A stop string appeared in the text.
    case stopString = "stop_string"
    /// The requested number of tokens was produced.
    case maxTokens = "max_tokens"
    /// The KV cache has no room for another position.
    case contextFull = "context_full"
    /// The user interrupted (Ctrl-C).
    case interrupted
}

/// What one generation produced and how long it took.
public struct GenerationReport: Sendable {
    public var tokens: [Int32] = []
    public var stopReason: StopReason = .maxTokens
    /// Time in decode steps (the first token comes from the prefill's logits and costs none).
    public var decodeMs = 0.0
    /// Decode steps run (tokens fed back into the model).
    public var decodeSteps = 0
    public var decodeTokensPerSecond: Double { decodeMs > 0 ? Double(decodeSteps) / decodeMs * 1000 : 0 }
}

extension Session {
    /// Token ids that end generation: EOS, the end-of-turn token, and any control token in `stopTokens`' texts
    /// (e.g. "<|im_end|>" in a ChatML file whose EOS is "<|endoftext|>").
    public func endOfGenerationTokens(extraTexts: [String] = []) -> Set<Int32> {
        var ids = Set<Int32>()
        if let eos = tokenizer.eos { ids.insert(eos) }
        for key in [GGUFKey.Tokenizer.eotTokenID, GGUFKey.Tokenizer.eomTokenID] where metadata.contains(key) {
            if let v = try? metadata.int(key), v >= 0, v < tokenizer.count { ids.insert(Int32(v)) }
        }
        for text in extraTexts {
            let t = tokenizer.encode(text, addSpecial: false, parseSpecial: true)
            if t.count == 1, tokenizer.types[Int(t[0])] == .control { ids.insert(t[0]) }
        }
        return ids
    }

    /// Samples up to `maxTokens` tokens after what the cache holds (a prefill must have run).
    /// - Parameters:
    ///   - sample: picks the next token from the logits and the ids so far.
    ///   - stopTokens: ids that end generation (not emitted, not fed back).
    ///   - keepInCache: feed the last token back too, so the cache holds the whole reply (chat's next turn).
    ///   - onToken: receives each emitted token; returns true to stop (a stop string was completed).
    ///   - interrupted: polled after every token (Ctrl-C).
    public func generate(maxTokens: Int, stopTokens: Set<Int32>, keepInCache: Bool = false,
                         sample: (UnsafeBufferPointer<Float>, [Int32]) -> Int32,
                         onToken: (Int32) -> Bool, interrupted: () -> Bool = { false }) throws -> GenerationReport {
        var report = GenerationReport()
        guard !lastLogits.isEmpty else { throw ModelError("generate needs a prefill first") }
        while report.tokens.count < maxTokens {
            let token = lastLogits.withUnsafeBufferPointer { sample($0, history) }
            if stopTokens.contains(token) {
                report.stopReason = .endOfText
                return report
            }
            report.tokens.append(token)
            let stop = onToken(token)
            let last = stop || report.tokens.count == maxTokens
            if last && !keepInCache {
                report.stopReason = stop ? .stopString : .maxTokens
                return report
            }
            guard position < contextLength else {
                report.stopReason = .contextFull
                return report
            }
            let t0 = monotonicMilliseconds()
            try decode(token)
            report.decodeMs += monotonicMilliseconds() - t0
            report.decodeSteps += 1
            if stop {
                report.stopReason = .stopString
                return report
            }
            if interrupted() {
                report.stopReason = .interrupted
                return report
            }
        }
        report.stopReason = .maxTokens
        return report
    }
}

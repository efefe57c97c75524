import Foundation
import VZQModels
import VZQText

/// Perplexity over non-overlapping chunks, scored as llama.cpp's llama-perplexity scores them, so the two tools'
/// numbers compare:
///   - the text is tokenized once (BOS first when the file adds one) and cut into ⌊tokens / n⌋ chunks of n tokens;
///   - each chunk runs on an empty cache, its first token replaced by BOS when the file adds one;
///   - only the second half is scored: the logits at positions n/2 … n−2 predict tokens n/2+1 … n−1;
///   - perplexity = exp(mean negative log-likelihood over every scored token), log-softmax in Double.
public enum Perplexity {
    public struct Result: Sendable, Equatable {
        public var perplexity: Double
        /// Tokens scored (chunks × (n − 1 − n/2)).
        public var tokens: Int
        public var chunks: Int
        /// Tokens of the whole text (BOS included).
        public var textTokens: Int
    }

    /// Tokens of `text` as llama-perplexity takes them: BOS first when the file says so, special-token texts plain.
    public static func tokenize(_ text: String, with tokenizer: Tokenizer) -> [Int32] {
        tokenizer.encode(text, addSpecial: true, parseSpecial: false)
    }

    /// Runs `tokens` through `session`'s model in chunks of `context` (≤ the session's context).
    /// `progress(chunk, chunks, running perplexity)` after each chunk.
    public static func measure(tokens: [Int32], session: Session, context n: Int, maxChunks: Int? = nil,
                               progress: ((Int, Int, Double) -> Void)? = nil) throws -> Result {
        guard n >= 4 else { throw ModelError("perplexity needs a context of at least 4 tokens, got \(n)") }
        guard n <= session.contextLength else {
            throw ModelError("context \(n) is larger than the session's cache (\(session.contextLength))")
        }
        let available = tokens.count / n
        guard available >= 1 else {
            throw ModelError("the text has \(tokens.count) tokens, fewer than one chunk of \(n): give a longer text or a smaller --ctx-size")
        }
        let chunks = min(available, maxChunks ?? available)
        let model = session.model
        let vocab = model.vocab
        let first = n / 2
        let bos = session.tokenizer.addBOS ? session.tokenizer.bos : nil
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw ModelError("token \(bad) is outside the model's vocabulary of \(vocab)")
        }
        var nll = 0.0
        var scored = 0
        for c in 0..<chunks {
            var chunk = Array(tokens[(c * n)..<((c + 1) * n)])
            if let bos { chunk[0] = bos }
            session.reset()
            // The first half only fills the cache; the second half's logits are all needed.
            _ = try model.prefill(embeddings: try model.embeddings(Array(chunk[..<first])), lastOnly: true)
            let logits = try model.prefill(embeddings: try model.embeddings(Array(chunk[first...])), lastOnly: false)
            guard logits.count == (n - first) * vocab else {
                throw ModelError("the model gave \(logits.count) logits for \(n - first) rows of \(vocab)")
            }
            logits.withUnsafeBufferPointer { l in
                for row in 0 ..< (n - first - 1) {
                    let target = Int(chunk[first + row + 1])
                    nll -= logSoftmax(l, row: row, vocab: vocab, at: target)
                    scored += 1
                }
            }
            progress?(c + 1, chunks, exp(nll / Double(scored)))
        }
        session.reset()
        return Result(perplexity: exp(nll / Double(scored)), tokens: scored, chunks: chunks, textTokens: tokens.count)
    }

    /// log softmax(logits[row])[index], with the row's maximum subtracted first.
    static func logSoftmax(_ l: UnsafeBufferPointer<Float>, row: Int, vocab: Int, at index: Int) -> Double {
        let base = row * vocab
        var m = -Double.infinity
        for j in 0..<vocab { m = max(m, Double(l[base + j])) }
        var sum = 0.0
        for j in 0..<vocab { sum += exp(Double(l[base + j]) - m) }
        return Double(l[base + index]) - m - log(sum)
    }
}

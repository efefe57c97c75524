import Foundation
import VZQModels
import VZQText

/// Perplexity over non-overlapping chunks, scored as llama.cpp's llama-perplexity scores them, so the two tools'
/// numbers compare:
///   - the text is tokenized once (BOS first when the file adds one) and cut into ⌊tokens / n⌋ chunks of n tokens;
///   - each chunk runs on an empty cache, its first token replaced by BOS when the file adds one;
///   - only the second half is scored: the logits at positions n/2 … n−2 predict tokens n/2+1 … n−1;
///   - perplexity = exp(mean negative log-likelihood over every scored token), log-softmax in Double;
///   - with a reference model (the dense one of a pruned model), also the mean KL(reference ‖ model) of the
///     next-token distributions at the scored positions (as llama-perplexity's --kl-divergence reports it).
public enum Perplexity {
    public struct Result: Sendable, Equatable {
        public var perplexity: Double
        /// Tokens scored (chunks × (n − 1 − n/2)).
        public var tokens: Int
        public var chunks: Int
        /// Tokens of the whole text (BOS included).
        public var textTokens: Int
        /// Mean KL(reference ‖ this model) over the scored positions, in nats, when a reference model was given.
        public var klDivergence: Double?
    }

    /// Tokens of `text` as llama-perplexity takes them: BOS first when the file says so, special-token texts plain.
    public static func tokenize(_ text: String, with tokenizer: Tokenizer) -> [Int32] {
        tokenizer.encode(text, addSpecial: true, parseSpecial: false)
    }

    /// Runs `tokens` through `session`'s model in chunks of `context` (≤ the session's context).
    /// `progress(chunk, chunks, running perplexity)` after each chunk.
    /// `reference`: a second session (e.g. the dense model of a pruned one, same vocabulary) run on the same chunks;
    /// the result then carries the mean KL divergence of this model's next-token distribution from the reference's.
    public static func measure(tokens: [Int32], session: Session, context n: Int, maxChunks: Int? = nil,
                               reference: Session? = nil,
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
        if let reference {
            guard reference.model.vocab == vocab, n <= reference.contextLength else {
                throw ModelError("the reference model has a vocabulary of \(reference.model.vocab) and a cache of \(reference.contextLength); this one \(vocab) and \(n)")
            }
        }
        var nll = 0.0, kl = 0.0
        var scored = 0
        for c in 0..<chunks {
            var chunk = Array(tokens[(c * n)..<((c + 1) * n)])
            if let bos { chunk[0] = bos }
            let logits = try secondHalfLogits(chunk, session: session, first: first)
            let referenceLogits = try reference.map { try secondHalfLogits(chunk, session: $0, first: first) }
            logits.withUnsafeBufferPointer { l in
                for row in 0 ..< (n - first - 1) {
                    let target = Int(chunk[first + row + 1])
                    nll -= logSoftmax(l, row: row, vocab: vocab, at: target)
                    if let referenceLogits {
                        referenceLogits.withUnsafeBufferPointer { r in kl += klDivergence(r, l, row: row, vocab: vocab) }
                    }
                    scored += 1
                }
            }
            progress?(c + 1, chunks, exp(nll / Double(scored)))
        }
        session.reset()
        reference?.reset()
        return Result(perplexity: exp(nll / Double(scored)), tokens: scored, chunks: chunks, textTokens: tokens.count,
                      klDivergence: reference == nil ? nil : kl / Double(scored))
    }

    /// The logits of a chunk's second half [n − first, vocab], on an empty cache (the first half only fills it).
    static func secondHalfLogits(_ chunk: [Int32], session: Session, first: Int) throws -> [Float] {
        let model = session.model
        session.reset()
        _ = try model.prefill(embeddings: try model.embeddings(Array(chunk[..<first])), lastOnly: true)
        let logits = try model.prefill(embeddings: try model.embeddings(Array(chunk[first...])), lastOnly: false)
        guard logits.count == (chunk.count - first) * model.vocab else {
            throw ModelError("the model gave \(logits.count) logits for \(chunk.count - first) rows of \(model.vocab)")
        }
        return logits
    }

    /// KL(p ‖ q) of the softmaxes of row `row` of `p` and `q` [rows, vocab], in nats.
    static func klDivergence(_ p: UnsafeBufferPointer<Float>, _ q: UnsafeBufferPointer<Float>, row: Int, vocab: Int) -> Double {
        let base = row * vocab
        let lp = logSumExp(p, row: row, vocab: vocab), lq = logSumExp(q, row: row, vocab: vocab)
        var kl = 0.0
        for j in 0..<vocab {
            let logP = Double(p[base + j]) - lp, logQ = Double(q[base + j]) - lq
            kl += exp(logP) * (logP - logQ)
        }
        return max(kl, 0)
    }

    /// log Σ_j exp(logits[row][j]), with the row's maximum subtracted first.
    static func logSumExp(_ l: UnsafeBufferPointer<Float>, row: Int, vocab: Int) -> Double {
        let base = row * vocab
        var m = -Double.infinity
        for j in 0..<vocab { m = max(m, Double(l[base + j])) }
        var sum = 0.0
        for j in 0..<vocab { sum += exp(Double(l[base + j]) - m) }
        return m + log(sum)
    }

    /// log softmax(logits[row])[index].
    static func logSoftmax(_ l: UnsafeBufferPointer<Float>, row: Int, vocab: Int, at index: Int) -> Double {
        Double(l[row * vocab + index]) - logSumExp(l, row: row, vocab: vocab)
    }
}

import Foundation
import XCTest
@testable import VZQuant
@testable import VZQSupport
@testable import VZQKernels
@testable import VZQFormats
@testable import VZQModels
@testable import VZQTokenReduction
@testable import VZQText
@testable import VZQImage
@testable import VZQFamilies
@testable import VZQRuntime
@testable import VZQConvert
@testable import VZQBench

/// Sampler against the definitions: argmax, softmax with temperature, the smallest top-p set, top-k, min-p and
/// the repeat penalty, computed here from scratch (full sorts, plain loops) and compared with what the sampler
/// keeps and draws.
final class SamplerTests: XCTestCase {
    func sample(_ s: inout Sampler, _ logits: [Float], history: [Int32] = []) -> Int32 {
        logits.withUnsafeBufferPointer { s.sample(logits: $0, history: history) }
    }

    func randomLogits(_ n: Int, seed: UInt64, scale: Float = 3) -> [Float] {
        var g = SeededRandom(seed: seed)
        return (0 ..< n).map { _ in
            // sum of uniforms ≈ normal, enough to give a peaked but wide distribution
            var x: Float = 0
            for _ in 0 ..< 4 { x += Float(g.next() >> 40) * 0x1p-24 - 0.5 }
            return x * scale
        }
    }

    /// Reference: softmax(l / T) sorted best first (ties: lower id), then top-k, top-p, min-p; renormalised.
    func reference(_ logits: [Float], _ p: SamplingParameters) -> [Int32: Double] {
        let invT = 1 / Double(p.temperature)
        let best = Double(logits.max()!)
        var order = Array(0 ..< logits.count).sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if p.topK > 0 { order = Array(order.prefix(p.topK)) }
        var w = order.map { exp((Double(logits[$0]) - best) * invT) }
        if p.topP < 1 {
            let total = w.reduce(0, +)
            var acc = 0.0, keep = w.count
            for (i, x) in w.enumerated() {
                acc += x
                if acc >= Double(p.topP) * total {
                    keep = i + 1
                    break
                }
            }
            order = Array(order.prefix(keep))
            w = Array(w.prefix(keep))
        }
        if p.minP > 0 {
            let top = w[0]
            w = w.map { $0 < Double(p.minP) * top ? 0 : $0 }
        }
        let total = w.reduce(0, +)
        var out: [Int32: Double] = [:]
        for (i, id) in order.enumerated() where w[i] > 0 { out[Int32(id)] = w[i] / total }
        return out
    }

    func testGreedyIsArgmaxLowestIdOnTies() throws {
        var s = try Sampler(.greedy)
        XCTAssertEqual(sample(&s, [1, 3, 3, 2]), 1)
        XCTAssertEqual(sample(&s, [-5, -5, -5]), 0)
        XCTAssertEqual(sample(&s, [.nan, 0.5, .nan, 0.25]), 1)
        var hot = try Sampler(SamplingParameters(temperature: 1, seed: 1))
        for _ in 0 ..< 50 { XCTAssertEqual(sample(&hot, [0, 1, .infinity, .nan, -.infinity]), 2) }
        for seed in 0 ..< 20 as Range<UInt64> {
            let l = randomLogits(5000, seed: seed)
            let want = l.indices.max { l[$0] < l[$1] || (l[$0] == l[$1] && $0 > $1) }!
            XCTAssertEqual(sample(&s, l), Int32(want))
        }
    }

    func testTopKOneIsGreedyAtAnyTemperature() throws {
        var greedy = try Sampler(.greedy)
        var k1 = try Sampler(SamplingParameters(temperature: 5, topK: 1, topP: 0.5, seed: 9))
        for seed in 0 ..< 50 as Range<UInt64> {
            let l = randomLogits(3000, seed: seed, scale: 0.5)
            XCTAssertEqual(sample(&k1, l), sample(&greedy, l))
        }
    }

    /// 20000 draws against the analytic probabilities: Pearson's chi-square must stay far below what even a
    /// one-in-a-million unlucky seed would give (the sampler is deterministic, so this never flakes).
    func testDistributionMatchesAnalyticProbabilities() throws {
        let logits: [Float] = [1.0, 2.0, 0.5, -1.0, 1.5, 0.0, 1.9]
        let settings = [
            SamplingParameters(temperature: 0.7, topP: 0.9, seed: 1),
            SamplingParameters(temperature: 1.3, seed: 2),
            SamplingParameters(temperature: 1.0, topK: 3, seed: 3),
            SamplingParameters(temperature: 2.0, topK: 5, topP: 0.8, seed: 4),
            SamplingParameters(temperature: 1.0, minP: 0.3, seed: 5),
        ]
        let draws = 20000
        for p in settings {
            let want = reference(logits, p)
            var s = try Sampler(p)
            var counts = [Int](repeating: 0, count: logits.count)
            for _ in 0 ..< draws { counts[Int(sample(&s, logits))] += 1 }
            var chi2 = 0.0
            for (id, c) in counts.enumerated() {
                guard let q = want[Int32(id)] else {
                    XCTAssertEqual(c, 0, "\(p): token \(id) is outside the kept set")
                    continue
                }
                let e = q * Double(draws)
                chi2 += (Double(c) - e) * (Double(c) - e) / e
            }
            // df ≤ 6: P(chi2 > 40) < 1e-6
            XCTAssertLessThan(chi2, 40, "\(p): counts \(counts), expected \(want)")
            print("sampler \(p.temperature)/\(p.topK)/\(p.topP)/\(p.minP): chi2 \(String(format: "%.2f", chi2)) over \(want.count) tokens")
        }
    }

    /// Top-p keeps the smallest best-first set whose mass reaches p.
    func testTopPKeepsSmallestSet() throws {
        let probs: [Double] = [0.5, 0.3, 0.15, 0.05]
        let logits = probs.map { Float(log($0)) }
        for (topP, kept) in [(Float(0.4), 1), (0.75, 2), (0.85, 3), (0.97, 4), (1.0, 4)] {
            var s = try Sampler(SamplingParameters(temperature: 1, topP: topP, seed: 7))
            let d = logits.withUnsafeBufferPointer { s.distribution(logits: $0, history: []) }
            XCTAssertEqual(Set(d.map(\.id)), Set((0 ..< kept).map { Int32($0) }), "top-p \(topP)")
            var seen = Set<Int32>()
            for _ in 0 ..< 3000 { seen.insert(sample(&s, logits)) }
            XCTAssertEqual(seen, Set((0 ..< kept).map { Int32($0) }), "top-p \(topP)")
        }
    }

    /// On a 150k vocabulary the partial selection (top-k, widening top-p) keeps exactly the full sort's set.
    func testLargeVocabularySelectionMatchesFullSort() throws {
        let l = randomLogits(150_000, seed: 42, scale: 6)
        let settings = [
            SamplingParameters(temperature: 0.8, topP: 0.9),
            SamplingParameters(temperature: 0.5, topP: 0.95),
            SamplingParameters(temperature: 1, topK: 40),
            SamplingParameters(temperature: 1, topK: 1000, topP: 0.5),
            SamplingParameters(temperature: 3, topP: 0.3),  // flat: widens to thousands of tokens
        ]
        for p in settings {
            var s = try Sampler(p)
            let got = l.withUnsafeBufferPointer { s.distribution(logits: $0, history: []) }
            let want = reference(l, p)
            XCTAssertEqual(got.count, want.count, "\(p)")
            XCTAssertEqual(Set(got.map(\.id)), Set(want.keys), "\(p)")
            for (id, q) in got { XCTAssertEqual(q, want[id] ?? -1, accuracy: 1e-5 * q) }  // weights are Float exps
            print("sampler 150k vocab t=\(p.temperature) k=\(p.topK) p=\(p.topP): \(got.count) tokens kept")
        }
    }

    /// Tokens far from the best logit (beyond the selection's fine buckets), ties and −∞ still give the
    /// reference set: top-k reaching into a tie far below, top-p needing the long tail.
    func testSelectionFarTailsAndTies() throws {
        var l = [Float](repeating: -30, count: 2000)
        for i in stride(from: 0, to: 2000, by: 200) { l[i] = Float(i % 7) * 0.1 }
        for i in stride(from: 5, to: 2000, by: 97) { l[i] = -.infinity }
        var tail = [Float](repeating: -17, count: 20000)
        tail[3] = 0
        for (logits, p) in [(l, SamplingParameters(temperature: 1, topK: 50)),
                            (l, SamplingParameters(temperature: 0.9, topK: 500, topP: 0.99)),
                            (tail, SamplingParameters(temperature: 1, topP: 0.99995))] {
            var s = try Sampler(p)
            let got = logits.withUnsafeBufferPointer { s.distribution(logits: $0, history: []) }
            let want = reference(logits, p)
            XCTAssertEqual(Set(got.map(\.id)), Set(want.keys), "\(p)")
            for (id, q) in got { XCTAssertEqual(q, want[id] ?? -1, accuracy: 1e-5 * q) }
            XCTAssertGreaterThan(got.count, 1)
            print("sampler tails t=\(p.temperature) k=\(p.topK) p=\(p.topP): \(got.count) tokens kept")
        }
        var s = try Sampler(SamplingParameters(temperature: 1, topP: 0.5))
        XCTAssertEqual(sample(&s, [-.infinity, -.infinity, -.infinity]), 0)
    }

    func testSameSeedSameSequence() throws {
        let l = randomLogits(1000, seed: 3, scale: 2)
        func run(_ seed: UInt64) throws -> [Int32] {
            var s = try Sampler(SamplingParameters(temperature: 1, topK: 50, topP: 0.95, seed: seed))
            return (0 ..< 200).map { _ in sample(&s, l) }
        }
        XCTAssertEqual(try run(11), try run(11))
        XCTAssertNotEqual(try run(11), try run(12))
    }

    func testRepeatPenalty() throws {
        var s = try Sampler(SamplingParameters(repeatPenalty: 1.25))
        // 2.0 / 1.25 = 1.6 < 1.9
        XCTAssertEqual(sample(&s, [2.0, 1.9, 0.5], history: [0, 0, 0]), 1)
        // negative logits are multiplied: -1.0 * 1.25 = -1.25 < -1.1
        XCTAssertEqual(sample(&s, [-1.0, -1.1], history: [0]), 1)
        // only the last repeatLastN tokens count
        var windowed = try Sampler(SamplingParameters(repeatPenalty: 1.25, repeatLastN: 2))
        XCTAssertEqual(sample(&windowed, [2.0, 1.9, 0.5], history: [0, 2, 2]), 0)
        // out-of-range history ids are ignored
        XCTAssertEqual(sample(&s, [2.0, 1.9], history: [-1, 7]), 0)
    }

    func testInvalidParametersThrow() {
        XCTAssertThrowsError(try Sampler(SamplingParameters(temperature: -1)))
        XCTAssertThrowsError(try Sampler(SamplingParameters(temperature: .nan)))
        XCTAssertThrowsError(try Sampler(SamplingParameters(topK: -2)))
        XCTAssertThrowsError(try Sampler(SamplingParameters(topP: 0)))
        XCTAssertThrowsError(try Sampler(SamplingParameters(topP: 1.5)))
        XCTAssertThrowsError(try Sampler(SamplingParameters(minP: 2)))
        XCTAssertThrowsError(try Sampler(SamplingParameters(repeatPenalty: 0)))
    }
}

/// TextStream with the fixture tokenizers (SentencePiece with byte fallback, Qwen2 and Llama-3 byte-level BPE):
/// streamed pieces concatenate to exactly Tokenizer.decode, and stop strings split over tokens are caught.
final class TextStreamTests: XCTestCase {
    static let fixtures: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    func tokenizer(_ dir: String) throws -> Tokenizer {
        try Tokenizer(pairs: TokenizerImport.metadata(modelDirectory: Self.fixtures.appendingPathComponent(dir).path))
    }

    var tokenizers: [(String, Tokenizer)] {
        get throws {
            try ["hf/llava-4x", "hf/qwen2", "tokenizer/llama3-bpe", "tokenizer/spm"].map { ($0, try tokenizer($0)) }
        }
    }

    static let texts = [
        "Hello, world! How are you?",
        " leading space and trailing space ",
        "Привет, мир! Как дела?",
        "日本語のテキストと中文文本。",
        "Emoji: 🎉🚀👩‍👩‍👧 and flags 🇫🇷🇯🇵 ✓",
        "Mixed: naïve café — 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑ x² 한국어 العربية",
        "tabs\tand\nnewlines\n\n  indented",
    ]

    func stream(_ t: Tokenizer, _ ids: [Int32], stops: [String] = []) -> (pieces: [String], stream: TextStream) {
        var s = TextStream(tokenizer: t, stopStrings: stops)
        var pieces = ids.map { s.push($0) }
        pieces.append(s.finish())
        return (pieces, s)
    }

    func testStreamingEqualsDecode() throws {
        for (name, t) in try tokenizers {
            for text in Self.texts {
                let ids = t.encode(text, addSpecial: false)
                let (pieces, _) = stream(t, ids)
                let joined = pieces.joined()
                XCTAssertEqual(Array(joined.utf8), Array(t.decode(ids).utf8), "\(name) \(text.debugDescription)")
                // valid text never shows a replacement character mid-stream
                if !t.decode(ids).contains("\u{FFFD}") {
                    XCTAssertFalse(pieces.contains { $0.contains("\u{FFFD}") }, "\(name) \(text.debugDescription) \(pieces)")
                }
            }
        }
    }

    /// Random id sequences (byte tokens that form invalid UTF-8, control tokens, everything): still decode's text.
    func testRandomIdsEqualDecode() throws {
        var g = SeededRandom(seed: 77)
        for (name, t) in try tokenizers {
            for _ in 0 ..< 200 {
                let ids = (0 ..< Int(g.next() % 24)).map { _ in Int32(g.next() % UInt64(t.count)) }
                let joined = stream(t, ids).pieces.joined()
                XCTAssertEqual(Array(joined.utf8), Array(t.decode(ids).utf8), "\(name) \(ids)")
            }
        }
    }

    /// Single bytes of a multi-byte character, pushed one token at a time, are held until complete.
    func testByteTokensHeldUntilCharacterComplete() throws {
        let t = try tokenizer("tokenizer/spm")
        let ids = t.encode("x🎉", addSpecial: false)
        XCTAssertGreaterThanOrEqual(ids.count, 5, "the tiny vocabulary spells the emoji with byte tokens")
        var s = TextStream(tokenizer: t)
        let pieces = ids.map { s.push($0) }
        XCTAssertEqual(pieces.joined(), "x🎉")
        XCTAssertEqual(pieces.last, "🎉")
        XCTAssertEqual(TextStream.incompleteTail([0x41, 0xF0, 0x9F]), 2)
        XCTAssertEqual(TextStream.incompleteTail([0xE0, 0x80]), 0)  // overlong: already invalid
        XCTAssertEqual(TextStream.incompleteTail([0xE2, 0x82, 0xAC]), 0)
    }

    func testStopStringSplitAcrossTokens() throws {
        for (name, t) in try tokenizers {
            let text = "The answer is 42. USER: next question"
            let ids = t.encode(text, addSpecial: false)
            let (pieces, s) = stream(t, ids, stops: ["USER:", "</s>"])
            XCTAssertEqual(s.stop, "USER:", name)
            XCTAssertEqual(pieces.joined(), "The answer is 42. ", name)
            // the stop string really came in more than one token
            XCTAssertFalse(ids.contains { t.piece($0).contains("USER:") }, "\(name): \(ids.map { t.piece($0) })")
        }
    }

    /// Text that only looks like the start of a stop string is held, then printed when it diverges or at finish.
    func testStopPrefixHeldThenReleased() throws {
        let t = try tokenizer("hf/qwen2")
        let stops = ["<|im_end|>", "USER:"]
        for text in ["Use USB cables. US", "a <|im_e", "USE: x", "<|im_end"] {
            let ids = t.encode(text, addSpecial: false)
            var s = TextStream(tokenizer: t, stopStrings: stops)
            var out = ""
            for id in ids {
                out += s.push(id)
                XCTAssertTrue(t.decode(ids).hasPrefix(out), text)
                // never printed yet: a tail that could be a stop string's beginning
                for stop in stops {
                    for len in 1 ..< stop.count {
                        XCTAssertFalse(out.hasSuffix(String(stop.prefix(len))), "\(text.debugDescription): \(out.debugDescription)")
                    }
                }
            }
            out += s.finish()
            XCTAssertNil(s.stop, text)
            XCTAssertEqual(out, t.decode(ids), text)
        }
        // pushed piece by piece, "US" is held back until "ed" shows it is not "USER:"
        let ids = t.encode("US", addSpecial: false) + t.encode("ed", addSpecial: false)
        var s = TextStream(tokenizer: t, stopStrings: stops)
        var printed = ""
        for id in t.encode("US", addSpecial: false) { printed += s.push(id) }
        XCTAssertEqual(printed, "")
        for id in ids.dropFirst(t.encode("US", addSpecial: false).count) { printed += s.push(id) }
        XCTAssertEqual(printed, "USed")
    }

    /// A control token (ChatML's end of turn) decodes to its text and ends the stream; later pushes print nothing.
    func testStopOnSpecialToken() throws {
        let t = try tokenizer("hf/qwen2")
        let ids = t.encode("Paris.<|im_end|>\nmore", addSpecial: false, parseSpecial: true)
        var s = TextStream(tokenizer: t, stopStrings: ChatTemplate(family: .chatml).stopStrings)
        var out = ""
        for id in ids { out += s.push(id) }
        out += s.finish()
        XCTAssertEqual(out, "Paris.")
        XCTAssertEqual(s.stop, "<|im_end|>")
        XCTAssertTrue(s.stopped)
    }

    /// generatedText keeps the SentencePiece space prefix that the display drops: it is what the cache holds, so
    /// for Vicuna the cache extended by the template's text after the reply equals the whole conversation
    /// rendered with the reply, which the displayed text alone would not.
    func testGeneratedTextForContinuation() throws {
        let t = try tokenizer("hf/llava-4x")
        let ids = t.encode(" Paris is the capital.", addSpecial: false)
        var s = TextStream(tokenizer: t, stopStrings: ["</s>", "USER:"])
        for id in ids { _ = s.push(id) }
        _ = s.finish()
        XCTAssertEqual(s.shownText, "Paris is the capital.")
        XCTAssertEqual(s.generatedText, String(decoding: ids.flatMap { t.pieceBytes($0) }, as: UTF8.self))
        XCTAssertEqual(s.generatedText, " Paris is the capital.")

        let vicuna = ChatTemplate(family: .vicuna)
        let history: [ChatMessage] = [.user("<image>\nWhere is this?")]
        let next: [ChatMessage] = [.user("Sure?")]
        let delta = try XCTUnwrap(try vicuna.textAfterReply(history: history, next: next))
        let whole = try vicuna.render(history + [.assistant(s.shownText)] + next, addGenerationPrompt: true)
        XCTAssertEqual(try vicuna.render(history, addGenerationPrompt: true) + s.generatedText + delta, whole)
        XCTAssertEqual(delta, " USER: Sure? ASSISTANT:")
        XCTAssertNotEqual(try vicuna.render(history, addGenerationPrompt: true) + s.shownText + delta, whole)
    }
}

import Foundation
import XCTest
@testable import VZQuant
@testable import VZQRuntime
@testable import VZQConvert

/// `vzquant perplexity` against Hugging Face models scoring the same text with llama-perplexity's chunking
/// (Fixtures/perplexity from tools/make_perplexity_fixtures.py).
final class PerplexityTests: XCTestCase {
    struct Cases: Decodable {
        struct Case: Decodable {
            let checkpoint: String, context: Int, text_tokens: Int, perplexity: Double, tokens: Int, chunks: Int, bos: Bool
        }
        let cases: [Case]
    }

    /// KL(p ‖ q) by hand: p = softmax(0, log 3) = (1/4, 3/4), q uniform: 1/4·log(1/2) + 3/4·log(3/2).
    func testKLDivergenceOfOneRow() {
        let p: [Float] = [0, Float(log(3.0))], q: [Float] = [5, 5]
        let kl = p.withUnsafeBufferPointer { pp in q.withUnsafeBufferPointer { Perplexity.klDivergence(pp, $0, row: 0, vocab: 2) } }
        XCTAssertEqual(kl, 0.25 * log(0.5) + 0.75 * log(1.5), accuracy: 1e-7)
    }

    func testMatchesTransformers() throws {
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-ppl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temp) }
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("perplexity")
        let ref = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: root.appendingPathComponent("cases.json")))
        let text = try String(contentsOf: root.appendingPathComponent("text.txt"), encoding: .utf8)
        XCTAssertEqual(ref.cases.count, 3)
        for c in ref.cases {
            let (model, _) = try LlavaModelTests.convert(c.checkpoint, .f32, into: temp, mmproj: c.checkpoint != "qwen2")
            let session = try Session(model: model, options: SessionOptions(contextLength: c.context, batch: 8, kvCache: .f32))
            let tokens = Perplexity.tokenize(text, with: session.tokenizer)
            XCTAssertEqual(tokens.count, c.text_tokens, "\(c.checkpoint): text tokens")
            XCTAssertEqual(session.tokenizer.addBOS, c.bos)
            let r = try Perplexity.measure(tokens: tokens, session: session, context: c.context)
            XCTAssertEqual(r.tokens, c.tokens)
            XCTAssertEqual(r.chunks, c.chunks)
            XCTAssertEqual(r.perplexity, c.perplexity, accuracy: 1e-4 * c.perplexity, "\(c.checkpoint) n=\(c.context)")
            print("perplexity \(c.checkpoint) n=\(c.context): \(r.perplexity) vs transformers \(c.perplexity)")
            // KL against itself is 0; against a different model (q8_0 of the same weights) small and positive.
            XCTAssertEqual(try XCTUnwrap(try Perplexity.measure(tokens: tokens, session: session, context: c.context,
                                                                reference: session).klDivergence), 0, accuracy: 1e-12)
            // Fewer chunks when asked; too short a text is an error, not a crash.
            XCTAssertEqual(try Perplexity.measure(tokens: tokens, session: session, context: c.context, maxChunks: 1).chunks, 1)
            XCTAssertThrowsError(try Perplexity.measure(tokens: Array(tokens.prefix(c.context - 1)), session: session, context: c.context))
        }
    }
}

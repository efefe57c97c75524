import Foundation
import XCTest
@testable import VZQuant
@testable import VZQModels
@testable import VZQTokenReduction
@testable import VZQFormats
@testable import VZQRuntime

/// DivPrune against a NumPy restatement of the paper's algorithm (Fixtures/divprune from
/// tools/make_divprune_fixtures.py), hand-made cases, and the reducer in the LLaVA pipeline.
final class DivPruneTests: XCTestCase {
    struct Cases: Decodable {
        struct Budget: Decodable { let keep: Int; let indices: [Int] }
        struct Case: Decodable { let file: String; let tokens: Int; let width: Int; let budgets: [Budget] }
        let cases: [Case]
    }

    func testMatchesNumPyReference() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("divprune")
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: root.appendingPathComponent("cases.json")))
        XCTAssertEqual(cases.cases.count, 4)
        for c in cases.cases {
            let features = try Data(contentsOf: root.appendingPathComponent(c.file)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            XCTAssertEqual(features.count, c.tokens * c.width)
            for b in c.budgets {
                let kept = try features.withUnsafeBufferPointer { try DivPrune.select(features: $0, width: c.width, count: b.keep) }
                XCTAssertEqual(kept, b.indices, "\(c.file) keep \(b.keep)")
                XCTAssertEqual(kept.count, min(b.keep, c.tokens))
            }
        }
    }

    /// Two copies of one direction and two other directions: keeping 3 drops one copy (the lower-index copy stays,
    /// ties go low); keeping 1 takes the token farthest from its nearest neighbour.
    func testDuplicatesAreDroppedFirst() throws {
        let x: [Float] = [1, 0, 0,   // 0
                          2, 0, 0,   // 1: same direction as 0 (distance 0)
                          0, 1, 0,   // 2
                          0, 0.6, 0.8]  // 3: 0.4 from 2
        let three = try x.withUnsafeBufferPointer { try DivPrune.select(features: $0, width: 3, count: 3) }
        XCTAssertEqual(three, [0, 2, 3])
        // Nearest-neighbour distances: 0 → 0, 1 → 0, 2 → 0.4, 3 → 0.4; the first pick is 2 (tie → lower index).
        let one = try x.withUnsafeBufferPointer { try DivPrune.select(features: $0, width: 3, count: 1) }
        XCTAssertEqual(one, [2])
        let all = try x.withUnsafeBufferPointer { try DivPrune.select(features: $0, width: 3, count: 9) }
        XCTAssertEqual(all, [0, 1, 2, 3])
        XCTAssertThrowsError(try x.withUnsafeBufferPointer { try DivPrune.select(features: $0, width: 5, count: 1) })
        let bad: [Float] = [1, .nan, 0, 1]
        XCTAssertThrowsError(try bad.withUnsafeBufferPointer { try DivPrune.select(features: $0, width: 2, count: 1) })
    }

    /// The reducer in the LLaVA pipeline: it chooses among the projected patch rows (CLS dropped, as the projector
    /// drops it), returns exactly those rows, and reports encoder token indices (CLS = 0 never kept).
    func testLlavaPipelineKeepsProjectedRows() throws {
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-divprune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temp) }
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let (_, mm) = try LlavaModelTests.convertLlava(.f32, into: temp)
        let pipeline = try VisionPipeline(path: mm)
        let pixels = try Data(contentsOf: root.appendingPathComponent("models/llava/pixel_values.bin"))
            .withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let all = try pipeline.encode(pixelCrops: [pixels], visualTokens: .all)
        let reduced = try pipeline.encode(pixelCrops: [pixels], visualTokens: try VisualTokens("5"), reducer: DivPruneReducer())
        let s = try XCTUnwrap(reduced.crops[0].selection)
        XCTAssertEqual(s.rule, .diversity)
        XCTAssertEqual(reduced.tokens, 5)
        XCTAssertEqual(s.dominant.count, 5)
        XCTAssertTrue(s.contextual.isEmpty)
        XCTAssertFalse(s.dominant.contains(0), "the projector drops CLS, so DivPrune never sees it")
        XCTAssertEqual(s.tokensBefore, all.tokens + 1)
        let width = pipeline.outputWidth
        // The same choice on the rows the language model would have received without reduction.
        let expected = try all.embeddings.withUnsafeBufferPointer { try DivPrune.select(features: $0, width: width, count: 5) }
        XCTAssertEqual(s.dominant, expected.map { $0 + 1 })
        var rows: [Float] = []
        for i in expected { rows += all.embeddings[i * width ..< (i + 1) * width] }
        XCTAssertEqual(reduced.embeddings, rows)
        XCTAssertEqual(s.summary(merge: .sum), "DivPrune max-min-diversity \(all.tokens + 1) → 5 tokens")
    }

    func testReducerNames() throws {
        XCTAssertEqual(try TokenReducers.named("divprune").name, "divprune")
        XCTAssertEqual(try TokenReducers.named("visionzip").name, "visionzip")
        XCTAssertThrowsError(try TokenReducers.named("fastv"))
    }
}

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

/// `bench model`'s measuring loop on the tiny LLaVA fixture: the rows' token counts, cache sizes and memory
/// figures follow from the budgets (timings are only checked to be present: nothing here is timed pass/fail).
final class ModelBenchTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-modelbench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func convertLlava() throws -> (String, String) { try LlavaModelTests.convertLlava(.q8_0, into: temp) }

    func testRowsPerBudget() throws {
        let (text, mm) = try convertLlava()
        var o = ModelBenchOptions(model: text, mmproj: mm, promptTokens: 5, genTokens: 3)
        o.visualTokens = try VisualTokens.list("all,8,4")
        o.repetitions = 2
        let (rows, _) = try ModelBench.run(o)
        XCTAssertEqual(rows.map { $0.visualTokens?.description }, ["all", "8", "4"])
        // 16 patches without VisionZip (CLS dropped), else the budget (CLS among the dominant tokens).
        XCTAssertEqual(rows.map(\.prefillTokens), [5 + 16, 5 + 8, 5 + 4])
        XCTAssertEqual(rows.map(\.tokensBefore), [17, 17, 17])
        XCTAssertEqual(rows.map(\.dominantTokens), [nil, 7, 3])
        XCTAssertEqual(rows.map(\.contextualTokens), [nil, 1, 1])
        // The cache is planned for prompt + visual + generated tokens: f32 K and V, 2 layers × kvDim 32.
        let perPosition = 2 * 2 * 32 * 4
        XCTAssertEqual(rows.map(\.memory.kvBytes), [24, 16, 12].map { $0 * perPosition })
        for r in rows {
            XCTAssertEqual(r.repetitions, 2)
            XCTAssertEqual(r.crops, 1)
            XCTAssertEqual(r.decodeTokens, 2)
            XCTAssertNotNil(r.prefill)
            XCTAssertNotNil(r.ttft)
            XCTAssertNotNil(r.vision)
            XCTAssertNotNil(r.decode)
            XCTAssertGreaterThan(r.memory.weightBytes, 0)
            XCTAssertGreaterThan(r.memory.scratchBytes, 0)
            XCTAssertEqual(r.type, "q8_0")
            if let peak = r.memory.peakRSSBytes, let before = r.memory.rssBeforeLoadBytes {
                XCTAssertGreaterThanOrEqual(peak, before)
            }
        }
        XCTAssertEqual(rows[0].visionZip?.max, 0, "VisionZip takes no time when it is off")

        let report = ModelBenchReport(model: text, mmproj: mm, threads: Threads.count, peakRSSPerRow: true, results: rows)
        XCTAssertEqual(report.results[0].ttftSpeedup, 1)
        XCTAssertNotNil(report.results[2].prefillSpeedup)
    }

    func testTextOnly() throws {
        let (text, _) = try convertLlava()
        var o = ModelBenchOptions(model: text, promptTokens: 40, genTokens: 0)
        o.repetitions = 1
        let (rows, _) = try ModelBench.run(o)
        XCTAssertEqual(rows.count, 1)
        XCTAssertNil(rows[0].visualTokens)
        XCTAssertEqual(rows[0].prefillTokens, 40)
        XCTAssertEqual(rows[0].promptTokens, 40)
        XCTAssertNil(rows[0].decode, "--gen-tokens 0: prefill only")
        XCTAssertNil(rows[0].vision)
        XCTAssertThrowsError(try ModelBench.run(ModelBenchOptions(model: text, promptTokens: 0)))
        XCTAssertThrowsError(try ModelBench.run(ModelBenchOptions(model: temp.appendingPathComponent("missing.gguf").path)))
    }

    /// The prompt is ordinary text of exactly the requested length, BOS first when the tokenizer adds one.
    func testPromptIds() throws {
        let (text, _) = try convertLlava()
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: text))
        for n in [1, 7, 100] {
            let ids = ModelBench.promptIds(tokenizer, count: n)
            XCTAssertEqual(ids.count, n)
            if tokenizer.addBOS { XCTAssertEqual(ids.first, tokenizer.bos) }
        }
        let img = ModelBench.syntheticImage()
        XCTAssertEqual(img.width, 1024)
        XCTAssertEqual(img, ModelBench.syntheticImage(), "deterministic")
    }
}

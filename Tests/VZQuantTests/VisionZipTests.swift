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

/// VisionZip against the reference in Fixtures/models/visionzip (tools/make_model_references.py, written from
/// /work/shared/visionzip.md), hand-made cases with known answers, the budget split, and the LLaVA path end to end.
final class VisionZipTests: XCTestCase {
    // MARK: fixtures

    struct Manifest: Decodable {
        struct Entry: Decodable { let name: String; let shape: [Int]; let file: String }
        struct Case: Decodable { let name: String; let dominant: Int; let contextual: Int; let inputs: [String: String] }
        let arrays: [Entry]
        let cases: [Case]
    }

    static let directory: URL = {
        let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        return root.appendingPathComponent("models/visionzip", isDirectory: true)
    }()

    static func manifest() throws -> Manifest {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Manifest.self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
    }

    static func words(_ name: String) throws -> [UInt32] {
        let data = try Data(contentsOf: directory.appendingPathComponent(name + ".bin"))
        return data.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
    }

    static func floats(_ name: String) throws -> [Float] { try words(name).map(Float.init(bitPattern:)) }
    static func ints(_ name: String) throws -> [Int] { try words(name).map { Int(Int32(bitPattern: $0)) } }

    /// max |a − b| / max(1, |b|), failing on a size mismatch.
    func maxRelative(_ a: [Float], _ b: [Float], _ message: String) -> Float {
        XCTAssertEqual(a.count, b.count, "\(message): sizes")
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1) / max(1, abs($1.1))) }
    }

    // MARK: (1) the reference cases

    func testMatchesReferenceCases() throws {
        let manifest = try Self.manifest()
        XCTAssertEqual(manifest.cases.count, 6)
        var worst: Float = 0
        for c in manifest.cases {
            let shape = try XCTUnwrap(manifest.arrays.first { $0.name == c.inputs["attention"] }).shape
            let (heads, t) = (shape[0], shape[1])
            let attention = try Self.floats(c.inputs["attention"]!)
            let keys = try Self.floats(c.inputs["keys_mean"]!)
            let hidden = try Self.floats(c.inputs["hidden"]!)
            let budget = VisionZip.Budget(dominant: c.dominant, contextual: c.contextual)
            let out = try VisionZip.compress(attention: attention, heads: heads, keysMean: keys, hidden: hidden,
                                             budget: budget)
            let s = out.selection
            XCTAssertEqual(s.dominant, try Self.ints(c.name + "_dominant"), "\(c.name): dominant")
            XCTAssertEqual(s.remaining, try Self.ints(c.name + "_remaining"), "\(c.name): remaining")
            XCTAssertEqual(s.contextual.map(\.target), try Self.ints(c.name + "_targets"), "\(c.name): targets")
            XCTAssertEqual(s.memberSlots, try Self.ints(c.name + "_members"), "\(c.name): members")
            XCTAssertEqual(s.rule, .classAttention)
            XCTAssertEqual(s.tokensBefore, t)
            XCTAssertEqual(s.applied, budget)
            let e = maxRelative(out.rows, try Self.floats(c.name + "_rows"), c.name)
            XCTAssertLessThanOrEqual(e, 1e-5, "\(c.name): rows")
            worst = max(worst, e)

            // The CLS query rows alone give the same answer.
            var classRows = [Float]()
            for h in 0..<heads { classRows += attention[(h * t * t)..<(h * t * t + t)] }
            let fromRows = try VisionZip.compress(attention: classRows, heads: heads, classRowsOnly: true,
                                                  keysMean: keys, hidden: hidden, budget: budget)
            XCTAssertEqual(fromRows.selection, s, "\(c.name): CLS rows only")
            XCTAssertEqual(fromRows.rows, out.rows, "\(c.name): CLS rows only")
        }
        print("visionzip reference cases: max row error (relative) \(worst)")
    }

    // MARK: (2) hand-made cases

    /// Hidden rows H[i] = [i, 10·i + 1] (width 2).
    func hidden(_ t: Int) -> [Float] { (0..<t).flatMap { [Float($0), Float(10 * $0 + 1)] } }

    /// One head whose CLS row is `cls`; other rows uniform.
    func attention(cls: [Float]) -> [Float] {
        let t = cls.count
        return cls + [Float](repeating: 1 / Float(t), count: (t - 1) * t)
    }

    func testScoreTiesGoToLowerIndex() throws {
        let a = attention(cls: [0.25, 0.125, 0.25, 0.25, 0.125])
        let k: [Float] = [1, 0, 1, 0, 0, 1, 1, 1, 1, 0]
        let h = hidden(5)
        func dominant(_ d: Int) throws -> [Int] {
            try VisionZip.compress(attention: a, heads: 1, keysMean: k, hidden: h,
                                   budget: .init(dominant: d, contextual: 0)).selection.dominant
        }
        XCTAssertEqual(try dominant(1), [0])
        XCTAssertEqual(try dominant(2), [0, 2])  // 2 and 3 tie: 2
        XCTAssertEqual(try dominant(3), [0, 2, 3])
        XCTAssertEqual(try dominant(4), [0, 1, 2, 3])  // 1 and 4 tie: 1
    }

    func testContextualZeroKeepsDominantRowsOnly() throws {
        let a = attention(cls: [0.25, 0.125, 0.375, 0.0625, 0.1875])
        let h = hidden(5)
        let out = try VisionZip.compress(attention: a, heads: 1, keysMean: [Float](repeating: 1, count: 10), hidden: h,
                                         budget: .init(dominant: 3, contextual: 0))
        XCTAssertEqual(out.selection.dominant, [0, 2, 4])
        XCTAssertEqual(out.selection.remaining, [1, 3])
        XCTAssertEqual(out.selection.contextual, [])
        XCTAssertEqual(out.selection.memberSlots, [])
        XCTAssertEqual(out.selection.step, 0)
        XCTAssertEqual(out.rows, [0, 1, 2, 21, 4, 41])
        XCTAssertEqual(out.selection.tokensAfter, 3)
    }

    func testDominantAllAndOversizedBudgetsClamp() throws {
        let a = attention(cls: [0.25, 0.125, 0.375, 0.0625, 0.1875])
        let k = [Float](repeating: 1, count: 10)
        let h = hidden(5)
        for budget in [VisionZip.Budget(dominant: 5, contextual: 0), .init(dominant: 5, contextual: 3),
                       .init(dominant: 9, contextual: 2)] {
            let out = try VisionZip.compress(attention: a, heads: 1, keysMean: k, hidden: h, budget: budget)
            XCTAssertEqual(out.selection.dominant, [0, 1, 2, 3, 4], "\(budget)")
            XCTAssertEqual(out.selection.remaining, [])
            XCTAssertEqual(out.selection.contextual, [])
            XCTAssertEqual(out.selection.requested, budget)
            XCTAssertEqual(out.selection.applied, .init(dominant: 5, contextual: 0))
            XCTAssertEqual(out.rows, h, "\(budget): all rows, in order")
        }
    }

    /// R = 3 < C = 5: step 1, every remaining token is a target with no members, and its row is H[target].
    func testFewerRemainingThanContextual() throws {
        let a = attention(cls: [0.25, 0.125, 0.375, 0.0625, 0.1875])
        let k: [Float] = [1, 0, 1, 0, 0, 1, 1, 1, 1, -1]
        let h = hidden(5)
        for merge in VisionZip.Merge.allCases {
            let out = try VisionZip.compress(attention: a, heads: 1, keysMean: k, hidden: h,
                                             budget: .init(dominant: 2, contextual: 5), merge: merge)
            let s = out.selection
            XCTAssertEqual(s.dominant, [0, 2])
            XCTAssertEqual(s.step, 1)
            XCTAssertEqual(s.applied, .init(dominant: 2, contextual: 3))
            XCTAssertEqual(s.contextual, [.init(target: 1, members: []), .init(target: 3, members: []),
                                          .init(target: 4, members: [])])
            XCTAssertEqual(s.memberSlots, [-1, -1, -1])
            XCTAssertEqual(out.rows, [0, 1, 2, 21, 1, 11, 3, 31, 4, 41], "\(merge)")
        }
    }

    /// T = 6, D = 1 (CLS only), C = 2: R = 5, step 2, targets 1 and 3. Tokens 2, 4, 5 all lean toward token 1,
    /// so target 3 is left with no members (row = H[3]); a metric equally close to both goes to the lower target.
    func testTargetWithoutMembersAndAssignmentTie() throws {
        let a = attention(cls: [0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
        let h = hidden(6)
        let k: [Float] = [9, 9, /* 1 */ 1, 0, /* 2 */ 1, 0.25, /* 3 */ 0, 1, /* 4 */ 2, 0, /* 5 */ 1, -0.5]
        let out = try VisionZip.compress(attention: a, heads: 1, keysMean: k, hidden: h,
                                         budget: .init(dominant: 1, contextual: 2))
        XCTAssertEqual(out.selection.dominant, [0])
        XCTAssertEqual(out.selection.contextual, [.init(target: 1, members: [2, 4, 5]), .init(target: 3, members: [])])
        XCTAssertEqual(out.selection.memberSlots, [-1, 0, -1, 0, 0])
        let slot0: [Float] = [1 + (2 + 4 + 5) / 3, 11 + (21 + 41 + 51) / 3]
        XCTAssertEqual(out.rows[0..<2], [0, 1])
        XCTAssertEqual(out.rows[2], slot0[0], accuracy: 1e-6)
        XCTAssertEqual(out.rows[3], slot0[1], accuracy: 1e-5)
        XCTAssertEqual(Array(out.rows[4..<6]), [3, 31], "no members: the target row itself")

        // Token 2 at 45° between the targets: tie → target 1 (slot 0); token 4 at 45° too.
        let tie: [Float] = [9, 9, 1, 0, 1, 1, 0, 1, 3, 3, 0, 2]
        let t2 = try VisionZip.compress(attention: a, heads: 1, keysMean: tie, hidden: h,
                                        budget: .init(dominant: 1, contextual: 2))
        XCTAssertEqual(t2.selection.contextual, [.init(target: 1, members: [2, 4]), .init(target: 3, members: [5])])
    }

    /// SigLIP rule: no CLS, s[j] = mean over heads and queries of A[h, i, j]; the top D tokens, no CLS slot.
    func testReceivedAttentionWithoutCLS() throws {
        let t = 4
        // head 0: queries 0-2 one row, query 3 another; head 1: every query the same row.
        let h0a: [Float] = [0.125, 0.5, 0.125, 0.25], h0b: [Float] = [0.25, 0.25, 0.4375, 0.0625]
        let h1: [Float] = [0.375, 0.125, 0.25, 0.25]
        let a = h0a + h0a + h0a + h0b + h1 + h1 + h1 + h1
        // Column sums over the 8 rows: [2.125, 2.25, 1.8125, 1.8125] (/ 8) → token 1, then 0, then 2 and 3 tie.
        let k: [Float] = [1, 0, 0, 1, 1, 1, 1, 0.5]
        let hid = hidden(t)
        let two = try VisionZip.compress(attention: a, heads: 2, keysMean: k, hidden: hid,
                                         budget: .init(dominant: 2, contextual: 1), hasCLS: false)
        XCTAssertEqual(two.selection.rule, .receivedAttention)
        XCTAssertEqual(two.selection.dominant, [0, 1])
        XCTAssertEqual(two.selection.contextual, [.init(target: 2, members: [3])])
        XCTAssertEqual(two.rows, [0, 1, 1, 11, 2 + 3, 21 + 31])
        let three = try VisionZip.compress(attention: a, heads: 2, keysMean: k, hidden: hid,
                                           budget: .init(dominant: 3, contextual: 0), hasCLS: false)
        XCTAssertEqual(three.selection.dominant, [0, 1, 2], "2 and 3 tie: 2")
        // Without CLS, D = 0 is allowed: everything is contextual.
        let none = try VisionZip.compress(attention: a, heads: 2, keysMean: k, hidden: hid,
                                          budget: .init(dominant: 0, contextual: 2), hasCLS: false)
        XCTAssertEqual(none.selection.dominant, [])
        XCTAssertEqual(none.selection.contextual.map(\.target), [0, 2])
        // The CLS rule reads query 0 of each head: patch 1 (0.5 + 0.125) beats 3 (0.25 + 0.25) and 2 (0.125 + 0.25).
        let cls = try VisionZip.compress(attention: a, heads: 2, keysMean: k, hidden: hid,
                                         budget: .init(dominant: 2, contextual: 0))
        XCTAssertEqual(cls.selection.rule, .classAttention)
        XCTAssertEqual(cls.selection.dominant, [0, 1])
        XCTAssertTrue(cls.selection.summary(merge: .sum).contains("cls-attention 4 → 2 tokens"))
    }

    func testBudgetErrors() throws {
        let a = attention(cls: [0.25, 0.25, 0.25, 0.25])
        let k = [Float](repeating: 1, count: 8), h = hidden(4)
        func run(_ d: Int, _ c: Int, cls: Bool = true, rowsOnly: Bool = false) throws {
            _ = try VisionZip.compress(attention: rowsOnly ? Array(a[0..<4]) : a, heads: 1, classRowsOnly: rowsOnly,
                                       keysMean: k, hidden: h, budget: .init(dominant: d, contextual: c), hasCLS: cls)
        }
        XCTAssertThrowsError(try run(0, 3), "D < 1 with CLS")
        XCTAssertThrowsError(try run(-1, 3, cls: false), "negative D")
        XCTAssertThrowsError(try run(2, -1), "negative C")
        XCTAssertThrowsError(try run(0, 0, cls: false), "empty budget")
        XCTAssertThrowsError(try run(2, 0, cls: false, rowsOnly: true), "received attention needs the full matrix")
        XCTAssertNoThrow(try run(2, 1, rowsOnly: true))
        XCTAssertThrowsError(try VisionZip.compress(attention: a, heads: 1, keysMean: k, hidden: Array(h.dropLast()),
                                                    budget: .init(dominant: 2, contextual: 1)), "hidden size")
    }

    // MARK: (3) merge = mean

    /// T = 4, D = 1, C = 1: R = 3, step 3, target 1 with members 2 and 3.
    func testMeanMerge() throws {
        let a = attention(cls: [0.25, 0.25, 0.25, 0.25])
        let k: [Float] = [1, 0, 1, 0, 1, 1, 0, 1]
        let h: [Float] = [7, 7, 1, 2, 3, 4, 5, 9]
        let mean = try VisionZip.compress(attention: a, heads: 1, keysMean: k, hidden: h,
                                          budget: .init(dominant: 1, contextual: 1), merge: .mean)
        XCTAssertEqual(mean.selection.contextual, [.init(target: 1, members: [2, 3])])
        XCTAssertEqual(mean.rows, [7, 7, (1 + 3 + 5) / 3, (2 + 4 + 9) / 3])
        let sum = try VisionZip.compress(attention: a, heads: 1, keysMean: k, hidden: h,
                                         budget: .init(dominant: 1, contextual: 1))
        XCTAssertEqual(sum.rows, [7, 7, 1 + 4, 2 + 6.5])
    }

    // MARK: (4) budget split

    func testBudgetSplit() throws {
        let expected: [(Int, Int, Int)] = [(64, 54, 10), (128, 108, 20), (192, 162, 30), (1, 1, 0), (3, 3, 0),
                                           (4, 3, 1), (7, 6, 1), (100, 84, 16), (576, 486, 90), (577, 487, 90)]
        for (n, d, c) in expected {
            XCTAssertEqual(try VisionZip.Budget.split(visualTokens: n), .init(dominant: d, contextual: c), "\(n)")
        }
        for n in 1...2000 {
            let b = try VisionZip.Budget.split(visualTokens: n)
            XCTAssertEqual(b.total, n)
            XCTAssertGreaterThanOrEqual(b.dominant, 1)
        }
        XCTAssertThrowsError(try VisionZip.Budget.split(visualTokens: 0))
        // Budgets past any encoder's tokens are refused, not overflowed (a fuzz finding: "visual_tokens": "8446744073709551615").
        XCTAssertEqual(try VisionZip.Budget.split(visualTokens: 1 << 24).total, 1 << 24)
        for n in [(1 << 24) + 1, Int.max / 5, Int.max] {
            XCTAssertThrowsError(try VisionZip.Budget.split(visualTokens: n), "\(n)")
            XCTAssertThrowsError(try VisualTokens(String(n)), "\(n)")
        }
        XCTAssertThrowsError(try VisualTokens(dominant: Int.max, contextual: 1))
        XCTAssertThrowsError(try VisualTokens(dominant: 1 << 23, contextual: 1 << 23 + 1))
        XCTAssertEqual(try VisualTokens(dominant: 0, contextual: 3), .budget(.init(dominant: 0, contextual: 3)))
    }

    // MARK: (5) LLaVA end to end

    /// The CLIP tower on the llava-4x fixture (f32 GGUF) feeds VisionZip (4, 2); the projector, applied to all six
    /// rows (CLS row included, as the reference does), matches d4_c2_projected.
    func testLlavaTowerThroughProjector() throws {
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-visionzip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temp) }
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let (_, mm) = try LlavaModelTests.convertLlava(.f32, into: temp)
        let file = try GGUFFile(path: mm)
        let tower = try VisionEncoder(file: file)
        let pixels = try Data(contentsOf: root.appendingPathComponent("models/llava/pixel_values.bin"))
            .withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let vision = try tower(pixels: pixels, probe: [.fullMaps, .headMeanKeys])
        let out = try VisionZip.compress(attention: try XCTUnwrap(vision.attention), heads: tower.config.heads,
                                         keysMean: try XCTUnwrap(vision.keysMean), hidden: vision.features,
                                         budget: .init(dominant: 4, contextual: 2))
        XCTAssertEqual(out.selection.dominant, try Self.ints("d4_c2_dominant"))
        XCTAssertEqual(out.selection.memberSlots, try Self.ints("d4_c2_members"))

        let projector = try Projector(file: file)
        // VisionZip's rows keep CLS among the dominant tokens: all of them are projected, no selection.
        let projected = try projector.project(out.rows)
        let reference = try Self.floats("d4_c2_projected")
        XCTAssertEqual(projected.count, reference.count)
        let e = zip(projected, reference).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        print("visionzip llava (4, 2) end to end: projected max abs error \(e)")
        XCTAssertLessThanOrEqual(e, 1e-4)
    }

    // MARK: (6) precomputed scores (pixel-shuffle groups)

    /// Scores given per token: the top D by score, ascending; contextual as usual; the rule says "grouped".
    func testPrecomputedScores() throws {
        let scores: [Double] = [0.1, 0.9, 0.5, 0.2, 0.05]
        let keys: [Float] = [1, 0, 0, 1, 0, 1, 0.9, 0.1, 0.1, 0.9]
        let s = try scores.withUnsafeBufferPointer { sc in
            try keys.withUnsafeBufferPointer {
                try VisionZip.select(attention: .scores(sc), keysMean: $0, headDim: 2,
                                     budget: .init(dominant: 2, contextual: 1), hasCLS: false)
            }
        }
        XCTAssertEqual(s.dominant, [1, 2])
        XCTAssertEqual(s.rule, .groupedReceivedAttention)
        XCTAssertEqual(s.contextual, [.init(target: 0, members: [3, 4])])
        // With a CLS token, or a count that does not match, it is an error.
        XCTAssertThrowsError(try scores.withUnsafeBufferPointer { sc in
            try keys.withUnsafeBufferPointer {
                try VisionZip.select(attention: .scores(sc), keysMean: $0, headDim: 2, budget: .init(dominant: 2, contextual: 1))
            }
        })
        XCTAssertThrowsError(try scores.dropLast().withUnsafeBufferPointer { sc in
            try keys.withUnsafeBufferPointer {
                try VisionZip.select(attention: .scores(sc), keysMean: $0, headDim: 2, budget: .init(dominant: 2, contextual: 1),
                                     hasCLS: false)
            }
        })
        // receivedAttention is the mean over heads and queries.
        let a: [Float] = [0.5, 0.5, 1, 0, /* head 2 */ 0, 1, 0.25, 0.75]
        let r = try a.withUnsafeBufferPointer { try VisionZip.receivedAttention($0, heads: 2) }
        XCTAssertEqual(r, [(0.5 + 1 + 0 + 0.25) / 4, (0.5 + 0 + 1 + 0.75) / 4])
    }
}

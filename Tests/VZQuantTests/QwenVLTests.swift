import Foundation
import XCTest
@testable import VZQuant
@testable import VZQFamilies
@testable import VZQImage
@testable import VZQModels
@testable import VZQRuntime
@testable import VZQConvert
@testable import VZQFormats
@testable import VZQTokenReduction

/// Qwen2-VL and Qwen2.5-VL against transformers (Fixtures/layouts/qwen2-vl, qwen2.5-vl from
/// tools/make_qwen_vl_fixtures.py on the tiny checkpoints in Fixtures/hf): the converted files, the processor's
/// resize and pixels, the merger's rows, the prompt's token ids, the M-RoPE position ids, the last prefill logits
/// and 8 greedy tokens, over 6 image sizes, a two-image prompt and a text-only prompt.
final class QwenVLTests: XCTestCase {
    struct Reference: Decodable {
        struct PixelStats: Decodable { let shape: [Int]; let sum: Double; let sum_sq: Double }
        struct PixelFile: Decodable { let file: String; let shape: [Int] }
        struct Image: Decodable {
            let image_size: [Int]
            let resized: [Int]
            let grid_thw: [Int]
            let num_tokens: Int
            let pixel_values: PixelStats
            let merger_row_sums: [Float]
            let merger_rows: [[Float]]
        }
        struct Case: Decodable {
            let name: String
            let images: [String]
            let text: String
            let input_ids: [Int32]
            let per_image: [Image]
            let position_ids: [[Int32]]
            let pixel_values_file: PixelFile?
            let logits_last: [Float]
            let generated: [Int32]
        }
        let token_ids: [String: Int32]
        let cases: [Case]
    }

    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-qwen-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func testQwen2VL() throws { try check(checkpoint: "qwen2-vl") }
    func testQwen25VL() throws { try check(checkpoint: "qwen2.5-vl") }

    func check(checkpoint: String) throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: root.appendingPathComponent("layouts/\(checkpoint)/cases.json")))
        let imagePad = try XCTUnwrap(ref.token_ids["<|image_pad|>"])
        let (text, converted) = try LlavaModelTests.convert(checkpoint, .f32, into: temp, mmproj: true)
        let mmproj = try XCTUnwrap(converted)
        var worstFeature = 0.0, worstLogit: Float = 0
        for c in ref.cases {
            let session = try Session(model: text, mmproj: mmproj, options: SessionOptions(contextLength: 512, kvCache: .f32))
            let vision = try XCTUnwrap(session.vision)
            let images = try c.images.map { try ImageDecoder.decode(file: root.appendingPathComponent($0).path) }
            var encoded: [EncodedImage] = []
            for (i, image) in images.enumerated() {
                let e = try vision.encode(image, visualTokens: .all, keepCrops: true)
                let expected = c.per_image[i]
                let crop = try XCTUnwrap(e.processedCrops?.first)
                XCTAssertEqual([crop.height, crop.width], expected.resized, "\(c.name) image \(i): resized size")
                XCTAssertEqual(e.tokens, expected.num_tokens, "\(c.name) image \(i): image tokens")
                // The processor's pixel_values hold each patch twice (two frames): the sums are twice the image's.
                let px = crop.normalizedCHW(mean: vision.processor.mean, std: vision.processor.std)
                XCTAssertEqual(2 * px.reduce(0.0) { $0 + Double($1) }, expected.pixel_values.sum, accuracy: 1e-2, "\(c.name): pixel sum")
                XCTAssertEqual(2 * px.reduce(0.0) { $0 + Double($1) * Double($1) }, expected.pixel_values.sum_sq, accuracy: 3e-2,
                               "\(c.name): pixel sum of squares")
                // Merger rows: the full first rows and every row's sum, relative to the rows' scale.
                let w = vision.outputWidth
                let scale = Double(expected.merger_rows.flatMap { $0 }.map { abs($0) }.max() ?? 1)
                for (r, row) in expected.merger_rows.enumerated() {
                    let got = Array(e.embeddings[(r * w)..<((r + 1) * w)])
                    let err = zip(got, row).map { Double(abs($0 - $1)) }.max() ?? 0
                    worstFeature = max(worstFeature, err / scale)
                    XCTAssertLessThanOrEqual(err / scale, 1e-5, "\(c.name) image \(i) merger row \(r)")
                }
                for (r, sum) in expected.merger_row_sums.enumerated() {
                    let got = e.embeddings[(r * w)..<((r + 1) * w)].reduce(0.0) { $0 + Double($1) }
                    XCTAssertEqual(got, Double(sum), accuracy: 1e-5 * scale * Double(w), "\(c.name) image \(i) merger row \(r) sum")
                }
                if let file = c.pixel_values_file, i == 0 {
                    try checkPatchRows(px, height: crop.height, width: crop.width, against: root.appendingPathComponent(file.file),
                                       shape: file.shape, name: c.name)
                }
                encoded.append(e)
            }
            let pieces = try PromptPiece.splice(c.text, images: encoded, marker: "<|vision_start|><|image_pad|><|vision_end|>")
            let report = try session.prefill(pieces, addBOS: false)
            let ids = session.history.map { $0 < 0 ? imagePad : $0 }
            XCTAssertEqual(ids, c.input_ids, "\(c.name): prompt token ids")
            // position_ids [3][seq] → per row (t, h, w).
            let positions = try XCTUnwrap(report.ropePositions, "\(c.name): M-RoPE positions")
            let expected = (0..<c.input_ids.count).flatMap { k in c.position_ids.map { $0[k] } }
            XCTAssertEqual(positions, expected, "\(c.name): rope position ids")
            let e = zip(session.lastLogits, c.logits_last).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            XCTAssertEqual(session.lastLogits.count, c.logits_last.count)
            XCTAssertLessThanOrEqual(e, 1e-4, "\(c.name): last-position logits")
            worstLogit = max(worstLogit, e)
            var generated: [Int32] = []
            for _ in 0..<c.generated.count {
                let next = Int32(session.lastLogits.indices.max { session.lastLogits[$0] < session.lastLogits[$1] }!)
                generated.append(next)
                try session.decode(next)
            }
            XCTAssertEqual(generated, c.generated, "\(c.name): greedy tokens")
        }
        print("\(checkpoint): \(ref.cases.count) prompts; merger rows max relative error \(worstFeature), last logits max abs error \(worstLogit)")
    }

    /// A conversation in turns (prefill, 3 decoded tokens, a truncation, another prefill) reaches the same logits as
    /// one prefill of the whole text: the M-RoPE positions continue across decode steps, later turns and
    /// truncation, with the image whole and pruned by VisionZip (whose text keeps the unpruned positions).
    func testPositionsContinueAcrossTurns() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let (text, converted) = try LlavaModelTests.convert("qwen2.5-vl", .f32, into: temp, mmproj: true)
        let mmproj = try XCTUnwrap(converted)
        let picture = try ImageDecoder.decode(file: root.appendingPathComponent("layouts/images/img_300x130.png").path)
        for budget in [VisualTokens.all, .budget(.init(dominant: 9, contextual: 3))] {
            func session() throws -> Session {
                try Session(model: text, mmproj: mmproj, options: SessionOptions(contextLength: 256, kvCache: .f32))
            }
            let turns = try session()
            let image = try XCTUnwrap(turns.vision).encode(picture, visualTokens: budget)
            let first: [PromptPiece] = [.text("<|im_start|>user\n"), .image(image), .text("What is it?<|im_end|>\n<|im_start|>assistant\n")]
            try turns.prefill(first, addBOS: false)
            var generated: [Int32] = []
            for _ in 0..<3 {
                let next = Int32(turns.lastLogits.indices.max { turns.lastLogits[$0] < turns.lastLogits[$1] }!)
                generated.append(next)
                try turns.decode(next)
            }
            // A stop string's tokens are taken back: drop the last one and feed it again.
            turns.truncate(to: turns.position - 1)
            try turns.prefill([.tokens([generated[2]]), .text("<|im_end|>\n<|im_start|>user\nAnd now?")], addBOS: false)
            let whole = try session()
            try whole.prefill(first + [.tokens(generated), .text("<|im_end|>\n<|im_start|>user\nAnd now?")], addBOS: false)
            XCTAssertEqual(turns.history, whole.history)
            XCTAssertEqual(turns.model.ropePosition, whole.model.ropePosition)
            let e = zip(turns.lastLogits, whole.lastLogits).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            XCTAssertLessThanOrEqual(e, 1e-4, "\(budget): logits after turns vs one prefill")
            if budget != .all {
                // The pruned image moves the text after it as far as the whole image does.
                let full = try session()
                let all = try XCTUnwrap(full.vision).encode(picture, visualTokens: .all)
                try full.prefill([.text("<|im_start|>user\n"), .image(all), .text("What")], addBOS: false)
                let pruned = try session()
                try pruned.prefill([.text("<|im_start|>user\n"), .image(image), .text("What")], addBOS: false)
                XCTAssertEqual(full.model.ropePosition, pruned.model.ropePosition)
            }
        }
    }

    /// The processor's pixel_values [patches, 3·2·14·14]: merge groups in raster order, their 2×2 patches TL, TR,
    /// BL, BR, each row [channel][frame][y][x] with both frames the image — rebuilt from our CHW pixels.
    func checkPatchRows(_ chw: [Float], height h: Int, width w: Int, against url: URL, shape: [Int], name: String) throws {
        let data = try Data(contentsOf: url)
        let reference = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let p = 14, rows = h / p, cols = w / p
        XCTAssertEqual(shape, [rows * cols, 3 * 2 * p * p], "\(name): pixel_values shape")
        var ours: [Float] = []
        for gy in 0..<(rows / 2) {
            for gx in 0..<(cols / 2) {
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let py = 2 * gy + dy, px = 2 * gx + dx
                    for ch in 0..<3 {
                        for _ in 0..<2 {
                            for y in 0..<p { for x in 0..<p { ours.append(chw[ch * h * w + (py * p + y) * w + px * p + x]) } }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(ours.count, reference.count)
        let e = zip(ours, reference).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        XCTAssertLessThanOrEqual(e, 1e-5, "\(name): pixel_values")
    }
}

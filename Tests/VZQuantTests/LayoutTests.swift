import Foundation
import XCTest
@testable import VZQuant
@testable import VZQFamilies
@testable import VZQImage
@testable import VZQRuntime
@testable import VZQConvert
@testable import VZQFormats
@testable import VZQTokenReduction

/// Image-token layouts of LLaVA-1.5, LLaVA-NeXT, Idefics3 and SmolVLM against transformers' own processors and models
/// (Fixtures/layouts from tools/make_layout_fixtures.py on the tiny checkpoints in Fixtures/hf): the converted
/// files, the crops' pixels, the whole prompt's token ids (image rows as the image token) and the prefill logits.
final class LayoutTests: XCTestCase {
    struct Reference: Decodable {
        struct Crop: Decodable { let sum: Double; let sum_sq: Double }
        struct Image: Decodable { let image_size: [Int]; let num_crops: Int; let num_image_tokens: Int; let crops: [Crop] }
        struct Case: Decodable {
            let name: String
            let images: [String]
            let text: String
            let input_ids: [Int32]
            let image_token_id: Int32
            let num_image_tokens: Int
            let per_image: [Image]
            let processor_kwargs: [String: Bool]?
            let logits_last: [Float]
        }
        let cases: [Case]
    }

    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-layout-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func testLlava15() throws { try check(checkpoint: "llava-4x", family: "llava") }
    func testLlavaNext() throws { try check(checkpoint: "llava-next", family: "llava-next") }
    func testLlavaNext5x() throws { try check(checkpoint: "llava-next-5x", family: "llava-next") }
    func testIdefics3() throws { try check(checkpoint: "idefics3", family: "idefics3") }
    func testSmolVLM() throws { try check(checkpoint: "smolvlm", family: "smolvlm") }

    /// Every case of `family` on the converted `checkpoint` (f32).
    func check(checkpoint: String, family: String) throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: root.appendingPathComponent("layouts/\(family)/cases.json")))
        let (text, converted) = try LlavaModelTests.convert(checkpoint, .f32, into: temp, mmproj: true)
        let mmproj = try XCTUnwrap(converted)
        var checked = 0
        var worst: Float = 0
        for c in ref.cases {
            let images = try c.images.map { try ImageDecoder.decode(file: root.appendingPathComponent("layouts/images/\($0)").path) }
            if c.processor_kwargs?["do_image_splitting"] == false {
                try checkUnsplit(c, images: images, mmproj: mmproj)
                continue
            }
            let session = try Session(model: text, mmproj: mmproj, options: SessionOptions(contextLength: 512, kvCache: .f32))
            let vision = try XCTUnwrap(session.vision)
            var pieces: [PromptPiece] = []
            for (i, segment) in c.text.components(separatedBy: "<image>").enumerated() {
                if i > 0 {
                    let encoded = try vision.encode(images[i - 1], visualTokens: .all, keepCrops: true)
                    let expected = c.per_image[i - 1]
                    XCTAssertEqual(encoded.crops.count, expected.num_crops, "\(c.name) image \(i): crops")
                    XCTAssertEqual(encoded.tokens, expected.num_image_tokens, "\(c.name) image \(i): image tokens")
                    for (k, crop) in (encoded.processedCrops ?? []).enumerated() where k < expected.crops.count {
                        let px = crop.normalizedCHW(mean: vision.processor.mean, std: vision.processor.std)
                        let sum = px.reduce(0.0) { $0 + Double($1) }, sq = px.reduce(0.0) { $0 + Double($1) * Double($1) }
                        let tolerance = 1e-2
                        XCTAssertEqual(sum, expected.crops[k].sum, accuracy: tolerance, "\(c.name) image \(i) crop \(k): pixel sum")
                        XCTAssertEqual(sq, expected.crops[k].sum_sq, accuracy: 3 * tolerance, "\(c.name) image \(i) crop \(k): pixel sum of squares")
                    }
                    pieces.append(.image(encoded))
                }
                if !segment.isEmpty { pieces.append(.text(segment)) }
            }
            // BOS follows the reference ids: the tiny tokenizers ran with BOS settings their saved configs do not all
            // carry (SmolVLM's was switched off in memory); the layout is what is compared.
            try session.prefill(pieces, addBOS: c.input_ids.first == session.tokenizer.bos)
            let ids = session.history.map { $0 < 0 ? c.image_token_id : $0 }
            XCTAssertEqual(ids, c.input_ids, "\(c.name): prompt token ids")
            XCTAssertEqual(ids.filter { $0 == c.image_token_id }.count, c.num_image_tokens, "\(c.name): image tokens")
            XCTAssertEqual(session.lastLogits.count, c.logits_last.count)
            let e = zip(session.lastLogits, c.logits_last).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            XCTAssertLessThanOrEqual(e, 1e-4, "\(c.name): last-position logits")
            worst = max(worst, e)
            checked += 1
        }
        print("layouts \(checkpoint): \(checked) prompts, token ids equal, last logits max abs error \(worst)")
        XCTAssertGreaterThanOrEqual(checked, 5)
    }

    /// LLaVA-NeXT's packing on a 1×2 grid of 2×2-patch tiles, one value per row: all patches stitched with a
    /// newline per map row; with VisionZip selections, the official code's order (kept patches in raster order
    /// over the stitched map, then the tiles' CLS rows, then their contextual rows; the overview as it is).
    func testLlavaNextPacking() throws {
        let family = LlavaNextFamily(processor: try .clip(size: 32, crop: 32), gridPinpoints: [(32, 64)], side: 32)
        func crop(_ v: [Float], _ s: VisionZip.Selection? = nil) -> CropRows {
            CropRows(rows: v, count: v.count, selection: s, gridRows: 2, gridColumns: 2, hasClassToken: true)
        }
        let all = try family.pack([crop([0, 1, 2, 3]), crop([10, 11, 12, 13]), crop([20, 21, 22, 23])],
                                  width: 64, height: 32, newline: [-1])
        XCTAssertEqual(all.embeddings, [0, 1, 2, 3, 10, 11, 20, 21, -1, 12, 13, 22, 23, -1])
        XCTAssertEqual(family.rowCount(width: 64, height: 32, rowsPerCrop: 4, reduced: false), 14)
        // A 64×16 picture: unpadding keeps int(round(16 · 4/64, 7)) = 1 map row, so the pad is (2 − 1) / 2 = 0 rows
        // at each end and, as transformers' slice [0, 2) gives, both rows stay.
        let wide = try family.pack([crop([0, 1, 2, 3]), crop([10, 11, 12, 13]), crop([20, 21, 22, 23])],
                                   width: 64, height: 16, newline: [-1])
        XCTAssertEqual(wide.embeddings, all.embeddings)

        func selection(_ dominant: [Int], contextual: Int) -> VisionZip.Selection {
            VisionZip.Selection(dominant: dominant, remaining: [], contextual: (0..<contextual).map { .init(target: 10 + $0, members: []) },
                                step: 1, rule: .classAttention, requested: .init(dominant: dominant.count, contextual: contextual),
                                applied: .init(dominant: dominant.count, contextual: contextual), tokensBefore: 5)
        }
        // Tile 0 keeps CLS and patch 1 (encoder index 2); tile 1 keeps CLS, patches 0 and 3 (indices 1, 4).
        let zipped = try family.pack([crop([100, 101, 102], selection([0, 3], contextual: 1)),
                                      crop([10, 11, 12], selection([0, 2], contextual: 1)),
                                      crop([20, 21, 22, 23], selection([0, 1, 4], contextual: 1))],
                                     width: 64, height: 32, newline: [-1])
        // Map 2×4: (0,1) = tile 0 patch 1 → 11; (0,2) = tile 1 patch 0 → 21; (1,3) = tile 1 patch 3 → 22.
        XCTAssertEqual(zipped.embeddings, [100, 101, 102, 11, 21, 22, 10, 20, 12, 23])
        XCTAssertEqual(zipped.layout, [.rows(0..<10)])
    }

    /// Idefics3 without image splitting: one global image, its text, the step-1 image squeezed to a tile.
    func checkUnsplit(_ c: Reference.Case, images: [RGBImage], mmproj: String) throws {
        let file = try GGUFFile(path: mmproj)
        let pipeline = try VisionPipeline(file: file)
        let base = try XCTUnwrap(pipeline.family as? Idefics3Family)
        let family = Idefics3Family(processor: base.processor, side: base.side, longestEdge: base.longestEdge, splitting: false)
        let image = images[0], expected = c.per_image[0]
        let crops = family.crops(of: image)
        XCTAssertEqual(crops.count, expected.num_crops, "\(c.name): crops")
        let px = crops[0].normalizedCHW(mean: base.processor.mean, std: base.processor.std)
        XCTAssertEqual(px.reduce(0.0) { $0 + Double($1) }, expected.crops[0].sum, accuracy: 1e-2, "\(c.name): pixel sum")
        let expectedLayout: [ImageLayoutPiece] = [.text("<fake_token_around_image><global-img>"), .crop(0),
                                                  .text("<fake_token_around_image>")]
        XCTAssertEqual(family.promptLayout(width: image.width, height: image.height, cropCount: 1), expectedLayout)
    }
}

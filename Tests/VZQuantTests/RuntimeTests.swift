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

/// The runtime (Session, VisionPipeline, generation) on the llava-4x fixture, against the transformers references
/// in Fixtures/models/{llava,visionzip} (tools/make_model_references.py).
final class RuntimeTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-runtime-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    static func fixture(_ path: String) throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        return root.appendingPathComponent(path)
    }

    static func floats(_ path: String) throws -> [Float] {
        try Data(contentsOf: fixture("models/\(path).bin")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    static func ints(_ path: String) throws -> [Int32] {
        try Data(contentsOf: fixture("models/\(path).bin")).withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    }

    /// llava-4x converted to `type`: (text, mmproj).
    func convertLlava(_ type: QuantType = .f32) throws -> (String, String) { try LlavaModelTests.convertLlava(type, into: temp) }

    func maxAbs(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func argmax(_ a: UnsafeBufferPointer<Float>) -> Int32 { Int32(a.indices.max { a[$0] < a[$1] }!) }

    /// The fixture's ids with the runs of image tokens (id 400) replaced by one image piece.
    func pieces(_ ids: [Int32], image: EncodedImage) -> [PromptPiece] {
        let first = ids.firstIndex(of: 400)!, last = ids.lastIndex(of: 400)!
        return [.tokens(Array(ids[..<first])), .image(image), .tokens(Array(ids[(last + 1)...]))]
    }

    // MARK: VisionZip off: the spliced prefill and the greedy tokens of the LLaVA reference

    func testSessionPrefillAndGreedyMatchTransformers() throws {
        let (text, mm) = try convertLlava()
        let session = try Session(model: text, mmproj: mm, options: SessionOptions(contextLength: 64, batch: 16))
        let vision = try XCTUnwrap(session.vision)
        let image = try vision.encode(pixelCrops: [try Self.floats("llava/pixel_values")], visualTokens: .all)
        XCTAssertEqual(image.tokens, 16)
        XCTAssertNil(image.crops[0].selection)
        let ids = try Self.ints("llava/input_ids")
        let report = try session.prefill(pieces(ids, image: image), addBOS: false)
        XCTAssertEqual(report.tokens, ids.count)
        XCTAssertEqual(report.imageTokens, 16)
        XCTAssertEqual(session.position, ids.count)

        let vocab = session.model.vocab
        let reference = try Self.floats("llava/prefill_logits")
        let e = maxAbs(session.lastLogits[...], reference[(ids.count - 1) * vocab ..< ids.count * vocab])
        print("runtime llava prefill: last-row logits max abs error \(e)")
        XCTAssertLessThanOrEqual(e, 1e-3)

        // Greedy generation, three decode steps after the prefill: the reference's four tokens.
        let greedy = try Self.ints("llava/greedy_tokens")
        var emitted: [Int32] = []
        let gen = try session.generate(maxTokens: 4, stopTokens: [], sample: { l, _ in self.argmax(l) },
                                       onToken: { emitted.append($0); return false })
        XCTAssertEqual(gen.tokens, Array(greedy.prefix(4)))
        XCTAssertEqual(emitted, gen.tokens)
        XCTAssertEqual(gen.stopReason, .maxTokens)
        XCTAssertEqual(gen.decodeSteps, 3, "the last token is not fed back unless keepInCache")
        XCTAssertEqual(session.history.count, ids.count + 3)
        XCTAssertEqual(session.history.filter { $0 == -1 }.count, 16)

        // A stop token ends generation without emitting it; a callback's stop ends it after emitting.
        session.reset()
        try session.prefill(pieces(ids, image: image), addBOS: false)
        let stopped = try session.generate(maxTokens: 4, stopTokens: [greedy[1]], sample: { l, _ in self.argmax(l) },
                                           onToken: { _ in false })
        XCTAssertEqual(stopped.tokens, [greedy[0]])
        XCTAssertEqual(stopped.stopReason, .endOfText)
        session.reset()
        try session.prefill(pieces(ids, image: image), addBOS: false)
        let byString = try session.generate(maxTokens: 4, stopTokens: [], keepInCache: true, sample: { l, _ in self.argmax(l) },
                                            onToken: { _ in true })
        XCTAssertEqual(byString.tokens, [greedy[0]])
        XCTAssertEqual(byString.stopReason, .stopString)
        XCTAssertEqual(session.position, ids.count + 1, "keepInCache feeds the last token back")
    }

    // MARK: VisionZip on: rows and prefill of the reference computed from the spec

    func testSessionWithVisionZipMatchesReference() throws {
        let (text, mm) = try convertLlava()
        let session = try Session(model: text, mmproj: mm, options: SessionOptions(contextLength: 64))
        let vision = try XCTUnwrap(session.vision)
        let image = try vision.encode(pixelCrops: [try Self.floats("llava/pixel_values")],
                                      visualTokens: .budget(.init(dominant: 4, contextual: 2)))
        XCTAssertEqual(image.tokens, 6)
        let selection = try XCTUnwrap(image.crops[0].selection)
        XCTAssertEqual(selection.dominant.map(Int32.init), try Self.ints("visionzip/d4_c2_dominant"))
        XCTAssertEqual(selection.memberSlots.map(Int32.init), try Self.ints("visionzip/d4_c2_members"))
        XCTAssertEqual(image.crops[0].tokensBefore, 17)
        let eRows = maxAbs(image.embeddings[...], try Self.floats("visionzip/d4_c2_projected")[...])
        XCTAssertLessThanOrEqual(eRows, 1e-4)

        let ids = try Self.ints("visionzip/d4_c2_input_ids")
        XCTAssertEqual(ids.filter { $0 == 400 }.count, 6)
        try session.prefill(pieces(ids, image: image), addBOS: false)
        let vocab = session.model.vocab
        let reference = try Self.floats("visionzip/d4_c2_prefill_logits")
        let rows = reference.count / vocab
        let e = maxAbs(session.lastLogits[...], reference[(rows - 1) * vocab ..< rows * vocab])
        print("runtime llava + VisionZip (4, 2): rows \(eRows), last-row logits \(e)")
        XCTAssertLessThanOrEqual(e, 1e-3)

        // The --json report states the same selection.
        let r = RunReport.Image(path: "x.png", encoded: image)
        XCTAssertEqual(r.visionzip?.dominant, selection.dominant)
        XCTAssertEqual(r.visionzip?.tokensBefore, 17)
        XCTAssertEqual(r.visionzip?.tokensAfter, 6)
        XCTAssertEqual(r.visionzip?.contextual.count, 2)
    }

    // MARK: prompt assembly

    func testSpliceAndContextErrors() throws {
        let img = EncodedImage(embeddings: [], tokens: 0, crops: [], timings: .init(), merge: .sum)
        let p = try PromptPiece.splice("A<image>B<image>", images: [img, img])
        XCTAssertEqual(p.count, 4)
        if case let .text(t) = p[0] { XCTAssertEqual(t, "A") } else { XCTFail("text first") }
        XCTAssertThrowsError(try PromptPiece.splice("no marker", images: [img]))
        XCTAssertThrowsError(try PromptPiece.splice("<image><image>", images: [img]))

        let (text, _) = try convertLlava()
        let session = try Session(model: text, options: SessionOptions(contextLength: 8))
        XCTAssertThrowsError(try session.prefill([.tokens([Int32](repeating: 5, count: 9))], addBOS: false)) { error in
            XCTAssertTrue(error is ContextFull, "\(error)")
        }
        XCTAssertEqual(session.position, 0, "a refused prefill leaves the cache as it was")
        XCTAssertThrowsError(try session.encodeImage(path: "/nonexistent.png", visualTokens: .all)) { error in
            XCTAssertTrue("\(error)".contains("mmproj"), "\(error)")
        }
        // Generation until the cache is full stops with context_full, not an error.
        try session.prefill([.tokens([1, 2, 3, 4, 5, 6])], addBOS: false)
        let gen = try session.generate(maxTokens: 10, stopTokens: [], keepInCache: true, sample: { l, _ in self.argmax(l) },
                                       onToken: { _ in false })
        XCTAssertEqual(gen.stopReason, .contextFull)
        XCTAssertEqual(session.position, 8)
    }

    func testVisualTokensOption() throws {
        XCTAssertEqual(try VisualTokens(String(VisualTokens.defaultBudget)), .budget(.init(dominant: 54, contextual: 10)))
        XCTAssertEqual(try VisualTokens("all"), .all)
        XCTAssertEqual(try VisualTokens("192"), .budget(.init(dominant: 162, contextual: 30)))
        XCTAssertEqual(try VisualTokens(dominant: 7, contextual: 0), .budget(.init(dominant: 7, contextual: 0)))
        XCTAssertThrowsError(try VisualTokens(dominant: 0, contextual: 0))
        XCTAssertThrowsError(try VisualTokens("lots"))
        XCTAssertThrowsError(try VisualTokens("0"))
        XCTAssertEqual(try VisualTokens.list("all, 192,128,64").map(\.description), ["all", "192", "128", "64"])
        XCTAssertThrowsError(try VisualTokens.list("all,,64"))
    }

    // MARK: AnyRes and the VisionZip map

    /// Expected values from transformers.image_processing_utils.select_best_resolution with LLaVA-NeXT's pinpoints.
    func testAnyResBestResolution() {
        let pins = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)].map { (height: $0.0, width: $0.1) }
        let cases: [((Int, Int), (Int, Int))] = [
            ((600, 800), (672, 672)), ((800, 600), (672, 672)), ((336, 336), (336, 672)), ((1000, 300), (1008, 336)),
            ((300, 1000), (336, 1008)), ((2000, 2000), (672, 672)), ((37, 23), (336, 672)), ((500, 1100), (336, 1008)),
        ]
        for ((h, w), expected) in cases {
            let got = LlavaNextFamily.bestResolution(height: h, width: w, candidates: pins)
            XCTAssertTrue(got == expected, "\(h)×\(w): \(got) vs \(expected)")
        }
    }

    /// The PNG writer's output read back by libpng (through ImageDecoder) gives the same pixels.
    func testVisionZipMapPNGRoundTrip() throws {
        var img = RGBImage(width: 37, height: 23, fill: (10, 20, 30))
        for i in 0..<img.pixels.count { img.pixels[i] = UInt8(truncatingIfNeeded: i &* 7) }
        let zipped = try VisionZip.compress(attention: [1, 0.1, 0.5, 0.2, 0.3], heads: 1, classRowsOnly: true,
                                            keysMean: [1, 0, 0, 1, 1, 1, 1, 0, 0, 1], hidden: [0, 1, 2, 3, 4],
                                            budget: .init(dominant: 2, contextual: 1))
        let report = CropReport(tokensBefore: 5, tokensAfter: 3, selection: zipped.selection, gridRows: 2, gridColumns: 2)
        let map = VisionZipMap.render(crop: img, report: report, patchSize: 11, hasClassToken: true)
        XCTAssertNotEqual(map, img)
        for ext in ["png", "ppm"] {
            let path = temp.appendingPathComponent("map.\(ext)").path
            try VisionZipMap.write(map, to: path)
            if ext == "png" { XCTAssertEqual(try ImageDecoder.decode(file: path), map) }
            else { XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path)).suffix(map.pixels.count)), map.pixels) }
        }
        XCTAssertThrowsError(try VisionZipMap.write(map, to: temp.appendingPathComponent("map.gif").path))
        // Big enough for several stored deflate blocks.
        let big = RGBImage(width: 300, height: 100, fill: (1, 2, 3))
        let path = temp.appendingPathComponent("big.png").path
        try VisionZipMap.write(big, to: path)
        XCTAssertEqual(try ImageDecoder.decode(file: path), big)
    }

    // MARK: SmolVLM-shaped (idefics3) pipeline

    /// tiny-smolvlm (SigLIP 128 px, patch 16, pixel shuffle 4: 4 tokens a crop): Idefics3 splitting, the grouped
    /// VisionZip, and the invariants that tie it to the connector tested against transformers (ModelGraphTests).
    func testIdefics3PipelineSplitsAndZipsGroups() throws {
        let text = temp.appendingPathComponent("smol.gguf").path, mm = temp.appendingPathComponent("smol-mmproj.gguf").path
        try SyntheticModel.write(preset: .tinySmolvlm, type: .f32, textPath: text, mmprojPath: mm, seed: 3)
        let vision = try VisionPipeline(path: mm)
        XCTAssertEqual(vision.projector.kind, .idefics3)
        XCTAssertEqual(vision.tokensPerCrop, 4)
        var image = RGBImage(width: 300, height: 200, fill: (0, 0, 0))
        for i in 0..<image.pixels.count { image.pixels[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i / 7) }
        // Longest edge 4 × 128 = 512: 512 × 341 → 4 × 3 tiles, then the overview.
        let crops = vision.crops(of: image)
        XCTAssertEqual(crops.count, 13)
        for (w, h) in [(300, 200), (128, 128), (512, 100), (37, 900), (129, 128)] {
            XCTAssertEqual(vision.cropCount(width: w, height: h), vision.crops(of: RGBImage(width: w, height: h, fill: (1, 2, 3))).count)
        }
        XCTAssertTrue(crops.allSatisfy { $0.width == 128 && $0.height == 128 })

        let all = try vision.encode(image, visualTokens: .all)
        XCTAssertEqual(all.tokens, 13 * 4)
        XCTAssertEqual(vision.tokens(for: image, visualTokens: .all), 52)
        // Each crop's rows are the connector applied to the tower's features.
        let pixels = try vision.processor.pixelValues(crops[0])
        let tower = try vision.encoder(pixels: pixels)
        let features = tower.normalized ?? tower.features  // the last hidden state, after the post-norm
        let direct = try vision.projector(features: features, gridRows: 8, gridColumns: 8)
        XCTAssertEqual(Array(all.embeddings[0 ..< direct.count]), direct)

        // Keeping every group as dominant changes nothing; a budget of 2 keeps 2 groups a crop, indices < 4.
        let keepAll = try vision.encode(image, visualTokens: .budget(.init(dominant: 4, contextual: 0)))
        XCTAssertEqual(keepAll.embeddings, all.embeddings)
        let two = try vision.encode(image, visualTokens: .budget(.init(dominant: 1, contextual: 1)))
        XCTAssertEqual(two.tokens, 26)
        XCTAssertEqual(vision.tokens(for: image, visualTokens: .budget(.init(dominant: 1, contextual: 1))), 26)
        for crop in two.crops {
            let s = try XCTUnwrap(crop.selection)
            XCTAssertEqual(s.rule, .groupedReceivedAttention)
            XCTAssertEqual(s.tokensBefore, 4)
            XCTAssertEqual(s.dominant.count + s.contextual.count, 2)
            XCTAssertTrue((s.dominant + s.contextual.flatMap { [$0.target] + $0.members }).allSatisfy { (0..<4).contains($0) })
            XCTAssertEqual(crop.gridRows, 2)
        }
        // The map has one cell per group.
        let encoded = try vision.encode(image, visualTokens: .budget(.init(dominant: 1, contextual: 1)), keepCrops: true)
        let map = VisionZipMap.render(encoded)
        XCTAssertEqual(map.width, 13 * 128 + 12 * 4)
    }
}

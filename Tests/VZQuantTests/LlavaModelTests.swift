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

/// The LLaVA path (CLIP tower, projector, Llama) and Qwen2 on GGUF files converted from the tiny HF fixtures,
/// against the transformers references in Fixtures/models (tools/make_model_references.py).
final class LlavaModelTests: XCTestCase {
    // MARK: fixtures

    static func fixture(_ path: String) throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        return root.appendingPathComponent(path)
    }

    static func floats(_ model: String, _ name: String) throws -> [Float] {
        let data = try Data(contentsOf: fixture("models/\(model)/\(name).bin"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    static func ints(_ model: String, _ name: String) throws -> [Int32] {
        let data = try Data(contentsOf: fixture("models/\(model)/\(name).bin"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    }

    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-llava-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    /// Converts Fixtures/hf/`name` to `type` into `directory`; returns (text, mmproj) paths.
    static func convert(_ name: String, _ type: QuantType, into directory: URL, mmproj: Bool) throws -> (String, String?) {
        let out = directory.appendingPathComponent("\(name)-\(type).gguf").path
        let mm = mmproj ? directory.appendingPathComponent("\(name)-\(type)-mmproj.gguf").path : nil
        _ = try Converter.run(ConvertOptions(source: try fixture("hf/\(name)").path, output: out, mmprojOutput: mm,
                                             policy: try TypePolicy(type: type), threads: 2))
        return (out, mm)
    }

    /// The llava-4x fixture as a text model and an mmproj of `type`.
    static func convertLlava(_ type: QuantType, into directory: URL) throws -> (String, String) {
        let (text, mm) = try convert("llava-4x", type, into: directory, mmproj: true)
        return (text, mm!)
    }

    func convert(_ name: String, _ type: QuantType, mmproj: Bool) throws -> (String, String?) {
        try Self.convert(name, type, into: temp, mmproj: mmproj)
    }

    func maxAbs(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(a.count, b.count, "sizes", file: file, line: line)
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var ab = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(a, b) { ab += Double(x) * Double(y); aa += Double(x) * Double(x); bb += Double(y) * Double(y) }
        return ab / (aa.squareRoot() * bb.squareRoot())
    }

    func argmax(_ a: ArraySlice<Float>) -> Int32 { Int32(a.indices.max { a[$0] < a[$1] }! - a.startIndex) }

    // MARK: vision + projector

    func testVisionTowerAndProjectorF32() throws {
        let (_, mm) = try convert("llava-4x", .f32, mmproj: true)
        let file = try GGUFFile(path: mm!)
        let tower = try VisionEncoder(file: file)
        XCTAssertEqual(tower.config.blockCount, 2)
        XCTAssertEqual(tower.config.tokens, 17)
        let pixels = try Self.floats("llava", "pixel_values")
        let out = try tower(pixels: pixels, probe: [.fullMaps, .headMeanKeys])

        let eFeatures = maxAbs(out.features, try Self.floats("llava", "feature_hidden"))
        let eAttention = maxAbs(out.attention!, try Self.floats("llava", "feature_attention"))
        let eKeys = maxAbs(out.keysMean!, try Self.floats("llava", "feature_keys_mean"))
        let projector = try Projector(file: file)
        XCTAssertTrue(projector.dropsClassToken)
        let projected = try projector(features: out.features)
        let eProjector = maxAbs(projected, try Self.floats("llava", "projector_output"))
        print("llava f32 vision: features \(eFeatures), attention \(eAttention), keys mean \(eKeys), projector \(eProjector)")
        XCTAssertLessThanOrEqual(eFeatures, 1e-4)
        XCTAssertLessThanOrEqual(eAttention, 1e-5)
        XCTAssertLessThanOrEqual(eKeys, 1e-4)
        XCTAssertLessThanOrEqual(eProjector, 1e-4)

        // Without a probe the same features, and nothing else.
        let plain = try tower(pixels: pixels)
        XCTAssertEqual(plain.features, out.features)
        XCTAssertNil(plain.attention)
        XCTAssertNil(plain.keysMean)
    }
}

// MARK: - language model

extension LlavaModelTests {
    struct LlavaRun {
        var features: [Float], projected: [Float], embeds: [Float], prefill: [Float], decode: [[Float]], tokens: [Int32], text: [Float]
    }

    /// The full LLaVA path on files converted to `type`: image → features → projector → spliced prefill → 3 cached
    /// greedy decode steps (feeding the reference's tokens), then a text-only prompt from an empty cache.
    func runLlava(_ type: QuantType, kvCache: KVCacheType = .f32) throws -> LlavaRun {
        let (text, mm) = try convert("llava-4x", type, mmproj: true)
        let mmFile = try GGUFFile(path: mm!)
        let tower = try VisionEncoder(file: mmFile)
        let projector = try Projector(file: mmFile)
        let lm = try LlamaModel(path: text, maxContext: 64, maxBatch: 32, kvCache: kvCache)  // 44 prompt rows: two prefill chunks
        XCTAssertEqual(lm.config.ropeLayout, .interleaved)

        let features = try tower(pixels: try Self.floats("llava", "pixel_values")).features
        let projected = try projector(features: features)
        let ids = try Self.ints("llava", "input_ids")
        var embeds = try lm.embeddings(ids)
        var row = 0
        for (i, id) in ids.enumerated() where id == 400 {
            embeds.replaceSubrange(i * 64 ..< (i + 1) * 64, with: projected[row * 64 ..< (row + 1) * 64])
            row += 1
        }
        XCTAssertEqual(row, 16)
        let prefill = try lm.prefill(embeddings: embeds)
        var tokens = [argmax(prefill[(ids.count - 1) * lm.vocab ..< ids.count * lm.vocab])]
        let reference = try Self.ints("llava", "greedy_tokens")
        var decode: [[Float]] = []
        for i in 0..<3 {
            let logits = Array(try lm.decode(token: reference[i]))
            decode.append(logits)
            tokens.append(argmax(logits[...]))
        }
        XCTAssertEqual(lm.position, ids.count + 3)
        XCTAssertThrowsError(try lm.prefill(embeddings: embeds))  // 47 + 44 positions > maxContext 64
        lm.reset()
        let textLogits = try lm.prefill(tokens: try Self.ints("llava", "text_input_ids"))
        return LlavaRun(features: features, projected: projected, embeds: embeds, prefill: prefill, decode: decode, tokens: tokens, text: textLogits)
    }

    func testLlavaF32MatchesTransformers() throws {
        let r = try runLlava(.f32)
        let eEmbeds = maxAbs(r.embeds, try Self.floats("llava", "prefill_inputs_embeds"))
        XCTAssertLessThanOrEqual(eEmbeds, 1e-4, "spliced inputs_embeds")
        let ePrefill = maxAbs(r.prefill, try Self.floats("llava", "prefill_logits"))
        let refDecode = try Self.floats("llava", "decode_logits")
        let eDecode = maxAbs(r.decode.flatMap { $0 }, refDecode)
        let eText = maxAbs(r.text, try Self.floats("llava", "text_logits"))
        print("llava f32 lm: prefill \(ePrefill), decode \(eDecode), text \(eText), tokens \(r.tokens)")
        XCTAssertLessThanOrEqual(ePrefill, 1e-3)
        XCTAssertLessThanOrEqual(eDecode, 1e-3)
        XCTAssertLessThanOrEqual(eText, 1e-3)
        XCTAssertEqual(r.tokens, try Self.ints("llava", "greedy_tokens"))
    }

    func testLlavaQuantized() throws {
        let refPrefill = try Self.floats("llava", "prefill_logits")
        let refDecode = try Self.floats("llava", "decode_logits")
        let refText = try Self.floats("llava", "text_logits")
        let greedy = try Self.ints("llava", "greedy_tokens")
        for (type, bound) in [(QuantType.q8_0, 0.999), (.q4_0, 0.99)] {
            let r = try runLlava(type)
            let cPrefill = cosine(r.prefill, refPrefill), cDecode = cosine(r.decode.flatMap { $0 }, refDecode)
            let cText = cosine(r.text, refText)
            let cProjector = cosine(r.projected, try Self.floats("llava", "projector_output"))
            print("llava \(type): cosine projector \(cProjector), prefill \(cPrefill), decode \(cDecode), text \(cText); max abs prefill \(maxAbs(r.prefill, refPrefill)); tokens \(r.tokens) vs \(greedy)")
            XCTAssertGreaterThanOrEqual(cPrefill, bound, "\(type)")
            XCTAssertGreaterThanOrEqual(cDecode, bound, "\(type)")
            XCTAssertGreaterThanOrEqual(cText, bound, "\(type)")
            XCTAssertEqual(r.tokens, greedy, "\(type) greedy tokens")
        }
    }

    /// The F16 KV cache against the F32 one on the same F32 weights: logits within 1e-2, the same greedy tokens.
    func testLlavaF16KVCache() throws {
        let f32 = try runLlava(.f32)
        let f16 = try runLlava(.f32, kvCache: .f16)
        let ePrefill = maxAbs(f16.prefill, f32.prefill)
        let eDecode = maxAbs(f16.decode.flatMap { $0 }, f32.decode.flatMap { $0 })
        let eText = maxAbs(f16.text, f32.text)
        print("llava f16 kv vs f32 kv: prefill \(ePrefill), decode \(eDecode), text \(eText), tokens \(f16.tokens) vs \(f32.tokens)")
        XCTAssertLessThanOrEqual(ePrefill, 1e-2)
        XCTAssertLessThanOrEqual(eDecode, 1e-2)
        XCTAssertLessThanOrEqual(eText, 1e-2)
        XCTAssertEqual(f16.tokens, f32.tokens)
        XCTAssertEqual(f16.tokens, try Self.ints("llava", "greedy_tokens"))
        // F16 stores 2 bytes a value plus one layer's fp32 keys and values as scratch; the arena shrinks by as much.
        let path = try convert("qwen2", .f32, mmproj: false).0
        let half = try LlamaModel(path: path, maxContext: 40, kvCache: .f16), full = try LlamaModel(path: path, maxContext: 40)
        let c = full.config, values = 40 * c.kvDim
        XCTAssertEqual(full.kvCacheBytes, 2 * c.layers * values * 4)
        XCTAssertEqual(half.kvCacheBytes, 2 * c.layers * values * 2 + 2 * values * 4)
        XCTAssertEqual(full.arenaBytes - half.arenaBytes, full.kvCacheBytes - half.kvCacheBytes, accuracy: 64 * (4 * c.layers + 2))
    }

    func testQwen2F32MatchesTransformers() throws {
        let (text, _) = try convert("qwen2", .f32, mmproj: false)
        let lm = try LlamaModel(path: text, maxContext: 40, maxBatch: 16)
        XCTAssertEqual(lm.config.ropeLayout, .halfSplit)
        let ids = try Self.ints("qwen2", "input_ids")
        let prefill = try lm.prefill(tokens: ids)
        let reference = try Self.ints("qwen2", "greedy_tokens")
        var tokens = [argmax(prefill[(ids.count - 1) * lm.vocab ..< ids.count * lm.vocab])]
        var decode: [Float] = []
        for i in 0..<3 {
            let logits = Array(try lm.decode(token: reference[i]))
            decode += logits
            tokens.append(argmax(logits[...]))
        }
        let ePrefill = maxAbs(prefill, try Self.floats("qwen2", "prefill_logits"))
        let eDecode = maxAbs(decode, try Self.floats("qwen2", "decode_logits"))
        print("qwen2 f32: prefill \(ePrefill), decode \(eDecode), tokens \(tokens)")
        XCTAssertLessThanOrEqual(ePrefill, 1e-3)
        XCTAssertLessThanOrEqual(eDecode, 1e-3)
        XCTAssertEqual(tokens, reference)
    }
}

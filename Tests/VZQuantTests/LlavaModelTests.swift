import Foundation
import XCTest
@testable import VZQuant

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

    /// Converts Fixtures/hf/`name` to `type`; returns (text, mmproj) paths.
    func convert(_ name: String, _ type: QuantType, mmproj: Bool) throws -> (String, String?) {
        let out = temp.appendingPathComponent("\(name)-\(type).gguf").path
        let mm = mmproj ? temp.appendingPathComponent("\(name)-\(type)-mmproj.gguf").path : nil
        _ = try Converter.run(ConvertOptions(source: try Self.fixture("hf/\(name)").path, output: out, mmprojOutput: mm,
                                             policy: try TypePolicy(type: type), threads: 2))
        return (out, mm)
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
        let out = try tower(pixels: pixels, keepAttention: true)

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

        // Without keepAttention the same features, and nothing else.
        let plain = try tower(pixels: pixels)
        XCTAssertEqual(plain.features, out.features)
        XCTAssertNil(plain.attention)
        XCTAssertNil(plain.keysMean)
    }
}

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

/// The SigLIP and DINOv2 towers on GGUF files converted from the tiny HF fixtures, against the transformers
/// references in Fixtures/models (tools/make_model_references.py).
final class VisionEncoderTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-venc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func floats(_ model: String, _ name: String) throws -> [Float] { try LlavaModelTests.floats(model, name) }

    /// Converts Fixtures/hf/`name` (a standalone encoder) to `type`; returns the encoder.
    func encoder(_ name: String, _ type: QuantType) throws -> VisionEncoder {
        let out = temp.appendingPathComponent("\(name)-\(type).gguf").path
        _ = try Converter.run(ConvertOptions(source: try LlavaModelTests.fixture("hf/\(name)").path, output: out,
                                             mmprojOutput: nil, policy: try TypePolicy(type: type), threads: 2))
        return try VisionEncoder(path: out)
    }

    func maxAbs(_ a: [Float], _ b: ArraySlice<Float>, file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(a.count, b.count, "sizes", file: file, line: line)
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func cosine(_ a: [Float], _ b: ArraySlice<Float>) -> Double {
        var ab = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(a, b) { ab += Double(x) * Double(y); aa += Double(x) * Double(x); bb += Double(y) * Double(y) }
        return ab / (aa.squareRoot() * bb.squareRoot())
    }

    /// Compares every hidden state, the last block's attention and last_hidden_state with the reference arrays
    /// `prefix`hidden_states / attentions / last_hidden_state; returns the largest error of each.
    func check(_ out: VisionOutput, _ model: String, prefix: String = "", blocks: Int, tokens t: Int, width d: Int,
               heads: Int, label: String) throws -> (hidden: Float, attention: Float, last: Float) {
        let refHidden = try floats(model, "\(prefix)hidden_states")
        let states = try XCTUnwrap(out.hiddenStates)
        XCTAssertEqual(states.count, blocks + 1)
        var eHidden: Float = 0
        for (i, h) in states.enumerated() {
            let e = maxAbs(h, refHidden[i * t * d ..< (i + 1) * t * d])
            print("\(label) hidden_states[\(i)]: \(e)")
            eHidden = max(eHidden, e)
        }
        XCTAssertEqual(out.features, states.last!)
        let refAttention = try floats(model, "\(prefix)attentions")
        let eAttention = maxAbs(try XCTUnwrap(out.attention), refAttention[(blocks - 1) * heads * t * t ..< blocks * heads * t * t])
        let eLast = maxAbs(try XCTUnwrap(out.normalized), try floats(model, "\(prefix)last_hidden_state")[...])
        print("\(label): hidden states \(eHidden), last attention \(eAttention), last_hidden_state \(eLast)")
        return (eHidden, eAttention, eLast)
    }

    // MARK: SigLIP

    func testSigLIPF32MatchesTransformers() throws {
        let tower = try encoder("siglip", .f32)
        let c = tower.config
        XCTAssertEqual(c.family, .siglip)
        XCTAssertEqual(c.activation, .geluTanh)
        XCTAssertFalse(c.hasClassToken)
        XCTAssertEqual(c.tokens, 16)
        XCTAssertEqual(c.blockCount, 3)
        let out = try tower(pixels: try floats("siglip", "pixel_values"), probe: [.fullMaps, .headMeanKeys], keepHiddenStates: true)
        let e = try check(out, "siglip", blocks: 3, tokens: 16, width: 32, heads: 4, label: "siglip f32")
        XCTAssertLessThanOrEqual(e.hidden, 1e-4)
        XCTAssertLessThanOrEqual(e.attention, 1e-5)
        XCTAssertLessThanOrEqual(e.last, 1e-4)
        // Other sizes are refused (SigLIP's positions are not interpolated here).
        XCTAssertThrowsError(try tower(pixels: [Float](repeating: 0, count: 3 * 40 * 40), height: 40, width: 40))
    }

    /// The attention summary (what VisionZip reads) equals the same figures taken from the full maps, bit for bit,
    /// and the features do not change; the full maps are not returned.
    func testAttentionSummaryMatchesFullMaps() throws {
        for (name, model) in [("siglip", "siglip"), ("dinov2", "dinov2")] {
            let tower = try encoder(name, .f32)
            let pixels = try floats(model, "pixel_values")
            let full = try tower(pixels: pixels, probe: [.fullMaps, .headMeanKeys])
            let summary = try tower(pixels: pixels, probe: VisionZipReducer().probe)
            XCTAssertNil(summary.attention)
            XCTAssertEqual(summary.features, full.features)
            XCTAssertEqual(summary.keysMean, full.keysMean)
            let a = try XCTUnwrap(full.attention), h = tower.config.heads, t = full.features.count / tower.config.hidden
            XCTAssertEqual(summary.firstRowAttention, (0..<h).flatMap { Array(a[($0 * t * t) ..< ($0 * t * t + t)]) })
            XCTAssertEqual(summary.receivedAttention, try a.withUnsafeBufferPointer { try VisionZip.receivedAttention($0, heads: h) })
        }
    }

    /// llama.cpp's SigLIP mmproj files carry neither vzquant.vision.family nor vzquant.vision.hidden_act: the
    /// family comes from the tensors (no class embedding) and the gelu must be SigLIP's tanh form.
    func testSigLIPWithoutVZQuantKeysAsLlamaCppWritesIt() throws {
        _ = try encoder("siglip", .f32)
        let source = try GGUFFile(path: temp.appendingPathComponent("siglip-f32.gguf").path)
        let writer = GGUFWriter(alignment: source.alignment)
        for (key, value) in source.metadata.entries where !key.hasPrefix("vzquant.") && key != GGUF.alignmentKey {
            writer.metadata.set(key, value)
        }
        for t in source.tensors { _ = try writer.addTensor(name: t.name, dims: t.dims, type: t.type) }
        let stripped = temp.appendingPathComponent("siglip-llamacpp.gguf").path
        try writer.write(to: stripped) { info, sink in try sink.write(try source.bytes(of: info.name)) }

        let tower = try VisionEncoder(path: stripped)
        XCTAssertEqual(tower.config.family, .siglip)
        XCTAssertEqual(tower.config.activation, .geluTanh)
        let out = try tower(pixels: try floats("siglip", "pixel_values"), probe: [.fullMaps, .headMeanKeys], keepHiddenStates: true)
        let e = try check(out, "siglip", blocks: 3, tokens: 16, width: 32, heads: 4, label: "siglip (llama.cpp keys)")
        XCTAssertLessThanOrEqual(e.hidden, 1e-4)
    }

    func testSigLIPQ8() throws {
        let tower = try encoder("siglip", .q8_0)
        let out = try tower(pixels: try floats("siglip", "pixel_values"))
        let ref = try floats("siglip", "last_hidden_state")
        let cos = cosine(try XCTUnwrap(out.normalized), ref[...])
        let refHidden = try floats("siglip", "hidden_states")
        let cosFeatures = cosine(out.features, refHidden[3 * 16 * 32 ..< 4 * 16 * 32])
        print("siglip q8_0: last_hidden_state cosine \(cos), hidden_states[-1] cosine \(cosFeatures)")
        XCTAssertGreaterThanOrEqual(cos, 0.999)
        XCTAssertGreaterThanOrEqual(cosFeatures, 0.999)
    }

    // MARK: DINOv2

    func testDINOv2F32MatchesTransformers() throws {
        let tower = try encoder("dinov2", .f32)
        let c = tower.config
        XCTAssertEqual(c.family, .dinov2)
        XCTAssertEqual(c.activation, .gelu)
        XCTAssertEqual(c.tokens, 17)
        let out = try tower(pixels: try floats("dinov2", "pixel_values"), probe: [.fullMaps, .headMeanKeys], keepHiddenStates: true)
        let e = try check(out, "dinov2", blocks: 3, tokens: 17, width: 32, heads: 4, label: "dinov2 f32")
        XCTAssertLessThanOrEqual(e.hidden, 1e-4)
        XCTAssertLessThanOrEqual(e.attention, 1e-5)
        XCTAssertLessThanOrEqual(e.last, 1e-4)
        // pooler_output is last_hidden_state's CLS row.
        let ePool = maxAbs(Array(out.normalized![0..<32]), try floats("dinov2", "pooler_output")[...])
        XCTAssertLessThanOrEqual(ePool, 1e-4)
    }

    func testDINOv2InterpolatedPositions() throws {
        let tower = try encoder("dinov2", .f32)
        // The resized position table alone: CLS row, then the 4×4 grid resampled to 5×7.
        let file = try GGUFFile(path: temp.appendingPathComponent("dinov2-f32.gguf").path)
        let stored = try GGUFWeights(file).vector("v.position_embd.weight", count: 17 * 32)
        var resized = [Float](repeating: 0, count: 36 * 32)
        resized.withUnsafeMutableBufferPointer {
            VisionEncoder.interpolatePositions(stored, grid: 4, dim: 32, rows: 5, cols: 7, into: $0.baseAddress!)
        }
        let ePos = maxAbs(resized, try floats("dinov2", "interp_position_embeddings")[...])
        print("dinov2 interp positions: \(ePos)")
        XCTAssertLessThanOrEqual(ePos, 1e-5)

        // The whole tower at 35×49 (grid 5×7), then again at the native size: the grown arena serves both.
        let out = try tower(pixels: try floats("dinov2", "interp_pixel_values"), height: 35, width: 49,
                            probe: [.fullMaps, .headMeanKeys], keepHiddenStates: true)
        XCTAssertEqual(out.gridRows, 5)
        XCTAssertEqual(out.gridColumns, 7)
        let e = try check(out, "dinov2", prefix: "interp_", blocks: 3, tokens: 36, width: 32, heads: 4, label: "dinov2 interp f32")
        XCTAssertLessThanOrEqual(e.hidden, 1e-4)
        XCTAssertLessThanOrEqual(e.attention, 1e-5)
        XCTAssertLessThanOrEqual(e.last, 1e-4)
        let native = try tower(pixels: try floats("dinov2", "pixel_values"))
        XCTAssertLessThanOrEqual(maxAbs(native.normalized!, try floats("dinov2", "last_hidden_state")[...]), 1e-4)
    }

    func testDINOv2Q8() throws {
        let tower = try encoder("dinov2", .q8_0)
        for (prefix, h, w) in [("", 28, 28), ("interp_", 35, 49)] {
            let out = try tower(pixels: try floats("dinov2", "\(prefix)pixel_values"), height: h, width: w)
            let cos = cosine(try XCTUnwrap(out.normalized), try floats("dinov2", "\(prefix)last_hidden_state")[...])
            print("dinov2 q8_0 \(h)×\(w): last_hidden_state cosine \(cos)")
            XCTAssertGreaterThanOrEqual(cos, 0.999)
        }
    }
}

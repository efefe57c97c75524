import Foundation
import XCTest

/// The reference activations under Fixtures/models (made by tools/make_model_references.py from Hugging Face
/// transformers) are complete and self-consistent, so the model-graph tests that compare against them stand on
/// solid data even where CI has no Python. These tests check the files, not vzquant's models:
/// every listed array exists with the size its shape and dtype promise, attention maps are probability rows,
/// greedy tokens are the argmax of the recorded logits, and VisionZip's rows follow from its recorded indices.
final class ModelReferenceFixtureTests: XCTestCase {
    static let models = ["llava", "visionzip", "qwen2", "siglip", "dinov2"]

    /// Each manifest lists unique arrays whose files exist with product(shape) · 4 bytes, and nothing else.
    func testManifestsListEveryFileWithItsSize() throws {
        for model in Self.models {
            let fixture = try ModelReference(model)
            XCTAssertEqual(fixture.manifest.format, 1, "\(model): manifest format")
            XCTAssertEqual(fixture.manifest.model, model, "\(model): manifest model name")
            XCTAssertFalse(fixture.manifest.arrays.isEmpty, "\(model): no arrays")
            XCTAssertEqual(Set(fixture.manifest.arrays.map(\.name)).count, fixture.manifest.arrays.count,
                           "\(model): duplicate array names")
            for array in fixture.manifest.arrays {
                XCTAssertTrue(["float32", "int32"].contains(array.dtype), "\(model)/\(array.name): dtype \(array.dtype)")
                XCTAssertTrue(array.shape.allSatisfy { $0 >= 0 }, "\(model)/\(array.name): shape \(array.shape)")
                let url = fixture.directory.appendingPathComponent(array.file)
                let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
                let size = (attributes?[.size] as? NSNumber)?.intValue
                XCTAssertNotNil(size, "\(model)/\(array.file): missing")
                XCTAssertEqual(size, array.count * 4, "\(model)/\(array.file): bytes for shape \(array.shape)")
            }
            let listed = Set(fixture.manifest.arrays.map(\.file))
            let present = try FileManager.default.contentsOfDirectory(atPath: fixture.directory.path)
                .filter { $0.hasSuffix(".bin") }
            XCTAssertEqual(Set(present), listed, "\(model): .bin files not matching the manifest")
        }
    }

    /// Arrays marked softmax_rows hold probabilities: each row over the last axis lies in [0, 1] and sums to 1.
    func testAttentionRowsSumToOne() throws {
        var checked = 0
        for model in Self.models {
            let fixture = try ModelReference(model)
            for array in fixture.manifest.arrays where array.softmaxRows == true {
                let values = try fixture.floats(array.name)
                let width = try XCTUnwrap(array.shape.last)
                XCTAssertGreaterThan(width, 0)
                for row in 0..<(values.count / width) {
                    let slice = values[(row * width)..<((row + 1) * width)]
                    let sum = slice.reduce(Double(0)) { $0 + Double($1) }
                    XCTAssertEqual(sum, 1, accuracy: 1e-5, "\(model)/\(array.name) row \(row)")
                    XCTAssertTrue(slice.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(model)/\(array.name) row \(row)")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 0, "no attention arrays found")
    }

    /// greedy_tokens[0] is the argmax of the last prefill position, greedy_tokens[i + 1] that of decode step i.
    func testGreedyTokensAreArgmaxOfLogits() throws {
        for model in ["llava", "qwen2"] {
            let fixture = try ModelReference(model)
            let tokens = try fixture.ints("greedy_tokens")
            let prefill = try fixture.floats("prefill_logits")
            let decode = try fixture.floats("decode_logits")
            let vocab = try fixture.shape("prefill_logits")[1]
            let steps = try fixture.shape("decode_logits")[0]
            XCTAssertEqual(try fixture.shape("decode_logits")[1], vocab, model)
            XCTAssertEqual(tokens.count, steps + 1, model)
            guard tokens.count == steps + 1 else { continue }
            XCTAssertEqual(Int(tokens[0]), argmax(prefill[(prefill.count - vocab)...]), "\(model): prefill token")
            for step in 0..<steps {
                XCTAssertEqual(Int(tokens[step + 1]), argmax(decode[(step * vocab)..<((step + 1) * vocab)]),
                               "\(model): decode step \(step)")
            }
        }
        // LLaVA: the image rows of the LLM's input are exactly the projector output, in order.
        let llava = try ModelReference("llava")
        let imageToken = try XCTUnwrap(llava.manifest.imageTokenId)
        let ids = try llava.ints("input_ids")
        let embeds = try llava.floats("prefill_inputs_embeds")
        let projected = try llava.floats("projector_output")
        let hidden = try llava.shape("projector_output")[1]
        let imageRows = ids.indices.filter { ids[$0] == Int32(imageToken) }
        XCTAssertEqual(imageRows.count, try llava.shape("projector_output")[0])
        for (k, row) in imageRows.enumerated() {
            XCTAssertEqual(Array(embeds[(row * hidden)..<((row + 1) * hidden)]),
                           Array(projected[(k * hidden)..<((k + 1) * hidden)]), "image row \(k)")
        }
    }

    /// VisionZip: CLS first then ascending dominant indices, whose rows are copied from the hidden states; the
    /// remaining tokens are the rest in order; each contextual row is H[target] + mean(H[members]).
    func testVisionZipRowsFollowFromIndices() throws {
        let fixture = try ModelReference("visionzip")
        let cases = try XCTUnwrap(fixture.manifest.cases)
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let name = c.name
            let hidden = try fixture.floats(c.inputs["hidden"] ?? "")
            let hShape = try fixture.shape(c.inputs["hidden"] ?? "")
            let (tokens, width) = (hShape[0], hShape[1])
            let dominant = try fixture.ints(name + "_dominant").map(Int.init)
            let remaining = try fixture.ints(name + "_remaining").map(Int.init)
            let targets = try fixture.ints(name + "_targets").map(Int.init)
            let members = try fixture.ints(name + "_members").map(Int.init)
            let rows = try fixture.floats(name + "_rows")

            XCTAssertEqual(dominant.count, c.dominant, name)
            XCTAssertEqual(dominant.first, 0, "\(name): CLS first")
            XCTAssertEqual(dominant, dominant.sorted(), "\(name): ascending")
            XCTAssertEqual(remaining, (0..<tokens).filter { !dominant.contains($0) }, "\(name): remaining")
            XCTAssertEqual(targets.count, min(c.contextual, remaining.count), name)
            XCTAssertEqual(members.count, targets.isEmpty ? 0 : remaining.count, name)
            XCTAssertEqual(rows.count, (dominant.count + targets.count) * width, "\(name): rows")
            guard rows.count == (dominant.count + targets.count) * width else { continue }
            func h(_ i: Int) -> ArraySlice<Float> { hidden[(i * width)..<((i + 1) * width)] }
            for (r, i) in dominant.enumerated() {
                XCTAssertEqual(Array(rows[(r * width)..<((r + 1) * width)]), Array(h(i)), "\(name): dominant row \(r)")
            }
            for (slot, target) in targets.enumerated() {
                let pos = try XCTUnwrap(remaining.firstIndex(of: target), "\(name): target \(target) not remaining")
                XCTAssertEqual(members[pos], -1, "\(name): target \(target) marked as a member")
                let mine = remaining.indices.filter { members[$0] == slot }.map { remaining[$0] }
                let row = dominant.count + slot
                for d in 0..<width {
                    let mean = mine.isEmpty ? 0 : mine.reduce(Double(0)) { $0 + Double(hidden[$1 * width + d]) } / Double(mine.count)
                    let expected = Double(hidden[target * width + d]) + mean
                    XCTAssertEqual(Double(rows[row * width + d]), expected, accuracy: 1e-5 * max(1, abs(expected)),
                                   "\(name): contextual row \(slot) dim \(d)")
                }
            }
            XCTAssertEqual(members.filter { $0 == -1 }.count, targets.count, "\(name): one -1 per target")
            XCTAssertTrue(members.allSatisfy { $0 >= -1 && $0 < targets.count }, "\(name): member slots")
        }
    }

    private func argmax<C: Collection>(_ values: C) -> Int where C.Element == Float, C.Index == Int {
        var best = values.startIndex
        for i in values.indices where values[i] > values[best] { best = i }
        return best - values.startIndex
    }
}

// MARK: - Loading

private struct ModelReferenceManifest: Decodable {
    struct Entry: Decodable {
        let name: String
        let dtype: String
        let shape: [Int]
        let file: String
        let description: String
        let softmaxRows: Bool?
        var count: Int { shape.reduce(1, *) }
    }

    struct VisionZipCase: Decodable {
        let name: String
        let dominant: Int
        let contextual: Int
        let inputs: [String: String]
    }

    let format: Int
    let model: String
    let arrays: [Entry]
    let imageTokenId: Int?
    let cases: [VisionZipCase]?
}

private struct ModelReference {
    let directory: URL
    let manifest: ModelReferenceManifest

    init(_ model: String) throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        directory = root.appendingPathComponent("models/\(model)", isDirectory: true)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        manifest = try decoder.decode(
            ModelReferenceManifest.self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
    }

    func entry(_ name: String, _ dtype: String) throws -> ModelReferenceManifest.Entry {
        let entry = try XCTUnwrap(manifest.arrays.first { $0.name == name }, "\(manifest.model): no array \(name)")
        XCTAssertEqual(entry.dtype, dtype, "\(manifest.model)/\(name)")
        return entry
    }

    func shape(_ name: String) throws -> [Int] {
        try XCTUnwrap(manifest.arrays.first { $0.name == name }, "\(manifest.model): no array \(name)").shape
    }

    private func words(_ entry: ModelReferenceManifest.Entry) throws -> [UInt32] {
        let data = try Data(contentsOf: directory.appendingPathComponent(entry.file))
        XCTAssertEqual(data.count, entry.count * 4, "\(manifest.model)/\(entry.file)")
        return data.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
    }

    func floats(_ name: String) throws -> [Float] {
        try words(entry(name, "float32")).map(Float.init(bitPattern:))
    }

    func ints(_ name: String) throws -> [Int32] {
        try words(entry(name, "int32")).map { Int32(bitPattern: $0) }
    }
}

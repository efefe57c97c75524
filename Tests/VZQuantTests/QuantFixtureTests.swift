import CQuant
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

/// CQuant's block formats against gguf-py, an independent mirror of ggml's reference code.
///
/// Fixtures come from tools/make_quant_fixtures.py (see its docstring): float32 inputs and the bytes
/// `gguf.quants.quantize` made of them, raw blocks and the float32 values `gguf.quants.dequantize` made of
/// them. Quantized bytes must be equal, dequantized values equal bit for bit (NaN payloads and the sign of
/// zero included). One exception, listed in the manifest as `ggml_divergences`: where gguf-py itself departs
/// from ggml's reference C (a Q4_0 block of zeros led by -0.0), CQuant must give ggml's bytes.
final class QuantFixtureTests: XCTestCase {
    /// Every type CQuant can quantize and every type it can read has a fixture.
    func testManifestCoversEveryType() throws {
        let manifest = try QuantFixtures.manifest()
        let quantized = Set(manifest.cases.filter { $0.op == "quantize" }.map(\.type))
        let dequantized = Set(manifest.cases.filter { $0.op == "dequantize" }.map(\.type))
        for type in QuantType.allCases where type != .f32 {
            if type.canQuantize {
                XCTAssertTrue(quantized.contains(type.description), "no quantize fixture for \(type)")
            }
            XCTAssertTrue(dequantized.contains(type.description), "no dequantize fixture for \(type)")
        }
        // The type table agrees with gguf-py's GGML_QUANT_SIZES and numbering.
        for c in manifest.cases {
            let type = try XCTUnwrap(QuantType(rawValue: c.ggmlType), "\(c.name): unknown ggml type \(c.ggmlType)")
            XCTAssertEqual(type.description, c.type, c.name)
            XCTAssertEqual(type.blockElements, c.blockValues, "\(c.name): values per block")
            XCTAssertEqual(type.blockBytes, c.blockBytes, "\(c.name): bytes per block")
        }
    }

    /// cq_quantize_row's bytes equal gguf.quants.quantize's, block for block.
    func testQuantizeMatchesGGUF() throws {
        let manifest = try QuantFixtures.manifest()
        let cases = manifest.cases.filter { $0.op == "quantize" }
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let type = try XCTUnwrap(QuantType(rawValue: c.ggmlType))
            let input = try QuantFixtures.data(c.input)
            let expected = try QuantFixtures.data(c.expected)
            XCTAssertEqual(input.count, c.values * 4, "\(c.name): input size")
            XCTAssertEqual(expected.count, c.blocks * c.blockBytes, "\(c.name): expected size")
            let x = QuantFixtures.floats(input)
            let ours = try type.quantize(x)
            XCTAssertEqual(ours.count, expected.count, "\(c.name): output size")
            guard ours.count == expected.count else { continue }

            var gguf = [UInt8](expected)
            // Blocks where gguf-py departs from ggml's reference C: there the bytes to match are ggml's.
            var ggmlBlocks: [Int: String] = [:]
            for d in c.ggmlDivergences {
                let range = (d.block * c.blockBytes)..<((d.block + 1) * c.blockBytes)
                let ggml = try XCTUnwrap(QuantFixtures.bytes(hex: d.ggmlBytes), "\(c.name): bad ggml_bytes")
                XCTAssertEqual(ggml.count, c.blockBytes, "\(c.name): ggml_bytes size")
                guard ggml.count == c.blockBytes, range.upperBound <= gguf.count else { continue }
                XCTAssertNotEqual(Array(gguf[range]), ggml, "\(c.name) block \(d.block): listed as a divergence but gguf agrees")
                gguf.replaceSubrange(range, with: ggml)
                ggmlBlocks[d.block] = d.reason
            }
            var bad: [String] = []
            var badBlocks = 0
            for b in 0..<c.blocks {
                let range = (b * c.blockBytes)..<((b + 1) * c.blockBytes)
                if ours[range] == gguf[range] { continue }
                badBlocks += 1
                if bad.count < 8 {
                    let first = b * c.blockValues
                    let shown = x[first..<min(first + c.blockValues, first + 4)].map(QuantFixtures.describe).joined(separator: " ")
                    bad.append("""
                          \(c.blockValues == 1 ? "value" : "block") \(b) [\(c.group(containing: first))] input \(shown)\(c.blockValues > 4 ? " …" : "")
                            ours: \(QuantFixtures.hex(ours[range]))
                            \(ggmlBlocks[b] == nil ? "gguf" : "ggml"): \(QuantFixtures.hex(gguf[range]))\
                        \(ggmlBlocks[b].map { " (ggml's C, not gguf-py: \($0))" } ?? "")
                        """)
                }
            }
            if badBlocks > 0 {
                XCTFail("quantize \(c.type) (\(c.name)): \(badBlocks) of \(c.blocks) blocks differ from gguf\n" + bad.joined(separator: "\n"))
            }
        }
    }

    /// cq_dequantize_row's values equal gguf.quants.dequantize's, bit for bit.
    func testDequantizeMatchesGGUF() throws {
        let manifest = try QuantFixtures.manifest()
        let cases = manifest.cases.filter { $0.op == "dequantize" }
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let type = try XCTUnwrap(QuantType(rawValue: c.ggmlType))
            let input = try QuantFixtures.data(c.input)
            let expected = try QuantFixtures.data(c.expected)
            XCTAssertEqual(input.count, c.blocks * c.blockBytes, "\(c.name): input size")
            XCTAssertEqual(expected.count, c.values * 4, "\(c.name): expected size")
            let ours = try input.withUnsafeBytes { try type.dequantize($0, count: c.values) }
            let gguf = QuantFixtures.floats(expected)
            XCTAssertEqual(ours.count, gguf.count, "\(c.name): output size")
            guard ours.count == gguf.count else { continue }

            var bad: [String] = []
            var badValues = 0
            var badBlocks = Set<Int>()
            for i in 0..<ours.count where ours[i].bitPattern != gguf[i].bitPattern {
                badValues += 1
                let b = i / c.blockValues
                badBlocks.insert(b)
                if bad.count < 8 {
                    let at = b * c.blockBytes
                    bad.append("""
                          block \(b) value \(i % c.blockValues) (index \(i)) [\(c.group(containing: i))]: \
                        ours \(QuantFixtures.describe(ours[i])), gguf \(QuantFixtures.describe(gguf[i])); \
                        block bytes \(QuantFixtures.hex(input[at..<min(at + 16, at + c.blockBytes)]))…
                        """)
                }
            }
            if badValues > 0 {
                XCTFail("dequantize \(c.type) (\(c.name)): \(badValues) values in \(badBlocks.count) of \(c.blocks) blocks differ from gguf\n"
                    + bad.joined(separator: "\n"))
            }
        }
    }
}

// MARK: - Fixture loading

private struct QuantFixtureManifest: Decodable {
    struct Group: Decodable {
        let start: Int
        let count: Int
        let label: String
    }

    /// A block where gguf-py's bytes differ from ggml's reference C; `ggmlBytes` (hex) are ggml's.
    struct Divergence: Decodable {
        let block: Int
        let ggmlBytes: String
        let reason: String
    }

    struct Case: Decodable {
        let name: String
        let op: String
        let type: String
        let ggmlType: Int32
        let values: Int
        let blocks: Int
        let blockValues: Int
        let blockBytes: Int
        let input: String
        let expected: String
        let ggmlDivergences: [Divergence]
        let groups: [Group]

        /// The label of the fixture group holding value `index`.
        func group(containing index: Int) -> String {
            groups.first { $0.start <= index && index < $0.start + $0.count }?.label ?? "?"
        }
    }

    let format: Int
    let cases: [Case]
}

private enum QuantFixtures {
    static func directory() throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        return root.appendingPathComponent("quant", isDirectory: true)
    }

    static func data(_ file: String) throws -> Data {
        try Data(contentsOf: directory().appendingPathComponent(file))
    }

    static func manifest() throws -> QuantFixtureManifest {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let manifest = try decoder.decode(QuantFixtureManifest.self, from: data("manifest.json"))
        XCTAssertEqual(manifest.format, 1, "manifest format")
        return manifest
    }

    /// Little-endian float32s, bit patterns kept (signalling NaNs included).
    static func floats(_ data: Data) -> [Float] {
        data.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { i in
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        }
    }

    static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }

    static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func describe(_ f: Float) -> String {
        "\(f) (0x\(String(f.bitPattern, radix: 16)))"
    }
}

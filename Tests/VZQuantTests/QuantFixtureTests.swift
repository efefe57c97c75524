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
/// from ggml's reference C, CQuant must give ggml's bytes — Q4_0/Q5_0 blocks of zeros led by -0.0, Q4_1/Q5_1
/// blocks whose min is a zero of either sign or that hold one infinity only, and blocks with NaNs (cquant.h,
/// cq_quantize_row, says why each differs).
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

    /// Q4_1, Q5_0 and Q5_1 are quantized (issue #13), their fixtures hold the nasty blocks as well as random ones,
    /// and every block where gguf-py's bytes are not the ones to match is of a kind cquant.h documents.
    func testQ4_1Q5_0Q5_1QuantizeFixtures() throws {
        let manifest = try QuantFixtures.manifest()
        let common = ["all zeros", "all negative zeros", "zeros of both signs", "x.5 boundaries",
                      "constant positive block", "constant negative block", "largest magnitude negative",
                      "tiny normal values", "small values", "huge values", "near fp32 max", "subnormal-only block",
                      "+inf among finite values", "NaN among finite values", "all NaN", "random block"]
        let affine = ["all negative (negative max)", "range past fp16", "offset 1000", "-inf among finite values",
                      "all +inf", "all -inf"]
        for type in [QuantType.q4_1, .q5_0, .q5_1] {
            XCTAssertTrue(type.canQuantize, "\(type) has a quantizer")
            let c = try XCTUnwrap(manifest.cases.first { $0.op == "quantize" && $0.type == type.description },
                                  "no quantize fixture for \(type)")
            for prefix in common + (type == .q5_0 ? [] : affine) {
                XCTAssertTrue(c.groups.contains { $0.label.hasPrefix(prefix) }, "\(c.name): no group \"\(prefix)…\"")
            }
            XCTAssertGreaterThanOrEqual(c.groups.filter { $0.label.hasPrefix("random block") }.count, 20, c.name)

            let x = QuantFixtures.floats(try QuantFixtures.data(c.input))
            XCTAssertFalse(c.ggmlDivergences.isEmpty, "\(c.name): the -0.0 / NaN blocks differ from gguf-py")
            for d in c.ggmlDivergences {
                let block = x[(d.block * c.blockValues)..<((d.block + 1) * c.blockValues)]
                let hasNaN = block.contains { $0.isNaN }
                let signedZeros: Bool
                let oneInfinity: Bool
                if type == .q5_0 {
                    signedZeros = block.allSatisfy { $0 == 0 } && block.first?.sign == .minus
                    oneInfinity = false
                } else {
                    let zeroSigns = Set(block.filter { $0 == 0 }.map(\.sign))
                    signedZeros = zeroSigns.count == 2 && (block.min() == 0 || block.max() == 0)
                    oneInfinity = block.allSatisfy { $0 == .infinity } || block.allSatisfy { $0 == -.infinity }
                }
                XCTAssertTrue(hasNaN || signedZeros || oneInfinity,
                              "\(c.name) block \(d.block) [\(c.group(containing: d.block * c.blockValues))]: "
                                  + "a divergence from gguf-py that cquant.h does not document: \(d.reason)")
            }
            XCTAssertThrowsError(try type.quantize([Float](repeating: 1, count: 31)), "\(type): 31 values")
            XCTAssertEqual(try type.quantize([]), [], "\(type): no values")
        }
    }

    /// dequantize(quantize(x)) stays within half a step of every fixture input — |d|/2, with d the fp32 scale the
    /// format defines, computed here from the block — plus the fp16 rounding of d (times the largest code) and of m,
    /// plus fp32 rounding. Q4_0/Q5_0 codes end one step early on the side opposite the block's extreme (−8…7 /
    /// −16…15 times d), so values there past 7.5·d / 15.5·d may be up to one step off. Blocks with non-finite inputs,
    /// or whose d or m overflow fp16, are skipped.
    func testQuantizeRoundTripWithinHalfAStep() throws {
        let manifest = try QuantFixtures.manifest()
        for type in [QuantType.q8_0, .q4_0, .q4_1, .q5_0, .q5_1] {
            let c = try XCTUnwrap(manifest.cases.first { $0.op == "quantize" && $0.type == type.description },
                                  "no quantize fixture for \(type)")
            let x = QuantFixtures.floats(try QuantFixtures.data(c.input))
            let q = try type.quantize(x)
            let y = try q.withUnsafeBytes { try type.dequantize($0, count: x.count) }
            XCTAssertEqual(y.count, x.count, c.name)
            guard y.count == x.count else { continue }
            var checked = 0, badValues = 0, worst: Float = 0
            var bad: [String] = []
            for b in 0..<(x.count / 32) {
                let block = x[(32 * b)..<(32 * b + 32)]
                guard block.allSatisfy(\.isFinite) else { continue }
                let scale = QuantRoundTripScale(type, block)
                guard abs(scale.d) < 65504, abs(scale.m) < 65504 else { continue }
                checked += 1
                for i in block.indices {
                    let bound = scale.bound(x[i])
                    let err = abs(x[i] - y[i])
                    worst = max(worst, err / bound)
                    if !(err <= bound) {
                        badValues += 1
                        if bad.count < 8 {
                            bad.append("  block \(b) [\(c.group(containing: i))] value \(i - 32 * b): "
                                + "\(QuantFixtures.describe(x[i])) → \(QuantFixtures.describe(y[i])), "
                                + "error \(err) > bound \(bound) (d \(scale.d), m \(scale.m))")
                        }
                    }
                }
            }
            XCTAssertGreaterThan(checked, c.blocks / 2, "\(c.name): too few blocks in range to check")
            if badValues > 0 {
                XCTFail("\(type) round trip: \(badValues) values off by more than half a step (+ fp16 d/m rounding), "
                    + "worst \(worst)× the bound\n" + bad.joined(separator: "\n"))
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

// MARK: - Round-trip bounds

/// The fp32 scale d and min m of one block of a 32-value type, as the format defines them (Q8_0 max|x|/127; Q4_0,
/// Q5_0 the value of largest magnitude over −8, −16; Q4_1, Q5_1 (max − min)/15, /31 and m = min), computed from the
/// values independently of CQuant, and how far quantize → dequantize may move a value of the block.
private struct QuantRoundTripScale {
    let type: QuantType
    let d: Float
    let m: Float

    init(_ type: QuantType, _ block: ArraySlice<Float>) {
        var lo = Float.infinity, hi = -Float.infinity, extreme: Float = 0
        for v in block {
            lo = min(lo, v)
            hi = max(hi, v)
            if abs(v) > abs(extreme) { extreme = v }
        }
        self.type = type
        switch type {
        case .q8_0: d = abs(extreme) / 127
        case .q4_0: d = extreme / -8
        case .q5_0: d = extreme / -16
        case .q4_1: d = (hi - lo) / 15
        default: d = (hi - lo) / 31
        }
        m = type == .q4_1 || type == .q5_1 ? lo : 0
    }

    /// The largest |code| multiplying d (codes less 8 / 16 for Q4_0 / Q5_0).
    private var codeMax: Float {
        switch type {
        case .q8_0: return 127
        case .q4_0: return 8
        case .q5_0: return 16
        case .q4_1: return 15
        default: return 31
        }
    }

    /// How far fp16 rounding may move v: half an ulp, 2^-11 relative for normal halves, 2^-25 below them.
    private static func fp16Error(_ v: Float) -> Float { max(abs(v) * 0x1p-11, 0x1p-25) }

    /// Half a step, or for Q4_0/Q5_0 values past the last code the distance to it; plus fp16 and fp32 rounding.
    func bound(_ x: Float) -> Float {
        let step: Float
        if (type == .q4_0 || type == .q5_0) && d != 0 && x / d > codeMax - 0.5 {
            step = abs(x - (codeMax - 1) * d)
        } else {
            step = abs(d) / 2
        }
        let minError: Float = type == .q4_1 || type == .q5_1 ? Self.fp16Error(m) : 0
        let rounding: Float = 2e-6 * (abs(x) + abs(m) + codeMax * abs(d))
        return step + codeMax * Self.fp16Error(d) + minError + rounding
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

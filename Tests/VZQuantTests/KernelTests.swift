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

final class KernelTests: XCTestCase {
    func testTypeTableMatchesGGML() {
        XCTAssertEqual(QuantType.q8_0.blockBytes, 34)
        XCTAssertEqual(QuantType.q4_0.blockBytes, 18)
        XCTAssertEqual(QuantType.q6_K.blockElements, 256)
        XCTAssertEqual(QuantType(name: "Q4_0"), .q4_0)
        XCTAssertNil(QuantType(name: "q3_k"))
        XCTAssertNil(QuantType.q8_0.rowBytes(33))
    }

    /// Every supported kernel agrees with the scalar reference through the Swift API.
    func testPackedGemmMatchesScalarOnEveryKernel() throws {
        let (m, n, k) = (5, 19, 256)
        var rng = SeededRandom(seed: 7)
        let w = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) }
        let x = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
        for type in [QuantType.q8_0, .q4_0, .f16, .f32] {
            let reference = try PackedMatrix.quantizing(w, rows: n, cols: k, to: type, kernel: .scalar).multiply(x, rows: m)
            for kernel in Kernel.allCases where kernel.isSupported {
                let y = try PackedMatrix.quantizing(w, rows: n, cols: k, to: type, kernel: kernel).multiply(x, rows: m)
                for i in 0..<y.count {
                    XCTAssertEqual(y[i], reference[i], accuracy: 1e-4 * max(1, abs(reference[i])), "\(type) \(kernel) [\(i)]")
                }
            }
        }
    }

    func testQuantizedGemmIsCloseToFloat() throws {
        let (m, n, k) = (3, 16, 512)
        var rng = SeededRandom(seed: 42)
        let w = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) }
        let x = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
        let exact = try PackedMatrix.quantizing(w, rows: n, cols: k, to: .f32).multiply(x, rows: m)
        let q8 = try PackedMatrix.quantizing(w, rows: n, cols: k, to: .q8_0).multiply(x, rows: m)
        let q4 = try PackedMatrix.quantizing(w, rows: n, cols: k, to: .q4_0).multiply(x, rows: m)
        XCTAssertGreaterThan(cosine(exact, q8), 0.9999)
        XCTAssertGreaterThan(cosine(exact, q4), 0.99)
    }

    func testBadShapesThrow() {
        XCTAssertThrowsError(try QuantType.q8_0.quantize([Float](repeating: 1, count: 33)))
        XCTAssertThrowsError(try PackedMatrix.quantizing([Float](repeating: 1, count: 40), rows: 1, cols: 40, to: .q4_0))
    }

    private func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var ab = 0.0, aa = 0.0, bb = 0.0
        for i in 0..<a.count { ab += Double(a[i] * b[i]); aa += Double(a[i] * a[i]); bb += Double(b[i] * b[i]) }
        return ab / (aa.squareRoot() * bb.squareRoot())
    }
}


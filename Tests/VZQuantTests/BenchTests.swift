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

/// The benchmark machinery on one tiny case. Benchmarks are never timed pass/fail: these tests only check that
/// the numbers are well-formed (positive, finite, consistent) and that the JSON carries its stable fields.
final class BenchTests: XCTestCase {
    func testMachinePeaksAreWellFormed() {
        let peaks = MachinePeaks.measure(threads: 1, peakSeconds: 0.01, bandwidthBytes: 1 << 20, repeats: 1)
        XCTAssertTrue(peaks.peakGOPS.isFinite)
        XCTAssertGreaterThanOrEqual(peaks.peakGOPS, 0) // 0 = unknown (scalar-only build)
        XCTAssertTrue(peaks.copyGBps.isFinite && peaks.copyGBps > 0)
        XCTAssertTrue(peaks.readGBps.isFinite && peaks.readGBps > 0)
    }

    func testTimingCountsRepeats() {
        var calls = 0
        let t = GemmBench.time(minSeconds: 0, minRepeats: 3) { calls += 1 }
        XCTAssertEqual(t.repeats, 3)
        XCTAssertEqual(calls, 4) // one warm-up call
        XCTAssertLessThanOrEqual(t.best, t.median)
    }

    func testOneTinyCaseReportsConsistentNumbersAndJSON() throws {
        let options = GemmBenchOptions(types: [.f32, .q8_0], ms: [1], shapes: [GemmShape(k: 64, n: 16)], threads: 2,
                                       minSeconds: 0.001, minRepeats: 1, rounds: 2, coldBytes: 1 << 16)
        var seen = 0, measured = 0
        let report = try GemmBench.runMeasuringMachine(options, measure: {
            measured += 1
            return MachinePeaks.measure(threads: 2, peakSeconds: 0.01, bandwidthBytes: 1 << 20, repeats: 1)
        }) { _ in seen += 1 }
        XCTAssertEqual(measured, 3) // before, and after each of the two rounds
        XCTAssertTrue(report.readGBps.isFinite && report.readGBps > 0)
        XCTAssertEqual(seen, 2)
        XCTAssertEqual(report.results.count, 2)

        for r in report.results {
            XCTAssertEqual(r.m, 1)
            XCTAssertEqual(r.k, 64)
            XCTAssertEqual(r.n, 16)
            XCTAssertEqual(r.threads, 2)
            XCTAssertTrue(r.gops.isFinite && r.gops > 0, "\(r.type) gops \(r.gops)")
            XCTAssertTrue(r.medianGOPS.isFinite && r.medianGOPS > 0)
            XCTAssertLessThanOrEqual(r.medianGOPS, r.gops * (1 + 1e-12))
            XCTAssertEqual(r.peakGOPS, report.peakGOPS)
            if r.peakGOPS > 0 {
                XCTAssertEqual(r.efficiency, r.gops / r.peakGOPS, accuracy: 1e-12 * max(1, r.efficiency))
            } else {
                XCTAssertEqual(r.efficiency, 0)
            }
            let speedup = try XCTUnwrap(r.speedupVsF32)
            XCTAssertTrue(speedup.isFinite && speedup > 0)
            let scaling = try XCTUnwrap(r.threadScaling)
            XCTAssertTrue(scaling.isFinite && scaling > 0)
            let bandwidth = try XCTUnwrap(r.bandwidthGBps)
            XCTAssertTrue(bandwidth.isFinite && bandwidth > 0)
            XCTAssertEqual(bandwidth, Double(r.weightBytes) / r.bestSeconds * 1e-9, accuracy: 1e-9 * bandwidth)
            let bwEff = try XCTUnwrap(r.bandwidthEfficiency)
            XCTAssertEqual(bwEff, bandwidth / report.readGBps, accuracy: 1e-12 * max(1, bwEff))
            XCTAssertGreaterThan(r.weightCopies, 1) // 64 KiB of copies of a ≤ 4 KiB matrix
        }
        XCTAssertEqual(report.results[0].speedupVsF32, 1)

        let json = try report.json()
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        for key in ["peak_gops", "copy_gbps", "read_gbps", "kernel", "results"] {
            XCTAssertNotNil(object[key], "missing top-level \(key)")
        }
        let results = try XCTUnwrap(object["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, 2)
        let required = ["type", "m", "k", "n", "threads", "gops", "peak_gops", "efficiency", "speedup_vs_f32",
                        "thread_scaling", "bandwidth_gbps", "bandwidth_efficiency"]
        for result in results {
            for key in required { XCTAssertNotNil(result[key], "missing result field \(key)") }
            let gops = try XCTUnwrap(result["gops"] as? Double)
            let peak = try XCTUnwrap(result["peak_gops"] as? Double)
            let efficiency = try XCTUnwrap(result["efficiency"] as? Double)
            if peak > 0 { XCTAssertEqual(efficiency, gops / peak, accuracy: 1e-9 * max(1, efficiency)) }
        }
        XCTAssertEqual(results.map { $0["type"] as? String }, ["f32", "q8_0"])
        // Round trip: the JSON is the report.
        XCTAssertEqual(try JSONDecoder().decode(GemmBenchReport.self, from: Data(json.utf8)), report)
    }

    func testM1OnlyCarriesBandwidth() throws {
        let peaks = MachinePeaks(peakGOPS: 100, copyGBps: 10, readGBps: 10, threads: 1)
        let options = GemmBenchOptions(types: [.q4_0], ms: [4], shapes: [GemmShape(k: 32, n: 8)], threads: 1,
                                       minSeconds: 0, minRepeats: 1, coldBytes: 0)
        let report = try GemmBench.run(options, peaks: peaks)
        let r = try XCTUnwrap(report.results.first)
        XCTAssertNil(r.bandwidthGBps)
        XCTAssertNil(r.speedupVsF32) // F32 not measured
        XCTAssertEqual(r.threadScaling, 1) // one thread: compared with itself
        XCTAssertEqual(r.weightCopies, 1)
        XCTAssertFalse(try report.json().contains("bandwidth_gbps"))
    }
}

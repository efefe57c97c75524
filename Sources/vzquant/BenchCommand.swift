import ArgumentParser
import Foundation
import VZQuant

/// `vzquant bench …`: measurements only, never pass/fail. Each kind of benchmark is one subcommand.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure performance (numbers only; nothing here passes or fails).",
        subcommands: [BenchGemm.self]
    )
}

struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GEMM/GEMV throughput of F32, Q8_0 and Q4_0 weights on LLM-shaped matrices.",
        discussion: """
            Packs random weights, then times cq_gemm for M ∈ {1, 16, 128, 512} on K×N ∈ {576×1536, 2048×5632, \
            4096×11008}, at --threads and at 1 thread. GOPS = 2·M·N·K / best time. Efficiency is against the int8 \
            multiply-add peak measured in the same run (for f32 rows as well). For M = 1 the weight-streaming \
            bandwidth is compared with the measured read bandwidth. --quick: the first shape only, short timings.
            """
    )

    @OptionGroup var compute: ComputeOptions

    @Flag(name: .long, help: "Print one JSON object instead of the table.")
    var json = false

    @Flag(name: .long, help: "One small shape and short timings (seconds instead of minutes).")
    var quick = false

    func run() throws {
        try compute.apply()
        let threads = Threads.count
        let started = Date()
        let measure = {
            quick
                ? MachinePeaks.measure(threads: threads, peakSeconds: 0.25, bandwidthBytes: 96 << 20, repeats: 3)
                : MachinePeaks.measure(threads: threads)
        }
        let options: GemmBenchOptions = quick ? .quick(threads: threads) : .standard(threads: threads)

        // Machine figures before, between rounds and after; the best of each is the yardstick (interference
        // only lowers them).
        if isatty(2) != 0 {
            let cases = options.shapes.count * options.ms.count * options.types.count
            FileHandle.standardError.write(Data(
                "measuring \(cases) cases in \(options.rounds) rounds (\(quick ? "seconds" : "1–3 minutes"))…\n".utf8))
        }
        let report = try GemmBench.runMeasuringMachine(options, measure: measure)

        if json {
            print(try report.json())
        } else {
            printTable(report, seconds: Date().timeIntervalSince(started))
        }
    }

    private func printTable(_ report: GemmBenchReport, seconds: Double) {
        let n = report.threads
        print("cpu \(report.cpu) · kernel \(report.kernel) · \(n) thread\(n == 1 ? "" : "s")"
            + " · int8 peak \(fmt(report.peakGOPS, 1)) GOPS\(report.peakGOPS > 0 ? "" : " (unknown in this build)")"
            + " · copy \(fmt(report.copyGBps, 1)) GB/s · read \(fmt(report.readGBps, 1)) GB/s")
        print("GOPS = 2·M·N·K / best call (median also shown); eff = GOPS / int8 peak (f32 rows too); ×f32 = vs the"
            + " f32 path, same M and shape; 1T = 1 thread; BW = packed weight bytes / best call (M = 1) and BW% vs"
            + " read GB/s; weights cycle through ≥ 128 MB of copies, so they stream from memory")
        let columns: [(String, Int)] = [("type", 5), ("M", 4), ("K×N", 11), ("GOPS", 8), ("median", 8), ("eff%", 6),
                                        ("×f32", 6), ("1T GOPS", 8), ("scaling", 7), ("ms/call", 9), ("BW GB/s", 8),
                                        ("BW%", 5)]
        print(columns.map { pad($0.0, $0.1, left: $0.0 == "type") }.joined(separator: " "))
        print(String(repeating: "-", count: columns.map(\.1).reduce(0, +) + columns.count - 1))
        var lastShape = ""
        for r in report.results {
            let shape = "\(r.k)×\(r.n)"
            if !lastShape.isEmpty, shape != lastShape { print("") }
            lastShape = shape
            var cells: [String] = [r.type, "\(r.m)", shape, fmt(r.gops, 2), fmt(r.medianGOPS, 2)]
            cells.append(r.peakGOPS > 0 ? fmt(100 * r.efficiency, 1) : "-")
            cells.append(opt(r.speedupVsF32, 2))
            cells.append(opt(r.gopsOneThread, 2))
            cells.append(opt(r.threadScaling, 2))
            cells.append(fmt(1000 * r.bestSeconds, 3))
            cells.append(opt(r.bandwidthGBps, 2, missing: ""))
            cells.append(opt(r.bandwidthEfficiency.map { 100 * $0 }, 0, missing: ""))
            print(zip(cells, columns).map { pad($0.0, $0.1.1, left: $0.1.0 == "type") }.joined(separator: " "))
        }
        print("(\(fmt(seconds, 1)) s)")
    }
}

private func fmt(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "-" }
    return String(format: "%.\(digits)f", v)
}

private func opt(_ v: Double?, _ digits: Int, missing: String = "-") -> String {
    guard let v else { return missing }
    return fmt(v, digits)
}

/// Pads to `width` columns (counting characters, so "×" is one).
private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? s + fill : fill + s
}

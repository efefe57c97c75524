import CQuant
import Foundation
import VZQRuntime
import VZQConvert
import VZQTokenReduction
import VZQText
import VZQModels
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport

// MARK: - What the machine can do

/// The machine's measured limits, the yardsticks GEMM numbers are read against. All are best-of-repeats on
/// every thread at once (see CQuant's "Measurement" section for what exactly is counted).
public struct MachinePeaks: Sendable, Codable, Equatable {
    /// int8 multiply-add peak, GOPS (1 multiply-add = 2 ops) from the kernels' own instruction sequence
    /// (AVX2 maddubs→madd→add, NEON SDOT or smull/sadalp). 0: unknown (scalar-only build).
    public var peakGOPS: Double
    /// Streaming copy, GB/s counting bytes read + written.
    public var copyGBps: Double
    /// Streaming read (sum of a large array), GB/s — what a GEMV, which only reads weights, can reach.
    public var readGBps: Double
    public var threads: Int

    public init(peakGOPS: Double, copyGBps: Double, readGBps: Double, threads: Int) {
        self.peakGOPS = peakGOPS
        self.copyGBps = copyGBps
        self.readGBps = readGBps
        self.threads = threads
    }

    /// Measures on `threads` threads. `bandwidthBytes` should be far beyond the last-level cache.
    public static func measure(threads: Int, peakSeconds: Double = 0.6, bandwidthBytes: Int = 256 << 20,
                               repeats: Int = 10) -> MachinePeaks {
        let t = Int32(threads)
        return MachinePeaks(
            peakGOPS: cq_measure_int8_peak_gops(t, peakSeconds),
            copyGBps: cq_measure_copy_gbps(bandwidthBytes, t, Int32(repeats)),
            readGBps: cq_measure_read_gbps(bandwidthBytes, t, Int32(repeats)),
            threads: threads)
    }

    /// The better of two measurements of the same machine: on a shared machine interference only ever lowers
    /// a figure, so measuring before and after a long run and keeping the maximum is the fairer yardstick.
    public func best(_ other: MachinePeaks) -> MachinePeaks {
        MachinePeaks(peakGOPS: max(peakGOPS, other.peakGOPS), copyGBps: max(copyGBps, other.copyGBps),
                     readGBps: max(readGBps, other.readGBps), threads: threads)
    }
}

// MARK: - Configuration

/// One weight shape: W is N × K (N output features, K inputs), as in an LLM's linear layers.
public struct GemmShape: Sendable, Equatable, CustomStringConvertible {
    public var k: Int
    public var n: Int
    public init(k: Int, n: Int) { self.k = k; self.n = n }
    public var description: String { "\(k)×\(n)" }

    /// A small VLM's projector/MLP (576×1536), a 1–2B LLM's MLP (2048×5632), a 7B LLM's MLP (4096×11008).
    public static let llm: [GemmShape] = [GemmShape(k: 576, n: 1536), GemmShape(k: 2048, n: 5632),
                                          GemmShape(k: 4096, n: 11008)]
}

public struct GemmBenchOptions: Sendable {
    public var types: [QuantType]
    public var ms: [Int]
    public var shapes: [GemmShape]
    /// Threads for the main measurement (thread scaling compares it with 1 thread).
    public var threads: Int
    /// Time each case (per thread count) for at least this many seconds in all …
    public var minSeconds: Double
    /// … and at least this many timed calls in all (warm-up calls not counted).
    public var minRepeats: Int
    /// At most this many timed calls per round.
    public var maxRepeats: Int
    /// The time is split into rounds over all cases of all shapes (round 1: every case, round 2: every case, …),
    /// so a burst of interference on a shared machine cannot spoil all samples of one case. All shapes' weights
    /// are therefore held at once (about 1.3 GB for the standard grid with the default `coldBytes`). Per round a case gets
    /// minSeconds/rounds and ⌈minRepeats/rounds⌉ calls.
    public var rounds: Int
    /// Also time every case on one thread (for `threadScaling`).
    public var measureOneThread: Bool
    /// Weights are packed into enough copies to fill at least this many bytes, and successive calls cycle
    /// through them, so every call streams its weights from memory as each layer of a real forward pass does
    /// (a single small matrix would otherwise sit in the last-level cache). 0: one copy.
    public var coldBytes: Int

    public init(types: [QuantType] = [.f32, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K], ms: [Int] = [1, 16, 128, 512],
                shapes: [GemmShape] = GemmShape.llm, threads: Int = Threads.count, minSeconds: Double = 0.6,
                minRepeats: Int = 3, maxRepeats: Int = 10_000, rounds: Int = 3, measureOneThread: Bool = true,
                coldBytes: Int = 128 << 20) {
        self.types = types
        self.ms = ms
        self.shapes = shapes
        self.threads = threads
        self.minSeconds = minSeconds
        self.minRepeats = minRepeats
        self.maxRepeats = maxRepeats
        self.rounds = rounds
        self.measureOneThread = measureOneThread
        self.coldBytes = coldBytes
    }

    /// The full grid: 9 types × 4 M × 3 shapes (the K-quants on the shapes whose K is a multiple of 256).
    public static func standard(threads: Int = Threads.count) -> GemmBenchOptions {
        GemmBenchOptions(threads: threads)
    }

    /// One small shape and short timings: a smoke run in seconds.
    public static func quick(threads: Int = Threads.count) -> GemmBenchOptions {
        GemmBenchOptions(shapes: [GemmShape.llm[0]], threads: threads, minSeconds: 0.1, minRepeats: 2,
                         rounds: 2)
    }
}

// MARK: - Results

/// One measured case. Rates use the best timed call (a noisy machine only ever slows a call down);
/// `medianGOPS` is there to show the spread.
public struct GemmCaseResult: Sendable, Codable, Equatable {
    public var type: String
    public var m: Int
    public var k: Int
    public var n: Int
    public var threads: Int
    /// 2·M·N·K / best seconds, in 10^9 ops/s.
    public var gops: Double
    public var medianGOPS: Double
    public var bestSeconds: Double
    public var medianSeconds: Double
    public var repeats: Int
    /// The int8 peak measured in the same run (for F32 rows too: it is still the int8 peak).
    public var peakGOPS: Double
    /// gops / peakGOPS as a fraction; 0 when the peak is unknown.
    public var efficiency: Double
    /// gops / the F32 path's gops for the same M and shape (1 for F32; nil when F32 was not measured).
    public var speedupVsF32: Double?
    /// The same case on one thread.
    public var gopsOneThread: Double?
    /// gops / gopsOneThread.
    public var threadScaling: Double?
    /// Packed weight bytes (streamed once per call).
    public var weightBytes: Int
    /// Copies of the packed weights that calls cycle through (see `GemmBenchOptions.coldBytes`).
    public var weightCopies: Int
    /// M = 1 only: weightBytes / best seconds, GB/s …
    public var bandwidthGBps: Double?
    /// … as a fraction of the measured read bandwidth.
    public var bandwidthEfficiency: Double?

    enum CodingKeys: String, CodingKey {
        case type, m, k, n, threads, gops, repeats, efficiency
        case medianGOPS = "median_gops"
        case bestSeconds = "best_seconds"
        case medianSeconds = "median_seconds"
        case peakGOPS = "peak_gops"
        case speedupVsF32 = "speedup_vs_f32"
        case gopsOneThread = "gops_1_thread"
        case threadScaling = "thread_scaling"
        case weightBytes = "weight_bytes"
        case weightCopies = "weight_copies"
        case bandwidthGBps = "bandwidth_gbps"
        case bandwidthEfficiency = "bandwidth_efficiency"
    }
}

public struct GemmBenchReport: Sendable, Codable, Equatable {
    public var cpu: String
    public var kernel: String
    public var threads: Int
    public var peakGOPS: Double
    public var copyGBps: Double
    public var readGBps: Double
    public var results: [GemmCaseResult]

    enum CodingKeys: String, CodingKey {
        case cpu, kernel, threads, results
        case peakGOPS = "peak_gops"
        case copyGBps = "copy_gbps"
        case readGBps = "read_gbps"
    }

    /// The same results read against other machine figures (efficiencies recomputed).
    public func withPeaks(_ peaks: MachinePeaks) -> GemmBenchReport {
        var copy = self
        copy.peakGOPS = peaks.peakGOPS
        copy.copyGBps = peaks.copyGBps
        copy.readGBps = peaks.readGBps
        copy.results = results.map { r in
            var r = r
            r.peakGOPS = peaks.peakGOPS
            r.efficiency = peaks.peakGOPS > 0 ? r.gops / peaks.peakGOPS : 0
            if let bw = r.bandwidthGBps { r.bandwidthEfficiency = peaks.readGBps > 0 ? bw / peaks.readGBps : 0 }
            return r
        }
        return copy
    }

    /// Stable, sorted-key JSON (one line per the encoder's default formatting).
    public func json(pretty: Bool = false) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

// MARK: - The benchmark

public enum GemmBench {
    public struct Timing: Sendable {
        public var best: Double
        public var median: Double
        public var repeats: Int

        /// Best and median of call times (seconds); `samples` must not be empty.
        public init(samples: [Double]) {
            let sorted = samples.sorted()
            let mid = sorted.count / 2
            best = sorted[0]
            median = sorted.count % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid])
            repeats = sorted.count
        }
    }

    /// Optionally calls `body` once untimed (warm-up: page faults, thread pool, caches), then times single
    /// calls until at least `minSeconds` were spent and `minRepeats` calls were made (at most `maxRepeats`).
    /// Returns the seconds of each timed call.
    public static func samples(minSeconds: Double, minRepeats: Int, maxRepeats: Int = 10_000, warmUp: Bool = true,
                               _ body: () throws -> Void) rethrows -> [Double] {
        if warmUp { try body() }
        var samples: [Double] = []
        var spent = 0.0
        while samples.count < max(1, maxRepeats), spent < minSeconds || samples.count < max(1, minRepeats) {
            let t0 = cq_now_seconds()
            try body()
            let dt = cq_now_seconds() - t0
            samples.append(dt)
            spent += dt
        }
        return samples
    }

    /// `samples` summarized.
    public static func time(minSeconds: Double, minRepeats: Int, maxRepeats: Int = 10_000,
                            _ body: () throws -> Void) rethrows -> Timing {
        Timing(samples: try samples(minSeconds: minSeconds, minRepeats: minRepeats, maxRepeats: maxRepeats, body))
    }

    /// The CPU's model name from /proc/cpuinfo (Linux), else the architecture.
    public static func cpuName() -> String {
        if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("model name") || line.hasPrefix("Model") {
                if let colon = line.firstIndex(of: ":") {
                    let name = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    if !name.isEmpty { return name }
                }
            }
        }
        #if arch(x86_64)
        return "x86_64"
        #elseif arch(arm64)
        return "aarch64"
        #else
        return "unknown"
        #endif
    }

    /// `run`, with the machine measured by `measure` before the first round, after every round and at the end;
    /// the report is read against the best of those measurements (interference only lowers them, and on a
    /// shared machine it comes and goes).
    public static func runMeasuringMachine(_ options: GemmBenchOptions, measure: () -> MachinePeaks,
                                           progress: ((GemmCaseResult) -> Void)? = nil) throws -> GemmBenchReport {
        var peaks = measure()
        let report = try run(options, peaks: peaks, afterRound: { peaks = peaks.best(measure()) }, progress: progress)
        return report.withPeaks(peaks)
    }

    /// Everything one shape needs: its packed weights per type and its buffers per M.
    private final class ShapeSetup {
        let shape: GemmShape
        /// Per type: copies of the same packed weights (calls cycle through them).
        var packed: [(type: QuantType, copies: [PackedMatrix])] = []
        var x: [UnsafeMutablePointer<Float>] = []
        var y: [UnsafeMutablePointer<Float>] = []
        var workspace: [UnsafeMutableRawPointer] = []
        /// Call times per [M index][type index], at `threads` and at 1 thread.
        var samplesN: [[[Double]]] = []
        var samples1: [[[Double]]] = []

        init(shape: GemmShape, options: GemmBenchOptions, rng: inout SeededRandom) throws {
            self.shape = shape
            // Random fp32 weights, quantized once per type and packed once per copy; reused for every M and
            // thread count.
            let w = rng.floats(count: shape.n * shape.k, scale: 0.05)
            // A type whose block does not divide K (the K-quants' 256 on 576) has no case on this shape.
            for type in options.types where shape.k % type.blockElements == 0 {
                let fileBytes = type == .f32 ? [] : try type.quantize(w)
                let pack = { () throws -> PackedMatrix in
                    if type == .f32 {
                        return try w.withUnsafeBytes {
                            try PackedMatrix(type: .f32, bytes: $0.baseAddress!, rows: shape.n, cols: shape.k)
                        }
                    }
                    return try fileBytes.withUnsafeBytes {
                        try PackedMatrix(type: type, bytes: $0.baseAddress!, rows: shape.n, cols: shape.k)
                    }
                }
                var copies = [try pack()]
                let wanted = options.coldBytes / max(1, copies[0].packedBytes) + 1
                while options.coldBytes > copies[0].packedBytes, copies.count < min(wanted, 512) {
                    copies.append(try pack())
                }
                packed.append((type, copies))
            }
            // Inputs, outputs and workspace for every M, allocated and first touched once.
            for m in options.ms {
                let xValues = rng.floats(count: m * shape.k, scale: 1)
                let xp = UnsafeMutablePointer<Float>.allocate(capacity: m * shape.k)
                xp.initialize(from: xValues, count: xValues.count)
                let yp = UnsafeMutablePointer<Float>.allocate(capacity: m * shape.n)
                yp.initialize(repeating: 0, count: m * shape.n)
                let bytes = max(64, packed.map { $0.copies[0].workspaceBytes(rows: m) }.max() ?? 0)
                let wp = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                wp.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
                x.append(xp)
                y.append(yp)
                workspace.append(wp)
            }
            samplesN = [[[Double]]](repeating: [[Double]](repeating: [], count: packed.count), count: options.ms.count)
            samples1 = samplesN
        }

        deinit {
            x.forEach { $0.deallocate() }
            y.forEach { $0.deallocate() }
            workspace.forEach { $0.deallocate() }
        }
    }

    /// Runs every (shape, M, type) case. All shapes are set up first (weights packed once per shape and type with
    /// the current kernel, X/Y/workspace once per shape and M); then `options.rounds` rounds each time every
    /// case briefly, at `threads` and at 1 thread, so every case's samples are spread over the whole run.
    /// `afterRound` runs after each round; `progress` sees each result at the end. Changes `Threads.count` while
    /// running and restores it.
    public static func run(_ options: GemmBenchOptions, peaks: MachinePeaks, afterRound: () -> Void = {},
                           progress: ((GemmCaseResult) -> Void)? = nil) throws -> GemmBenchReport {
        let savedThreads = Threads.count
        defer { Threads.count = savedThreads }
        let threads = max(1, options.threads)
        var rng = SeededRandom(seed: 0x5EED)
        let setups = try options.shapes.map { try ShapeSetup(shape: $0, options: options, rng: &rng) }

        let rounds = max(1, options.rounds)
        let roundSeconds = options.minSeconds / Double(rounds)
        let roundRepeats = (max(1, options.minRepeats) + rounds - 1) / rounds
        let oneThread = options.measureOneThread && threads > 1
        for round in 0..<rounds {
            for s in setups {
                for (mi, m) in options.ms.enumerated() {
                    let (x, y, workspace) = (s.x[mi], s.y[mi], s.workspace[mi])
                    for (ti, entry) in s.packed.enumerated() {
                        let copies = entry.copies
                        var next = 0
                        let call = {
                            try copies[next].multiply(x, rows: m, into: y, workspace: workspace)
                            next = next + 1 == copies.count ? 0 : next + 1
                        }
                        // Warm up in the first round, and whenever a call is short enough for the warm-up to
                        // matter (thread wake-up, this case's buffers back into cache).
                        func warm(_ previous: [Double]) -> Bool { round == 0 || (previous.min() ?? 0) < 0.05 }
                        Threads.count = threads
                        s.samplesN[mi][ti] += try samples(minSeconds: roundSeconds, minRepeats: roundRepeats,
                                                          maxRepeats: options.maxRepeats,
                                                          warmUp: warm(s.samplesN[mi][ti]), call)
                        if oneThread {
                            Threads.count = 1
                            s.samples1[mi][ti] += try samples(minSeconds: roundSeconds, minRepeats: roundRepeats,
                                                              maxRepeats: options.maxRepeats,
                                                              warmUp: warm(s.samples1[mi][ti]), call)
                        }
                    }
                }
            }
            afterRound()
        }

        var results: [GemmCaseResult] = []
        for s in setups {
            let shape = s.shape
            for (mi, m) in options.ms.enumerated() {
                let ops = 2.0 * Double(m) * Double(shape.n) * Double(shape.k)
                var f32GOPS: Double?
                for (ti, (type, copies)) in s.packed.enumerated() {
                    let main = Timing(samples: s.samplesN[mi][ti])
                    let gops = ops / main.best * 1e-9
                    var one: Double?
                    if options.measureOneThread {
                        one = oneThread ? ops / Timing(samples: s.samples1[mi][ti]).best * 1e-9 : gops
                    }
                    if type == .f32 { f32GOPS = gops }
                    let bytes = copies[0].packedBytes
                    var result = GemmCaseResult(
                        type: type.description, m: m, k: shape.k, n: shape.n, threads: threads,
                        gops: gops, medianGOPS: ops / main.median * 1e-9, bestSeconds: main.best,
                        medianSeconds: main.median, repeats: main.repeats, peakGOPS: peaks.peakGOPS,
                        efficiency: peaks.peakGOPS > 0 ? gops / peaks.peakGOPS : 0,
                        speedupVsF32: f32GOPS.map { gops / $0 },
                        gopsOneThread: one, threadScaling: one.map { gops / $0 },
                        weightBytes: bytes, weightCopies: copies.count, bandwidthGBps: nil,
                        bandwidthEfficiency: nil)
                    if m == 1 {
                        let gbps = Double(bytes) / main.best * 1e-9
                        result.bandwidthGBps = gbps
                        result.bandwidthEfficiency = peaks.readGBps > 0 ? gbps / peaks.readGBps : 0
                    }
                    results.append(result)
                    progress?(result)
                }
            }
        }
        return GemmBenchReport(cpu: cpuName(), kernel: Kernel.current.description, threads: threads,
                               peakGOPS: peaks.peakGOPS, copyGBps: peaks.copyGBps, readGBps: peaks.readGBps,
                               results: results)
    }
}

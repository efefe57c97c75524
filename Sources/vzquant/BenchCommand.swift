import ArgumentParser
import Foundation
import VZQuant

/// `vzquant bench …`: measurements only, never pass/fail. Each kind of benchmark is one subcommand.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure performance (numbers only; nothing here passes or fails).",
        subcommands: [BenchModel.self, BenchGemm.self]
    )
}

struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GEMM/GEMV throughput of F32, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights on LLM-shaped matrices.",
        discussion: """
            Packs random weights, then times cq_gemm for M ∈ {1, 16, 128, 512} on K×N ∈ {576×1536, 2048×5632, \
            4096×11008}, at --threads and at 1 thread. GOPS = 2·M·N·K / best time. Efficiency is against the int8 \
            multiply-add peak measured in the same run (for f32 rows as well). For M = 1 the weight-streaming \
            bandwidth is compared with the measured read bandwidth. The K-quants (256-value blocks) skip the \
            576-wide shape. --quick: the first shape only, short timings.
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

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Memory and prefill/decode speed of a quantized (vision-language) model, with and without VisionZip.",
        discussion: """
            One row per visual-token budget: a fresh load sized for exactly that budget, a warm-up run, then \
            --repetitions timed runs of image preprocessing → vision encoder → VisionZip → projector → LLM prefill \
            → first token → greedy decode (min / median / max). Peak RSS is the kernel's VmHWM, reset before each \
            row. Ratios (TTFT and prefill speed-up, peak RSS saved) are against the 'all' row of the same run. \
            Without --image a built-in 1024×768 test picture is used. --preset builds a model of a real \
            architecture and size with seeded random weights (written once to $VZQ_MODELS/presets, default \
            ~/.cache/vzquant/models/presets): speed and memory do not depend on the weights' values.
            """
    )

    @Option(name: [.customShort("m"), .long], help: "Text model GGUF (or use --preset).")
    var model: String?

    @Option(name: .long, help: "Vision file (mmproj GGUF).")
    var mmproj: String?

    @Option(name: .long, help: "Built-in model: \(ModelPreset.names.joined(separator: ", ")).")
    var preset: String?

    @Option(name: .long, help: "Weight type of --preset: q4_0 or q8_0.")
    var type = "q4_0"

    @Option(name: .long, help: "Image file (default: a built-in test picture).")
    var image: String?

    @Option(name: .customLong("visual-tokens"), help: "Comma-separated budgets per image/crop; 'all' = VisionZip off (default: all and 1/3, 2/9, 1/9 of a crop's tokens: all,192,128,64 for LLaVA-1.5).")
    var visualTokens: String?

    @Option(name: .customLong("token-reducer"), help: "Comma-separated token reducers, one row each per budget: visionzip, divprune (default visionzip).")
    var tokenReducer = "visionzip"

    @Option(name: .customLong("prompt-tokens"), help: "Text tokens in the prompt (default: 20 with an image, 512 without).")
    var promptTokens: Int?

    @Option(name: .customLong("gen-tokens"), help: "Tokens to generate (0: prefill only).")
    var genTokens = 16

    @Option(name: .long, help: "Timed repetitions per row (after one warm-up run).")
    var repetitions = 3

    @Option(name: [.customLong("cache-type"), .customLong("kv-type")], help: "KV cache type: f32, f16 or q8_0.")
    var kvType = "f16"

    @Option(name: .customLong("max-image-pixels"), help: "Qwen2-VL / Qwen2.5-VL: resize the picture to at most this many pixels (lowers the mmproj's max_pixels).")
    var maxImagePixels: Int?

    @Option(name: .long, help: "Write the results as JSON (fields in the README).")
    var json: String?

    @Option(name: .long, help: "Write the results as a markdown table.")
    var markdown: String?

    @Option(name: .long, help: "Write a bar chart of TTFT and peak RSS per budget (SVG).")
    var svg: String?

    @OptionGroup var compute: ComputeOptions

    var reducerNames: [String] { tokenReducer.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func validate() throws {
        guard (model == nil) != (preset == nil) else { throw ValidationError("give either -m MODEL.gguf or --preset NAME") }
        if preset != nil, mmproj != nil { throw ValidationError("--preset brings its own mmproj") }
        if let preset { do { _ = try ModelPreset.named(preset) } catch { throw ValidationError("\(error)") } }
        guard ["q4_0", "q8_0"].contains(type) else { throw ValidationError("--type must be q4_0 or q8_0") }
        guard KVCacheType(rawValue: kvType) != nil else { throw ValidationError("--cache-type must be f32, f16 or q8_0") }
        if let visualTokens { do { _ = try VisualTokens.list(visualTokens) } catch { throw ValidationError("--visual-tokens: \(error)") } }
        for name in reducerNames {
            do { _ = try TokenReducers.named(name) } catch { throw ValidationError("--token-reducer: \(error)") }
        }
        if let promptTokens, promptTokens < 1 { throw ValidationError("--prompt-tokens must be at least 1") }
        if genTokens < 0 { throw ValidationError("--gen-tokens must be ≥ 0") }
        if repetitions < 1 { throw ValidationError("--repetitions must be at least 1") }
        if let maxImagePixels, !Limits.imagePixels.contains(maxImagePixels) {
            throw ValidationError("--max-image-pixels must be between 1 and \(Limits.imagePixels.upperBound)")
        }
    }

    func run() throws {
        try compute.apply()
        do {
            let outputs = [json, markdown, svg].compactMap { $0 }
            for path in outputs { try OutputPath.validate(path) }
            try OutputPath.validateDistinct(outputs)
            var modelPath = model ?? "", mmprojPath = mmproj
            if let preset { (modelPath, mmprojPath) = try presetFiles(try ModelPreset.named(preset)) }
            var options = ModelBenchOptions(model: modelPath, mmproj: mmprojPath, image: image, promptTokens: promptTokens,
                                            genTokens: genTokens)
            options.visualTokens = try visualTokens.map(VisualTokens.list) ?? []
            options.repetitions = repetitions
            options.reducers = reducerNames
            options.kvCache = KVCacheType(rawValue: kvType) ?? .f32
            options.maxImagePixels = maxImagePixels
            options.setting = kvType == "f16" ? "" : "kv \(kvType)"
            let rowCount = mmprojPath == nil ? 1 : max(options.visualTokens.count, 4) * reducerNames.count
            let progress = BenchProgress(total: 1 + rowCount * (2 + options.warmupRuns + options.repetitions))
            let (rows, peakPerRow) = try ModelBench.run(options, progress: progress)
            progress.finish()
            let report = ModelBenchReport(model: modelPath, mmproj: mmprojPath, image: image, preset: preset,
                                          threads: Threads.count, warmupRuns: options.warmupRuns,
                                          peakRSSPerRow: peakPerRow, results: rows)
            print(report.table())
            if let json { try report.writeJSON(to: json) }
            if let markdown { try report.writeMarkdown(to: markdown) }
            if let svg { try report.writeSVG(to: svg) }
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// The preset's files in the cache folder, written once (seeded: the same bytes on every machine).
    private func presetFiles(_ p: ModelPreset) throws -> (String, String?) {
        let root = ProcessInfo.processInfo.environment["VZQ_MODELS"]
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".cache/vzquant/models")
        let dir = (root as NSString).appendingPathComponent("presets")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let text = (dir as NSString).appendingPathComponent("\(p.name)-\(type).gguf")
        let mm = (dir as NSString).appendingPathComponent("\(p.name)-\(type)-mmproj.gguf")
        let fm = FileManager.default
        if !fm.fileExists(atPath: text) || !fm.fileExists(atPath: mm) {
            let tty = isatty(2) != 0
            FileHandle.standardError.write(Data("writing preset \(p.name) (\(type)) to \(dir) (once)…\n".utf8))
            var shown = -1
            try SyntheticModel.write(preset: p, type: QuantType(name: type)!, textPath: text, mmprojPath: mm, seed: 0) { done, total in
                let percent = total > 0 ? done * 100 / total : 100
                if tty, percent != shown {
                    shown = percent
                    FileHandle.standardError.write(Data("\r  \(percent)% of \(total >> 20) MiB".utf8))
                }
            }
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        }
        return (text, mm)
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

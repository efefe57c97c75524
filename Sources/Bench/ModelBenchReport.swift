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
import CQuant

// The data model and the text outputs of `vzquant bench model`: one row per (visual-token budget × setting),
// every timing as median with min and max over the timed repetitions (the warm-up run is never passed in), ratios
// against the "all" row of the same setting, and the writers (terminal table, JSON, markdown; SVG in
// ReportCharts.swift). The measuring loop lives elsewhere and only fills `PhaseSamples` and the row's counts.

// MARK: - Statistics

/// Minimum, median and maximum of a set of samples.
public struct Stats: Sendable, Equatable {
    public var min: Double
    public var median: Double
    public var max: Double

    public init(min: Double, median: Double, max: Double) {
        self.min = min
        self.median = median
        self.max = max
    }

    /// nil for no samples. The median of an even count is the mean of the two middle values.
    public init?(_ samples: [Double]) {
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        let mid = sorted.count / 2
        min = sorted[0]
        max = sorted[sorted.count - 1]
        median = sorted.count % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid])
    }
}

/// Milliseconds per timed repetition for each phase; a phase that did not run (text-only models have no image
/// phases) stays empty and is reported as null. The loading phase usually has one sample per setting.
public struct PhaseSamples: Sendable, Equatable {
    /// Model (+ mmproj) load: read, map, repack.
    public var load: [Double] = []
    /// Image decode + preprocessing (resize, crop, normalize).
    public var image: [Double] = []
    /// Vision encoder forward pass.
    public var vision: [Double] = []
    /// VisionZip token selection and merging.
    public var visionZip: [Double] = []
    /// Multimodal projector.
    public var projector: [Double] = []
    /// LLM prefill of `prefillTokens` tokens.
    public var prefill: [Double] = []
    /// From the start of image decode (or of prefill, text-only) to the first sampled token.
    public var ttft: [Double] = []
    /// Decoding the row's `decodeTokens` tokens after the first one.
    public var decode: [Double] = []

    public init() {}

    /// The per-repetition phases by JSON name (load is per setting, not per repetition).
    var perRepetition: [(name: String, values: [Double])] {
        [("image_ms", image), ("vision_ms", vision), ("visionzip_ms", visionZip), ("projector_ms", projector),
         ("prefill_ms", prefill), ("ttft_ms", ttft), ("decode_ms", decode)]
    }
}

/// Thrown for inconsistent benchmark data (a bug in the measuring loop or a hand-edited JSON file).
public struct BenchReportError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - One row

/// The `visual_tokens` column: "all" (VisionZip off) or a token budget, encoded in JSON as the string "all" or a
/// number.
public enum BenchVisualTokens: Sendable, Equatable, Codable, CustomStringConvertible {
    case all
    case count(Int)

    /// "all" or a non-negative number, as `VisualTokens.description` prints it; nil otherwise.
    public init?(_ text: String) {
        if text == "all" {
            self = .all
        } else if let n = Int(text), n >= 0 {
            self = .count(n)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .all: return "all"
        case let .count(n): return String(n)
        }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let n = try? container.decode(Int.self), n >= 0 {
            self = .count(n)
        } else if let text = try? container.decode(String.self), text == "all" {
            self = .all
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "visual_tokens is neither \"all\" nor a number")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .all: try container.encode("all")
        case let .count(n): try container.encode(n)
        }
    }
}

/// The memory figures of one row, in bytes.
public struct BenchMemory: Sendable, Equatable {
    /// Model weights as held in memory (mapped file bytes, or repacked buffers).
    public var weightBytes: Int
    /// The planned KV cache.
    public var kvBytes: Int
    /// Activation scratch (arena) of the language model and vision tower.
    public var scratchBytes: Int
    /// VmHWM after the row's runs (nil when the system has no /proc/self/status).
    public var peakRSSBytes: Int?
    /// VmRSS just before the model was loaded.
    public var rssBeforeLoadBytes: Int?

    public init(weightBytes: Int, kvBytes: Int, scratchBytes: Int, peakRSSBytes: Int?, rssBeforeLoadBytes: Int?) {
        self.weightBytes = weightBytes
        self.kvBytes = kvBytes
        self.scratchBytes = scratchBytes
        self.peakRSSBytes = peakRSSBytes
        self.rssBeforeLoadBytes = rssBeforeLoadBytes
    }
}

/// One (visual-token budget × setting) result. Timings are in milliseconds; rates are derived from the medians.
public struct ModelBenchRow: Sendable, Equatable {
    /// What the row measured besides the budget: quant type, KV-cache type, VisionZip split, … ("" if nothing
    /// varies). Ratios compare rows with the same setting.
    public var setting: String
    /// "all" or the VisionZip budget; nil for text-only models.
    public var visualTokens: BenchVisualTokens?
    /// The token reducer of a budget row ("visionzip", "divprune"); nil for "all" and text-only rows.
    public var tokenReducer: String?
    /// VisionZip's dominant and contextual tokens per crop (nil when VisionZip is off).
    public var dominantTokens: Int?
    public var contextualTokens: Int?
    public var images: Int
    /// Crops (tiles) the images were cut into (1 per image for LLaVA-1.5).
    public var crops: Int
    /// Visual tokens before VisionZip, all crops together (nil text-only).
    public var tokensBefore: Int?
    /// Text tokens of the prompt.
    public var promptTokens: Int
    /// Tokens prefilled: prompt + the visual tokens kept.
    public var prefillTokens: Int
    /// Tokens generated (the first comes out of prefill).
    public var genTokens: Int
    /// Tokens timed by the decode phase (usually genTokens − 1).
    public var decodeTokens: Int
    /// Weight type of the language model ("q4_0", …).
    public var type: String
    public var kernel: String
    public var threads: Int
    /// How weights reached memory: "mmap" (used in place), "repacked", "widened", or a mix such as "mmap+repacked".
    public var weightsMapping: String
    /// Timed repetitions (warm-up excluded).
    public var repetitions: Int

    public var load: Stats?
    public var image: Stats?
    public var vision: Stats?
    public var visionZip: Stats?
    public var projector: Stats?
    public var prefill: Stats?
    public var ttft: Stats?
    public var decode: Stats?

    public var memory: BenchMemory

    /// TTFT(all) / TTFT(this row), same setting; nil without an "all" row or text-only.
    public var ttftSpeedup: Double?
    /// prefill ms(all) / prefill ms(this row), same setting.
    public var prefillSpeedup: Double?
    /// peak RSS(all) − peak RSS(this row), same setting (negative: this row used more).
    public var peakRSSSavedBytes: Int?

    /// prefillTokens / median prefill time.
    public var prefillTokensPerSecond: Double? { rate(tokens: prefillTokens, ms: prefill?.median) }
    /// decodeTokens / median decode time; nil when nothing was decoded.
    public var decodeTokensPerSecond: Double? { rate(tokens: decodeTokens, ms: decode?.median) }

    /// Summarizes `samples`. Throws on negative or non-finite samples, on negative counts, and when the
    /// per-repetition phases disagree on the number of repetitions.
    public init(setting: String, visualTokens: BenchVisualTokens?, type: String, kernel: String, threads: Int,
                weightsMapping: String, promptTokens: Int, prefillTokens: Int, genTokens: Int,
                decodeTokens: Int? = nil, images: Int = 0, crops: Int = 0, tokensBefore: Int? = nil,
                dominantTokens: Int? = nil, contextualTokens: Int? = nil, tokenReducer: String? = nil, samples: PhaseSamples,
                memory: BenchMemory) throws {
        let decodeCount = decodeTokens ?? Swift.max(0, genTokens - 1)
        let counts: [(String, Int?)] = [
            ("threads", threads), ("prompt_tokens", promptTokens), ("prefill_tokens", prefillTokens),
            ("gen_tokens", genTokens), ("decode_tokens", decodeCount), ("images", images), ("crops", crops),
            ("tokens_before", tokensBefore), ("dominant_tokens", dominantTokens),
            ("contextual_tokens", contextualTokens), ("weight_bytes", memory.weightBytes),
            ("kv_bytes", memory.kvBytes), ("scratch_bytes", memory.scratchBytes),
            ("peak_rss_bytes", memory.peakRSSBytes), ("rss_before_load_bytes", memory.rssBeforeLoadBytes),
        ]
        for case let (name, value?) in counts where value < 0 {
            throw BenchReportError("setting '\(setting)' \(visualTokens?.description ?? "text"): \(name) is \(value), must be ≥ 0")
        }
        let phases = [("load_ms", samples.load)] + samples.perRepetition
        for (name, values) in phases {
            if let bad = values.first(where: { !$0.isFinite || $0 < 0 }) {
                throw BenchReportError("setting '\(setting)': \(name) sample \(bad) is not a finite time ≥ 0")
            }
        }
        let repetitionCounts = Set(samples.perRepetition.map(\.values.count).filter { $0 > 0 })
        guard repetitionCounts.count <= 1 else {
            let list = samples.perRepetition.filter { !$0.values.isEmpty }.map { "\($0.name): \($0.values.count)" }
            throw BenchReportError("setting '\(setting)': phases have different repetition counts (\(list.joined(separator: ", ")))")
        }
        self.setting = setting
        self.visualTokens = visualTokens
        self.tokenReducer = tokenReducer
        self.dominantTokens = dominantTokens
        self.contextualTokens = contextualTokens
        self.images = images
        self.crops = crops
        self.tokensBefore = tokensBefore
        self.promptTokens = promptTokens
        self.prefillTokens = prefillTokens
        self.genTokens = genTokens
        self.decodeTokens = decodeCount
        self.type = type
        self.kernel = kernel
        self.threads = threads
        self.weightsMapping = weightsMapping
        self.repetitions = repetitionCounts.first ?? 0
        load = Stats(samples.load)
        image = Stats(samples.image)
        vision = Stats(samples.vision)
        visionZip = Stats(samples.visionZip)
        projector = Stats(samples.projector)
        prefill = Stats(samples.prefill)
        ttft = Stats(samples.ttft)
        decode = Stats(samples.decode)
        self.memory = memory
    }

    private func rate(tokens: Int, ms: Double?) -> Double? {
        guard tokens > 0, let ms, ms > 0 else { return nil }
        return Double(tokens) * 1000 / ms
    }

    /// "setting · budget" (or just one of them), the row's name in tables and charts.
    public var label: String {
        let reducer = tokenReducer.map { $0 == "visionzip" ? "" : " \($0)" } ?? ""
        let budget = visualTokens.map { "\($0) visual\(reducer)" }
        return [setting.isEmpty ? nil : setting, budget].compactMap { $0 }.joined(separator: " · ")
    }
}

// MARK: - JSON of a row

extension ModelBenchRow: Codable {
    /// Every key a row writes, in the order the README documents them. Absent values are written as null so that
    /// every row has every key.
    public static let jsonKeys: [String] = [
        "setting", "visual_tokens", "token_reducer", "dominant_tokens", "contextual_tokens", "images", "crops", "tokens_before",
        "prompt_tokens", "prefill_tokens", "gen_tokens", "decode_tokens", "type", "kernel", "threads",
        "weights_mapping", "repetitions",
        "load_ms", "load_ms_min", "load_ms_max", "image_ms", "image_ms_min", "image_ms_max",
        "vision_ms", "vision_ms_min", "vision_ms_max", "visionzip_ms", "visionzip_ms_min", "visionzip_ms_max",
        "projector_ms", "projector_ms_min", "projector_ms_max", "prefill_ms", "prefill_ms_min", "prefill_ms_max",
        "ttft_ms", "ttft_ms_min", "ttft_ms_max", "decode_ms", "decode_ms_min", "decode_ms_max",
        "prefill_tokens_per_s", "decode_tokens_per_s",
        "weight_bytes", "kv_bytes", "scratch_bytes", "peak_rss_bytes", "rss_before_load_bytes",
        "ttft_speedup", "prefill_speedup", "peak_rss_saved_bytes",
    ]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        func put<T: Encodable>(_ name: String, _ value: T?) throws {
            if let value { try c.encode(value, forKey: Key(name)) } else { try c.encodeNil(forKey: Key(name)) }
        }
        func put(stats name: String, _ s: Stats?) throws {
            try put(name, s?.median)
            try put(name + "_min", s?.min)
            try put(name + "_max", s?.max)
        }
        try put("setting", setting)
        try put("visual_tokens", visualTokens)
        try put("token_reducer", tokenReducer)
        try put("dominant_tokens", dominantTokens)
        try put("contextual_tokens", contextualTokens)
        try put("images", images)
        try put("crops", crops)
        try put("tokens_before", tokensBefore)
        try put("prompt_tokens", promptTokens)
        try put("prefill_tokens", prefillTokens)
        try put("gen_tokens", genTokens)
        try put("decode_tokens", decodeTokens)
        try put("type", type)
        try put("kernel", kernel)
        try put("threads", threads)
        try put("weights_mapping", weightsMapping)
        try put("repetitions", repetitions)
        try put(stats: "load_ms", load)
        try put(stats: "image_ms", image)
        try put(stats: "vision_ms", vision)
        try put(stats: "visionzip_ms", visionZip)
        try put(stats: "projector_ms", projector)
        try put(stats: "prefill_ms", prefill)
        try put(stats: "ttft_ms", ttft)
        try put(stats: "decode_ms", decode)
        try put("prefill_tokens_per_s", prefillTokensPerSecond)
        try put("decode_tokens_per_s", decodeTokensPerSecond)
        try put("weight_bytes", memory.weightBytes)
        try put("kv_bytes", memory.kvBytes)
        try put("scratch_bytes", memory.scratchBytes)
        try put("peak_rss_bytes", memory.peakRSSBytes)
        try put("rss_before_load_bytes", memory.rssBeforeLoadBytes)
        try put("ttft_speedup", ttftSpeedup)
        try put("prefill_speedup", prefillSpeedup)
        try put("peak_rss_saved_bytes", peakRSSSavedBytes)
    }

    /// Reads a row written by `encode(to:)` (to compare runs); the tokens/s fields are recomputed, not read.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func get<T: Decodable>(_ name: String, _ type: T.Type = T.self) throws -> T {
            try c.decode(T.self, forKey: Key(name))
        }
        func maybe<T: Decodable>(_ name: String, _ type: T.Type = T.self) throws -> T? {
            try c.decodeIfPresent(T.self, forKey: Key(name))
        }
        func stats(_ name: String) throws -> Stats? {
            let values = (try maybe(name + "_min", Double.self), try maybe(name, Double.self),
                          try maybe(name + "_max", Double.self))
            switch values {
            case let (lo?, mid?, hi?): return Stats(min: lo, median: mid, max: hi)
            case (nil, nil, nil): return nil
            default: throw BenchReportError("\(name): median, _min and _max must all be present or all be null")
            }
        }
        setting = try get("setting")
        visualTokens = try maybe("visual_tokens")
        tokenReducer = try maybe("token_reducer")
        dominantTokens = try maybe("dominant_tokens")
        contextualTokens = try maybe("contextual_tokens")
        images = try get("images")
        crops = try get("crops")
        tokensBefore = try maybe("tokens_before")
        promptTokens = try get("prompt_tokens")
        prefillTokens = try get("prefill_tokens")
        genTokens = try get("gen_tokens")
        decodeTokens = try get("decode_tokens")
        type = try get("type")
        kernel = try get("kernel")
        threads = try get("threads")
        weightsMapping = try get("weights_mapping")
        repetitions = try get("repetitions")
        load = try stats("load_ms")
        image = try stats("image_ms")
        vision = try stats("vision_ms")
        visionZip = try stats("visionzip_ms")
        projector = try stats("projector_ms")
        prefill = try stats("prefill_ms")
        ttft = try stats("ttft_ms")
        decode = try stats("decode_ms")
        memory = BenchMemory(weightBytes: try get("weight_bytes"), kvBytes: try get("kv_bytes"),
                             scratchBytes: try get("scratch_bytes"), peakRSSBytes: try maybe("peak_rss_bytes"),
                             rssBeforeLoadBytes: try maybe("rss_before_load_bytes"))
        ttftSpeedup = try maybe("ttft_speedup")
        prefillSpeedup = try maybe("prefill_speedup")
        peakRSSSavedBytes = try maybe("peak_rss_saved_bytes")
    }
}

// MARK: - The report

/// A whole `bench model` run: what was measured where, and one row per (budget × setting).
public struct ModelBenchReport: Sendable, Equatable, Codable {
    /// The model file's name (no directories: reports get shared).
    public var model: String
    public var mmproj: String?
    public var image: String?
    /// The model preset, if the run used one.
    public var preset: String?
    public var cpu: String
    public var kernel: String
    public var threads: Int
    /// ISO 8601, UTC.
    public var date: String
    /// Untimed runs before the timed repetitions of each row.
    public var warmupRuns: Int
    /// Whether VmHWM could be reset before each row (`MemoryProbe.resetPeak`); if not, a row's peak RSS includes
    /// every earlier row's.
    public var peakRSSPerRow: Bool
    public var results: [ModelBenchRow]

    enum CodingKeys: String, CodingKey {
        case model, mmproj, image, preset, cpu, kernel, threads, date, results
        case warmupRuns = "warmup_runs"
        case peakRSSPerRow = "peak_rss_per_row"
    }

    /// Fills in the rows' ratios (see `withRatios`). Files are named by their last path component only.
    public init(model: String, mmproj: String? = nil, image: String? = nil, preset: String? = nil,
                cpu: String = GemmBench.cpuName(), kernel: String = Kernel.current.description, threads: Int,
                date: Date = Date(), warmupRuns: Int = 1, peakRSSPerRow: Bool, results: [ModelBenchRow]) {
        func fileName(_ path: String) -> String { URL(fileURLWithPath: path).lastPathComponent }
        self.model = fileName(model)
        self.mmproj = mmproj.map(fileName)
        self.image = image.map(fileName)
        self.preset = preset
        self.cpu = cpu
        self.kernel = kernel
        self.threads = threads
        let format = ISO8601DateFormatter()
        format.timeZone = TimeZone(identifier: "UTC")
        self.date = format.string(from: date)
        self.warmupRuns = warmupRuns
        self.peakRSSPerRow = peakRSSPerRow
        self.results = ModelBenchReport.withRatios(results)
    }

    /// Each row's TTFT and prefill speed-up and peak RSS saved against the "all" row of its setting. Rows of a
    /// setting without an "all" row, the "all" rows' missing figures, and text-only rows get nil.
    public static func withRatios(_ rows: [ModelBenchRow]) -> [ModelBenchRow] {
        var baseline: [String: ModelBenchRow] = [:]
        for row in rows where row.visualTokens == .all && baseline[row.setting] == nil {
            baseline[row.setting] = row
        }
        return rows.map { row in
            var row = row
            row.ttftSpeedup = nil
            row.prefillSpeedup = nil
            row.peakRSSSavedBytes = nil
            guard row.visualTokens != nil, let all = baseline[row.setting] else { return row }
            row.ttftSpeedup = ratio(all.ttft?.median, row.ttft?.median)
            row.prefillSpeedup = ratio(all.prefill?.median, row.prefill?.median)
            if let a = all.memory.peakRSSBytes, let b = row.memory.peakRSSBytes { row.peakRSSSavedBytes = a - b }
            return row
        }
    }

    private static func ratio(_ numerator: Double?, _ denominator: Double?) -> Double? {
        guard let numerator, let denominator, denominator > 0 else { return nil }
        return numerator / denominator
    }

    // MARK: JSON

    /// `{"model": …, "results": [rows]}` with sorted keys.
    public func json(pretty: Bool = true) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public static func decode(json: Data) throws -> ModelBenchReport {
        try JSONDecoder().decode(ModelBenchReport.self, from: json)
    }

    /// Writes `json()` atomically (temporary file, then rename).
    public func writeJSON(to path: String) throws { try ModelBenchReport.writeAtomically(try json() + "\n", to: path) }

    public func writeMarkdown(to path: String) throws { try ModelBenchReport.writeAtomically(markdown(), to: path) }

    static func writeAtomically(_ text: String, to path: String) throws {
        try AtomicFile.write(path) { try $0.write(Array(text.utf8)) }
    }

    // MARK: Tables

    /// One table column: title, how to print a row's cell, and whether the text is left-aligned.
    struct Column: Sendable {
        var title: String
        var left = false
        var cell: @Sendable (ModelBenchRow) -> String
    }

    /// Timings: median per phase (min–max for TTFT), rates and ratios.
    static let timingColumns: [Column] = [
        Column(title: "setting", left: true) { $0.setting.isEmpty ? "-" : $0.setting },
        Column(title: "visual") { $0.visualTokens?.description ?? "-" },
        Column(title: "reducer", left: true) { $0.tokenReducer ?? "-" },
        Column(title: "prefill tok") { String($0.prefillTokens) },
        Column(title: "load ms") { Units.ms($0.load?.median) },
        Column(title: "image ms") { Units.ms($0.image?.median) },
        Column(title: "vision ms") { Units.ms($0.vision?.median) },
        Column(title: "vzip ms") { Units.ms($0.visionZip?.median) },
        Column(title: "proj ms") { Units.ms($0.projector?.median) },
        Column(title: "prefill ms") { Units.ms($0.prefill?.median) },
        Column(title: "prefill tok/s") { Units.rate($0.prefillTokensPerSecond) },
        Column(title: "TTFT ms") { Units.ms($0.ttft?.median) },
        Column(title: "TTFT min–max") { r in r.ttft.map { "\(Units.ms($0.min))–\(Units.ms($0.max))" } ?? "-" },
        Column(title: "decode tok/s") { Units.rate($0.decodeTokensPerSecond) },
        Column(title: "×TTFT") { Units.factor($0.ttftSpeedup) },
        Column(title: "×prefill") { Units.factor($0.prefillSpeedup) },
    ]

    /// Memory: what the runtime planned and what the kernel saw.
    static let memoryColumns: [Column] = [
        Column(title: "setting", left: true) { $0.setting.isEmpty ? "-" : $0.setting },
        Column(title: "visual") { $0.visualTokens?.description ?? "-" },
        Column(title: "reducer", left: true) { $0.tokenReducer ?? "-" },
        Column(title: "type", left: true) { $0.type },
        Column(title: "weights") { Units.bytes($0.memory.weightBytes) },
        Column(title: "mapping", left: true) { $0.weightsMapping },
        Column(title: "KV cache") { Units.bytes($0.memory.kvBytes) },
        Column(title: "scratch") { Units.bytes($0.memory.scratchBytes) },
        Column(title: "RSS before load") { Units.bytes($0.memory.rssBeforeLoadBytes) },
        Column(title: "peak RSS") { Units.bytes($0.memory.peakRSSBytes) },
        Column(title: "RSS saved") { Units.bytes($0.peakRSSSavedBytes) },
    ]

    /// The header lines shared by the terminal and markdown outputs.
    var headerLines: [String] {
        var files = "model \(model)"
        if let mmproj { files += " · mmproj \(mmproj)" }
        if let image { files += " · image \(image)" }
        if let preset { files += " · preset \(preset)" }
        let reps = Set(results.map(\.repetitions)).sorted().map(String.init).joined(separator: "/")
        return [
            files,
            "cpu \(cpu) · kernel \(kernel) · \(threads) thread\(threads == 1 ? "" : "s") · \(date)",
            "median of \(reps.isEmpty ? "0" : reps) timed repetitions (min–max shown for TTFT), \(warmupRuns) warm-up run"
                + "\(warmupRuns == 1 ? "" : "s") excluded; ×TTFT, ×prefill and RSS saved compare with the \"all\" row "
                + "of the same setting" + (peakRSSPerRow ? "" : "; peak RSS could not be reset between rows (cumulative)"),
        ]
    }

    /// Two aligned tables (timings, memory) under the header lines, for a terminal.
    public func table() -> String {
        var lines = headerLines
        for columns in [ModelBenchReport.timingColumns, ModelBenchReport.memoryColumns] {
            let cells = results.map { row in columns.map { $0.cell(row) } }
            let widths = columns.indices.map { i in
                ([columns[i].title] + cells.map { $0[i] }).map(\.count).max() ?? 0
            }
            func line(_ texts: [String]) -> String {
                zip(texts, columns.indices).map { Units.pad($0, widths[$1], left: columns[$1].left) }
                    .joined(separator: "  ")
            }
            lines.append("")
            lines.append(line(columns.map(\.title)))
            lines.append(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)))
            lines += cells.map(line)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The same tables in GitHub markdown, header lines first.
    public func markdown() -> String {
        var lines = ["## vzquant bench model", ""] + headerLines.map { "- " + Units.markdownEscaped($0) }
        for (title, columns) in [("Time", ModelBenchReport.timingColumns), ("Memory", ModelBenchReport.memoryColumns)] {
            lines += ["", "### \(title)", ""]
            lines.append("| " + columns.map { Units.markdownEscaped($0.title) }.joined(separator: " | ") + " |")
            lines.append("|" + columns.map { $0.left ? " --- |" : " ---: |" }.joined())
            for row in results {
                lines.append("| " + columns.map { Units.markdownEscaped($0.cell(row)) }.joined(separator: " | ") + " |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

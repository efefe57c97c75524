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
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The report side of `vzquant bench model` on hand-made rows: statistics, the JSON contract (every field the issue
/// names, stable key names), ratios, and that the markdown/SVG outputs have one entry per row and parse. Expected
/// values are worked out by hand in the comments, never taken from the code under test.
final class ModelBenchReportTests: XCTestCase {
    // MARK: Statistics

    func testStatsOfOddEvenAndSingleSampleCounts() throws {
        let odd = try XCTUnwrap(Stats([30, 10, 20]))
        XCTAssertEqual(odd, Stats(min: 10, median: 20, max: 30))
        let even = try XCTUnwrap(Stats([4, 1, 3, 2]))
        XCTAssertEqual(even, Stats(min: 1, median: 2.5, max: 4)) // (2 + 3) / 2
        let one = try XCTUnwrap(Stats([7]))
        XCTAssertEqual(one, Stats(min: 7, median: 7, max: 7))
        XCTAssertNil(Stats([]))
    }

    // MARK: Hand-made report

    private static let mib = 1 << 20

    /// q4_0: budgets all and 64; q8_0: only 64 (no baseline); plus a text-only pp512 row.
    private func handMadeReport() throws -> ModelBenchReport {
        func imageSamples(vision: Double, prefill: [Double], ttft: [Double]) -> PhaseSamples {
            var s = PhaseSamples()
            s.load = [1500]
            s.image = [12, 10, 14]
            s.vision = [vision, vision, vision]
            s.visionZip = [1, 1, 1]
            s.projector = [5, 5, 5]
            s.prefill = prefill
            s.ttft = ttft
            s.decode = [100, 120, 110]
            return s
        }
        let all = try ModelBenchRow(
            setting: "q4_0", visualTokens: .all, type: "q4_0", kernel: "avx2", threads: 2, weightsMapping: "mmap",
            promptTokens: 24, prefillTokens: 600, genTokens: 11, images: 1, crops: 1, tokensBefore: 576,
            samples: imageSamples(vision: 300, prefill: [610, 600, 590], ttft: [800, 820, 790]),
            memory: BenchMemory(weightBytes: 700 * Self.mib, kvBytes: 64 * Self.mib, scratchBytes: 20 * Self.mib,
                                peakRSSBytes: 1000 * Self.mib, rssBeforeLoadBytes: 30 * Self.mib))
        let b64 = try ModelBenchRow(
            setting: "q4_0", visualTokens: .count(64), type: "q4_0", kernel: "avx2", threads: 2,
            weightsMapping: "mmap", promptTokens: 24, prefillTokens: 88, genTokens: 11, images: 1, crops: 1,
            tokensBefore: 576, dominantTokens: 54, contextualTokens: 10,
            samples: imageSamples(vision: 300, prefill: [100, 90, 110], ttft: [200, 210, 190]),
            memory: BenchMemory(weightBytes: 700 * Self.mib, kvBytes: 64 * Self.mib, scratchBytes: 20 * Self.mib,
                                peakRSSBytes: 900 * Self.mib, rssBeforeLoadBytes: 30 * Self.mib))
        let orphan = try ModelBenchRow(
            setting: "q8_0 <f16 kv> & \"more\" | 'x'", visualTokens: .count(64), type: "q8_0", kernel: "avx2",
            threads: 2, weightsMapping: "repacked", promptTokens: 24, prefillTokens: 88, genTokens: 11, images: 1,
            crops: 1, tokensBefore: 576, dominantTokens: 54, contextualTokens: 10,
            samples: imageSamples(vision: 280, prefill: [80, 80], ttft: [150, 160]).with(\.image, [9, 11])
                .with(\.vision, [280, 280]).with(\.visionZip, [1, 1]).with(\.projector, [5, 5])
                .with(\.decode, [90, 90]),
            memory: BenchMemory(weightBytes: 1200 * Self.mib, kvBytes: 32 * Self.mib, scratchBytes: 20 * Self.mib,
                                peakRSSBytes: 1400 * Self.mib, rssBeforeLoadBytes: 30 * Self.mib))
        var textSamples = PhaseSamples()
        textSamples.load = [400]
        textSamples.prefill = [256, 250, 260]
        textSamples.ttft = [258, 252, 262]
        let text = try ModelBenchRow(
            setting: "pp512", visualTokens: nil, type: "q4_0", kernel: "avx2", threads: 2, weightsMapping: "mmap",
            promptTokens: 512, prefillTokens: 512, genTokens: 0, samples: textSamples,
            memory: BenchMemory(weightBytes: 700 * Self.mib, kvBytes: 64 * Self.mib, scratchBytes: 20 * Self.mib,
                                peakRSSBytes: nil, rssBeforeLoadBytes: nil))
        return ModelBenchReport(model: "/models/llava-q4_0.gguf", mmproj: "/models/mmproj-q4_0.gguf",
                                image: "/tmp/cat.jpg", preset: "llava-1.5", cpu: "Test CPU", kernel: "avx2",
                                threads: 2, date: Date(timeIntervalSince1970: 0), peakRSSPerRow: true,
                                results: [all, b64, orphan, text])
    }

    func testRowSummarizesSamplesAndRates() throws {
        let report = try handMadeReport()
        let all = report.results[0]
        XCTAssertEqual(all.repetitions, 3)
        XCTAssertEqual(all.prefill, Stats(min: 590, median: 600, max: 610))
        XCTAssertEqual(all.image, Stats(min: 10, median: 12, max: 14))
        XCTAssertEqual(all.load, Stats(min: 1500, median: 1500, max: 1500))
        XCTAssertEqual(try XCTUnwrap(all.prefillTokensPerSecond), 1000, accuracy: 1e-9) // 600 tokens / 0.6 s
        XCTAssertEqual(all.decodeTokens, 10) // 11 generated, the first from prefill
        XCTAssertEqual(try XCTUnwrap(all.decodeTokensPerSecond), 10 / 0.11, accuracy: 1e-9) // 10 tokens / 110 ms
        let text = report.results[3]
        XCTAssertNil(text.decodeTokensPerSecond) // --gen-tokens 0
        XCTAssertNil(text.vision)
        XCTAssertEqual(try XCTUnwrap(text.prefillTokensPerSecond), 2000, accuracy: 1e-9) // 512 / 0.256 s (median)
    }

    func testRatiosAgainstTheAllRowOfTheSameSetting() throws {
        let rows = try handMadeReport().results
        // The baseline itself: 1×, nothing saved.
        XCTAssertEqual(try XCTUnwrap(rows[0].ttftSpeedup), 1, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(rows[0].prefillSpeedup), 1, accuracy: 1e-12)
        XCTAssertEqual(rows[0].peakRSSSavedBytes, 0)
        // 64 tokens: TTFT 800 / 200 = 4, prefill 600 / 100 = 6, RSS 1000 − 900 MiB.
        XCTAssertEqual(try XCTUnwrap(rows[1].ttftSpeedup), 4, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(rows[1].prefillSpeedup), 6, accuracy: 1e-12)
        XCTAssertEqual(rows[1].peakRSSSavedBytes, 100 * Self.mib)
        // No "all" row for its setting, and text-only: no ratios.
        for row in rows[2...] {
            XCTAssertNil(row.ttftSpeedup)
            XCTAssertNil(row.prefillSpeedup)
            XCTAssertNil(row.peakRSSSavedBytes)
        }
    }

    // MARK: JSON

    /// Every key a row must carry: the issue's list plus the documented rest. Renaming any of them breaks readers.
    private static let documentedRowKeys: Set<String> = [
        "setting", "visual_tokens", "token_reducer", "dominant_tokens", "contextual_tokens", "images", "crops", "tokens_before",
        "prompt_tokens", "prefill_tokens", "gen_tokens", "decode_tokens", "type", "kernel", "threads",
        "weights_mapping", "repetitions",
        "load_ms", "load_ms_min", "load_ms_max", "image_ms", "image_ms_min", "image_ms_max",
        "vision_ms", "vision_ms_min", "vision_ms_max", "visionzip_ms", "visionzip_ms_min", "visionzip_ms_max",
        "projector_ms", "projector_ms_min", "projector_ms_max", "prefill_ms", "prefill_ms_min", "prefill_ms_max",
        "ttft_ms", "ttft_ms_min", "ttft_ms_max", "decode_ms", "decode_ms_min", "decode_ms_max",
        "prefill_tokens_per_s", "decode_tokens_per_s", "weight_bytes", "kv_bytes", "scratch_bytes",
        "peak_rss_bytes", "rss_before_load_bytes", "ttft_speedup", "prefill_speedup", "peak_rss_saved_bytes",
    ]

    func testJSONCarriesEveryIssueFieldWithStableKeys() throws {
        let report = try handMadeReport()
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["model", "mmproj", "image", "preset", "cpu", "kernel", "threads", "date",
                                          "warmup_runs", "peak_rss_per_row", "results"])
        XCTAssertEqual(object["model"] as? String, "llava-q4_0.gguf") // file name only
        XCTAssertEqual(object["date"] as? String, "1970-01-01T00:00:00Z")
        let results = try XCTUnwrap(object["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, 4)

        let issueFields = ["visual_tokens", "prompt_tokens", "prefill_tokens", "prefill_ms", "prefill_tokens_per_s",
                           "decode_tokens_per_s", "vision_ms", "visionzip_ms", "ttft_ms", "weight_bytes", "kv_bytes",
                           "scratch_bytes", "peak_rss_bytes", "threads", "type"]
        for row in results {
            for key in issueFields { XCTAssertNotNil(row[key], "missing \(key)") }
            XCTAssertEqual(Set(row.keys), Self.documentedRowKeys) // every row, every key (null when absent)
        }
        XCTAssertEqual(Set(ModelBenchRow.jsonKeys), Self.documentedRowKeys)
        XCTAssertEqual(ModelBenchRow.jsonKeys.count, Self.documentedRowKeys.count) // no duplicates

        // "all" is a string, a budget a number, text-only null.
        XCTAssertEqual(results[0]["visual_tokens"] as? String, "all")
        XCTAssertEqual((results[1]["visual_tokens"] as? NSNumber)?.intValue, 64)
        XCTAssertTrue(results[3]["visual_tokens"] is NSNull)
        XCTAssertTrue(results[3]["vision_ms"] is NSNull)
        XCTAssertTrue(results[3]["decode_tokens_per_s"] is NSNull)

        // Values: medians and their companions (by hand from the samples above).
        let all = results[0]
        XCTAssertEqual((all["prefill_ms"] as? NSNumber)?.doubleValue, 600)
        XCTAssertEqual((all["prefill_ms_min"] as? NSNumber)?.doubleValue, 590)
        XCTAssertEqual((all["prefill_ms_max"] as? NSNumber)?.doubleValue, 610)
        XCTAssertEqual((all["ttft_ms"] as? NSNumber)?.doubleValue, 800)
        XCTAssertEqual(try XCTUnwrap((all["prefill_tokens_per_s"] as? NSNumber)?.doubleValue), 1000, accuracy: 1e-9)
        XCTAssertEqual((all["peak_rss_bytes"] as? NSNumber)?.intValue, 1000 * Self.mib)
        XCTAssertEqual(all["type"] as? String, "q4_0")
        XCTAssertEqual(all["weights_mapping"] as? String, "mmap")
        XCTAssertEqual((results[1]["dominant_tokens"] as? NSNumber)?.intValue, 54)
        XCTAssertEqual(try XCTUnwrap((results[1]["ttft_speedup"] as? NSNumber)?.doubleValue), 4, accuracy: 1e-12)
        XCTAssertEqual((results[3]["threads"] as? NSNumber)?.intValue, 2)
    }

    func testJSONReadsBackToTheSameReport() throws {
        let report = try handMadeReport()
        let decoded = try ModelBenchReport.decode(json: Data(report.json().utf8))
        XCTAssertEqual(decoded, report)
        XCTAssertThrowsError(try ModelBenchReport.decode(json: Data(#"{"model": 1}"#.utf8)))
        // A half-present timing is refused, not guessed.
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as? [String: Any])
        var rows = try XCTUnwrap(object["results"] as? [[String: Any]])
        rows[0]["prefill_ms_min"] = NSNull()
        object["results"] = rows
        XCTAssertThrowsError(try ModelBenchReport.decode(json: try JSONSerialization.data(withJSONObject: object)))
    }

    func testBadSamplesThrow() {
        func row(_ samples: PhaseSamples, promptTokens: Int = 8) throws -> ModelBenchRow {
            try ModelBenchRow(setting: "", visualTokens: nil, type: "f32", kernel: "scalar", threads: 1,
                              weightsMapping: "mmap", promptTokens: promptTokens, prefillTokens: 8, genTokens: 0,
                              samples: samples, memory: BenchMemory(weightBytes: 0, kvBytes: 0, scratchBytes: 0,
                                                                    peakRSSBytes: nil, rssBeforeLoadBytes: nil))
        }
        var nan = PhaseSamples()
        nan.prefill = [1, .nan]
        XCTAssertThrowsError(try row(nan))
        var negative = PhaseSamples()
        negative.ttft = [-1]
        XCTAssertThrowsError(try row(negative))
        var mismatched = PhaseSamples()
        mismatched.prefill = [1, 2, 3]
        mismatched.ttft = [1, 2]
        XCTAssertThrowsError(try row(mismatched))
        XCTAssertThrowsError(try row(PhaseSamples(), promptTokens: -1))
        XCTAssertNoThrow(try row(PhaseSamples()))
    }

    // MARK: Tables

    func testMarkdownHasOneLinePerRowInEachTable() throws {
        let report = try handMadeReport()
        let markdown = report.markdown()
        let tables = markdown.components(separatedBy: "\n### ").dropFirst()
        XCTAssertEqual(tables.count, 2)
        for table in tables {
            let lines = table.split(separator: "\n").filter { $0.hasPrefix("|") }
            XCTAssertEqual(lines.count, report.results.count + 2) // header, separator, one per row
            // Every line has the header's number of cells (escaped "\|" inside a cell does not count).
            let cells = lines.map { $0.replacingOccurrences(of: "\\|", with: "").filter { $0 == "|" }.count }
            XCTAssertEqual(Set(cells).count, 1, "\(cells)")
        }
        XCTAssertTrue(markdown.contains("q8_0 <f16 kv> & \"more\" \\| 'x'"))
        XCTAssertTrue(markdown.contains("llava-q4_0.gguf"))
    }

    func testTerminalTableIsAligned() throws {
        let report = try handMadeReport()
        let blocks = report.table().components(separatedBy: "\n\n").dropFirst() // header lines first
        XCTAssertEqual(blocks.count, 2)
        for block in blocks {
            let lines = block.split(separator: "\n")
            XCTAssertEqual(lines.count, report.results.count + 2) // titles, rule, rows
            XCTAssertEqual(Set(lines.map(\.count)).count, 1, "ragged table:\n\(block)")
        }
        XCTAssertTrue(report.table().contains("4.00×")) // TTFT speed-up of the 64-token row
        XCTAssertTrue(report.table().contains("1000.0 MiB")) // its baseline's peak RSS
    }

    // MARK: SVG

    func testSVGIsWellFormedXMLWithOneBarPerRowInEachChart() throws {
        let report = try handMadeReport()
        let counter = SVGCounter()
        let parser = XMLParser(data: Data(report.svg().utf8))
        parser.delegate = counter
        XCTAssertTrue(parser.parse(), "SVG does not parse: \(String(describing: parser.parserError))")
        XCTAssertEqual(counter.root, "svg")
        XCTAssertEqual(counter.classCounts["bar-ttft"], report.results.count)
        XCTAssertEqual(counter.classCounts["bar-rss"], report.results.count)
        // The escaped setting name reads back as written.
        XCTAssertTrue(counter.text.contains("q8_0 <f16 kv> & \"more\" | 'x'"), counter.text)
        XCTAssertTrue(counter.text.contains("llava-q4_0.gguf"))

        let empty = ModelBenchReport(model: "m.gguf", threads: 1, peakRSSPerRow: false, results: [])
        let emptyParser = XMLParser(data: Data(empty.svg().utf8))
        XCTAssertTrue(emptyParser.parse())
    }

    func testXMLEscapingAndNiceAxisMaximum() {
        XCTAssertEqual(xmlEscaped("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;")
        XCTAssertEqual(niceCeiling(0), 1)
        XCTAssertEqual(niceCeiling(7), 10)
        XCTAssertEqual(niceCeiling(10), 10)
        XCTAssertEqual(niceCeiling(1234), 2000)
        XCTAssertEqual(niceCeiling(0.3), 0.5, accuracy: 1e-12)
    }

    // MARK: Output files

    func testFilesAreWrittenWhole() throws {
        let report = try handMadeReport()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-report-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = dir.appendingPathComponent("r.json").path
        let md = dir.appendingPathComponent("r.md").path
        let svg = dir.appendingPathComponent("r.svg").path
        try report.writeJSON(to: json)
        try report.writeMarkdown(to: md)
        try report.writeSVG(to: svg)
        XCTAssertEqual(try ModelBenchReport.decode(json: Data(contentsOf: URL(fileURLWithPath: json))), report)
        XCTAssertEqual(try String(contentsOfFile: md, encoding: .utf8), report.markdown())
        XCTAssertEqual(try String(contentsOfFile: svg, encoding: .utf8), report.svg())
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(),
                       ["r.json", "r.md", "r.svg"]) // no temporary files left behind
        XCTAssertThrowsError(try report.writeJSON(to: dir.path + "/missing/r.json"))
    }

    // MARK: Progress

    func testProgressRewritesOneLineAndEndsWithANewline() {
        var written: [String] = []
        let progress = BenchProgress(total: 12, output: { written.append($0) })
        progress.step("budget all rep 1/3")
        progress.step("budget 64 rep 2/3")
        progress.finish()
        progress.finish() // only once
        XCTAssertEqual(written, ["\r[1/12] budget all rep 1/3…", "\r[2/12] budget 64 rep 2/3… ", "\n"])

        let silent = BenchProgress(total: 1, output: nil)
        silent.step("x")
        silent.finish()
        XCTAssertEqual(silent.done, 1)
    }

    // MARK: Memory probe

    func testStatusParsing() {
        let status = "Name:\tx\nVmPeak:\t  999 kB\nVmHWM:\t    2104 kB\nVmRSS:\t    1000 kB\nThreads:\t1\n"
        XCTAssertEqual(MemoryProbe.parseStatus(status), MemoryProbe.Reading(rssBytes: 1000 * 1024, peakRSSBytes: 2104 * 1024))
        XCTAssertNil(MemoryProbe.parseStatus("VmRSS:\t 12 kB\n")) // no VmHWM
        XCTAssertNil(MemoryProbe.parseStatus("VmRSS:\t 12 MB\nVmHWM:\t 12 kB\n"))
        XCTAssertNil(MemoryProbe.parseStatus("VmRSS:\t -5 kB\nVmHWM:\t 12 kB\n"))
    }

    func testMemoryProbeReadsThisProcess() throws {
        #if os(Linux)
        let reading = try XCTUnwrap(MemoryProbe.read())
        XCTAssertGreaterThan(reading.rssBytes, 0)
        XCTAssertGreaterThanOrEqual(reading.peakRSSBytes, reading.rssBytes)
        #else
        XCTAssertNil(MemoryProbe.read())
        #endif
    }

    func testResetPeakForgetsAFreedAllocation() throws {
        #if os(Linux)
        let bytes = 200 << 20
        let block = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
        // Touch every page so it is resident.
        for offset in stride(from: 0, to: bytes, by: 4096) { block.storeBytes(of: 1, toByteOffset: offset, as: UInt8.self) }
        let withBlock = try XCTUnwrap(MemoryProbe.read())
        block.deallocate() // a block this large goes back to the kernel (munmap)
        let freed = try XCTUnwrap(MemoryProbe.read())
        // The block went back to the kernel, and the peak remembers it. (VmRSS is summed from per-CPU counters and
        // can be a little off, hence margins rather than exact comparisons.)
        XCTAssertLessThan(freed.rssBytes, withBlock.rssBytes - 150 << 20)
        XCTAssertGreaterThan(freed.peakRSSBytes, freed.rssBytes + 150 << 20)
        guard MemoryProbe.resetPeak() else {
            throw XCTSkip("this kernel refuses /proc/self/clear_refs; peak RSS cannot be reset")
        }
        let reset = try XCTUnwrap(MemoryProbe.read())
        XCTAssertLessThan(reset.peakRSSBytes, withBlock.rssBytes - 150 << 20)
        #else
        XCTAssertFalse(MemoryProbe.resetPeak())
        #endif
    }
}

private extension PhaseSamples {
    /// A copy with one phase replaced.
    func with(_ phase: WritableKeyPath<PhaseSamples, [Double]>, _ values: [Double]) -> PhaseSamples {
        var copy = self
        copy[keyPath: phase] = values
        return copy
    }
}

/// Counts elements by their class attribute and collects the text, from XMLParser callbacks.
private final class SVGCounter: NSObject, XMLParserDelegate {
    var root: String?
    var classCounts: [String: Int] = [:]
    var text = ""

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        if root == nil { root = elementName }
        if let cls = attributeDict["class"] { classCounts[cls, default: 0] += 1 }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
}

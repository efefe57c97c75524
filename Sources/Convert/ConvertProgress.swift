#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// What one written file holds.
public struct ConvertFileSummary: Sendable, Equatable {
    public var path: String
    public var tensors: Int
    /// Bytes of tensor data (what bits per weight is computed from).
    public var tensorBytes: Int
    /// The whole file, header included.
    public var fileBytes: Int
    public var elements: Int
    public var bitsPerWeight: Double { elements > 0 ? 8 * Double(tensorBytes) / Double(elements) : 0 }
}

/// The end-of-run report.
public struct ConvertSummary: Sendable {
    public var files: [ConvertFileSummary]
    /// Bytes of source tensor data read.
    public var sourceBytes: Int
    public var seconds: Double
    /// VmHWM of this process, bytes (0 where /proc is unavailable).
    public var peakRSSBytes: Int
    public var notes: [String]

    public var tensorBytes: Int { files.map(\.tensorBytes).reduce(0, +) }
    public var megabytesPerSecond: Double { seconds > 0 ? Double(sourceBytes) / 1e6 / seconds : 0 }

    public var lines: [String] {
        var out: [String] = []
        for f in files {
            out.append(String(format: "wrote %@: %d tensors, %@ tensor data (%@ file), %.2f bits per weight",
                              f.path, f.tensors, mb(f.tensorBytes), mb(f.fileBytes), f.bitsPerWeight))
        }
        out.append(String(format: "read %@ of source tensors in %.2f s (%.1f MB/s), peak RSS %@",
                          mb(sourceBytes), seconds, megabytesPerSecond, mb(peakRSSBytes)))
        return out
    }
}

private func mb(_ bytes: Int) -> String { String(format: "%.2f MB", Double(bytes) / 1e6) }

/// Peak resident set size (VmHWM) from /proc/self/status, in bytes; 0 when unavailable.
public func peakResidentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.dropFirst("VmHWM:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) } ?? 0
        return kb * 1024
    }
    return 0
}

/// A one-line progress display, overwritten with \r: the tensor being written, and the total with MB/s.
/// Silent unless `live` (the command turns it on when stdout is a terminal).
public final class ConvertProgress {
    public let live: Bool
    private var totalBytes = 0
    private var doneBytes = 0
    private var totalTensors = 0
    private var doneTensors = 0
    private var started = Date()
    private var shown = false

    public init(live: Bool) { self.live = live }

    /// `live` when stdout is a terminal.
    public static func forStdout() -> ConvertProgress { ConvertProgress(live: isatty(1) != 0) }

    func begin(tensors: Int, sourceBytes: Int) {
        totalTensors = tensors
        totalBytes = sourceBytes
        doneTensors = 0
        doneBytes = 0
        started = Date()
    }

    func tensorStarting(_ name: String, type: QuantType, file: String) {
        show("[\(doneTensors + 1)/\(totalTensors)] \((file as NSString).lastPathComponent): \(name) → \(type)")
    }

    func tensorDone(sourceBytes: Int) {
        doneTensors += 1
        doneBytes += sourceBytes
    }

    private func show(_ what: String) {
        guard live else { return }
        let t = Date().timeIntervalSince(started)
        let rate = t > 0 ? Double(doneBytes) / 1e6 / t : 0
        let line = String(format: "%@  %.1f/%.1f MB  %.0f MB/s", what, Double(doneBytes) / 1e6, Double(totalBytes) / 1e6, rate)
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
        shown = true
    }

    /// Clears the line.
    func finish() {
        guard live, shown else { return }
        FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
        shown = false
    }
}

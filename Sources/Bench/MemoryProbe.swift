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

/// Resident memory of this process as the kernel counts it (Linux /proc/self/status). On other systems every
/// reading is nil: a report then shows "-" instead of a made-up number.
public enum MemoryProbe {
    /// One reading of /proc/self/status.
    public struct Reading: Sendable, Equatable {
        /// VmRSS: resident set size now, bytes.
        public var rssBytes: Int
        /// VmHWM: the high-water mark of the resident set since the process started or since the last
        /// `resetPeak()`, bytes.
        public var peakRSSBytes: Int

        public init(rssBytes: Int, peakRSSBytes: Int) {
            self.rssBytes = rssBytes
            self.peakRSSBytes = peakRSSBytes
        }
    }

    /// VmRSS and VmHWM now; nil when /proc/self/status is missing or lacks them (not Linux, restricted /proc).
    public static func read() -> Reading? {
        #if os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return parseStatus(text)
        #else
        return nil
        #endif
    }

    /// VmRSS in bytes, or nil (see `read`).
    public static func rssBytes() -> Int? { read()?.rssBytes }

    /// VmHWM in bytes, or nil (see `read`).
    public static func peakRSSBytes() -> Int? { read()?.peakRSSBytes }

    /// Resets VmHWM to the current VmRSS by writing "5" to /proc/self/clear_refs (Linux ≥ 4.0), so that the next
    /// `peakRSSBytes()` covers only what ran in between. Returns false when the kernel refused or the system has no
    /// such file; the peak then keeps counting from process start, and callers should say so in their report.
    @discardableResult
    public static func resetPeak() -> Bool {
        #if os(Linux)
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let written = "5".withCString { write(fd, $0, 1) }
        return written == 1
        #else
        return false
        #endif
    }

    /// The VmRSS and VmHWM lines of a /proc/<pid>/status text ("VmRSS:\t  123456 kB"); nil if either is missing
    /// or malformed. The kernel's "kB" is 1024 bytes.
    static func parseStatus(_ text: String) -> Reading? {
        var rss: Int?
        var hwm: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("VmRSS:") {
                rss = kibibytes(line.dropFirst("VmRSS:".count))
            } else if line.hasPrefix("VmHWM:") {
                hwm = kibibytes(line.dropFirst("VmHWM:".count))
            }
        }
        guard let rss, let hwm else { return nil }
        return Reading(rssBytes: rss, peakRSSBytes: hwm)
    }

    /// "   123456 kB" → 123456 · 1024; nil unless it is exactly a non-negative number followed by "kB".
    private static func kibibytes(_ field: Substring) -> Int? {
        let parts = field.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 2, parts[1] == "kB", let kib = Int(parts[0]), kib >= 0 else { return nil }
        let (bytes, overflow) = kib.multipliedReportingOverflow(by: 1024)
        return overflow ? nil : bytes
    }
}

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

// MARK: - Units

/// Human-readable numbers for tables and charts.
enum Units {
    /// Milliseconds with about three significant digits; "-" for absent.
    static func ms(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "-" }
        return String(format: v < 10 ? "%.2f" : v < 1000 ? "%.1f" : "%.0f", v)
    }

    static func rate(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "-" }
        return String(format: "%.1f", v)
    }

    static func factor(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "-" }
        return String(format: "%.2f×", v)
    }

    /// Bytes as KiB/MiB/GiB (binary units, as the kernel counts); negative values keep their sign.
    static func bytes(_ v: Int?) -> String {
        guard let v else { return "-" }
        let magnitude = Double(v.magnitude)
        let sign = v < 0 ? "-" : ""
        let (kib, mib, gib) = (1024.0, 1024.0 * 1024, 1024.0 * 1024 * 1024)
        if magnitude >= gib { return sign + String(format: "%.2f GiB", magnitude / gib) }
        if magnitude >= mib { return sign + String(format: "%.1f MiB", magnitude / mib) }
        if magnitude >= kib { return sign + String(format: "%.1f KiB", magnitude / kib) }
        return "\(v) B"
    }

    /// Pads to `width` characters (so "×" and "–" count as one).
    static func pad(_ s: String, _ width: Int, left: Bool) -> String {
        let fill = String(repeating: " ", count: Swift.max(0, width - s.count))
        return left ? s + fill : fill + s
    }

    /// A markdown table cell: "|" would end the cell, a newline the row.
    static func markdownEscaped(_ s: String) -> String {
        s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }
}

// MARK: - Progress

/// "[3/12] budget 64 rep 2/3…" on one terminal line, rewritten in place; silent when stderr is not a terminal
/// (so logs and pipes stay clean). Call `finish()` once at the end to move past the line.
public final class BenchProgress {
    public let total: Int
    public private(set) var done = 0
    private let output: ((String) -> Void)?
    private var lastLength = 0

    /// `output` receives the raw text (with "\r"); by default standard error if it is a terminal, else nothing.
    public init(total: Int, output: ((String) -> Void)? = BenchProgress.standardErrorIfTerminal()) {
        self.total = total
        self.output = output
    }

    /// Writes to standard error when it is a terminal; nil otherwise.
    public static func standardErrorIfTerminal() -> ((String) -> Void)? {
        guard isatty(2) != 0 else { return nil }
        return { FileHandle.standardError.write(Data($0.utf8)) }
    }

    /// Counts one more step and shows it with `what` is running now.
    public func step(_ what: String) {
        done += 1
        let text = "[\(done)/\(total)] \(what)…"
        // Blanks over the rest of a longer previous line.
        let blank = String(repeating: " ", count: max(0, lastLength - text.count))
        lastLength = text.count
        output?("\r" + text + blank)
    }

    /// Ends the progress line (a newline, only if something was shown).
    public func finish() {
        guard lastLength > 0 else { return }
        output?("\n")
        lastLength = 0
    }
}

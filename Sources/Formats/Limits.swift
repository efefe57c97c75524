#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VZQKernels
import VZQSupport

/// The one place that knows how large a number read from a file (or asked for by a user) may be before anything
/// is sized from it. The bounds sit far above every released model (a 405B Llama has 126 layers, 128 heads, a
/// 16,384 width, a 53,248 FFN, a 128K context and a 128K vocabulary), so they reject only corrupt or hostile
/// values; memory itself is checked separately, against what the process can get (`Memory`).
public enum Limits {
    /// Transformer blocks of a decoder or a vision tower.
    public static let layers = 1...4096
    /// Attention heads (and key/value heads) of one layer.
    public static let heads = 1...8192
    /// Hidden, feed-forward, head and rotary widths.
    public static let width = 1...(1 << 20)
    /// Positions a model says it was trained on, or a KV cache holds.
    public static let context = 1...(1 << 24)
    /// Tokens of a vocabulary (and so rows of an embedding table).
    public static let vocabulary = 1...(1 << 24)
    /// One side of an image the vision tower takes, in pixels.
    public static let imageSide = 1...(1 << 15)
    /// One side of a patch, in pixels.
    public static let patchSide = 1...1024
    /// Pixels of one image after resizing (Qwen2-VL's min/max pixels): 16384².
    public static let imagePixels = 1...(1 << 28)
    /// A pixel-shuffle or merge factor per side.
    public static let scaleFactor = 1...64
    /// Normalisation epsilons (0 is allowed: some checkpoints rely on the variance alone).
    public static let epsilon: ClosedRange<Float> = 0...1
    /// RoPE base frequencies (θ = base^(−2i/d) needs base > 1 to rotate slower with i).
    public static let ropeBase: ClosedRange<Float> = 1.0001...1e12
    /// A JSON or tokenizer file read into memory whole (config.json, tokenizer.json: a few MB in practice).
    public static let textFileBytes = 512 << 20
    /// RoPE scaling factors (context stretch).
    public static let ropeFactor: ClosedRange<Float> = 1e-3...1e4

    /// The range as text for error messages: "1…4096".
    package static func describe<T: Comparable>(_ r: ClosedRange<T>) -> String { "\(r.lowerBound)…\(r.upperBound)" }
}

/// Memory the process can still get, and the check every large allocation a user or a file asks for goes through.
public enum Memory {
    /// Bytes this process can allocate now: the kernel's MemAvailable plus free swap, lowered by a cgroup v2 limit
    /// (memory.max − memory.current) and by RLIMIT_AS / RLIMIT_DATA when they are set. nil when nothing is known
    /// (no /proc): then no request is refused here.
    public static func availableBytes() -> Int? {
        var candidates: [Int] = []
        if let info = readSmallFile("/proc/meminfo") {
            var available: Int?, swapFree = 0
            for line in info.split(separator: "\n") {
                let parts = line.split(whereSeparator: { $0 == " " || $0 == ":" })
                guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
                if parts[0] == "MemAvailable" { available = kb * 1024 }
                if parts[0] == "SwapFree" { swapFree = kb * 1024 }
            }
            if let available { candidates.append(available + swapFree) }
        }
        if let maxText = readSmallFile("/sys/fs/cgroup/memory.max"), let limit = Int(maxText.trimmed),
           let currentText = readSmallFile("/sys/fs/cgroup/memory.current"), let current = Int(currentText.trimmed) {
            candidates.append(max(0, limit - current))
        }
        for resource in [RLIMIT_AS, RLIMIT_DATA] {
            var r = rlimit()
            #if canImport(Glibc)
            let ok = getrlimit(__rlimit_resource_t(resource.rawValue), &r) == 0
            #else
            let ok = getrlimit(resource, &r) == 0
            #endif
            if ok, r.rlim_cur != rlim_t.max, let cur = Int(exactly: r.rlim_cur) { candidates.append(cur) }
        }
        return candidates.min()
    }

    /// Throws when `bytes` (nil: the size overflowed) is more than the process can get. `what` says what the
    /// memory is for and how it was computed, e.g. "a KV cache of 1000000000 positions".
    public static func check(_ bytes: Int?, for what: @autoclosure () -> String) throws {
        guard let bytes else { throw MemoryError(message: "\(what()) needs more memory than a 64-bit size can hold") }
        guard let available = availableBytes(), bytes > available else { return }
        throw MemoryError(message: "\(what()) needs \(formatBytes(bytes)), but this process can get \(formatBytes(available))")
    }

    /// "1.53 GiB", "12.0 MiB", "512 B".
    public static func formatBytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = Double(n), i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        if i == 0 { return "\(n) B" }
        let digits = v < 10 ? 2 : v < 100 ? 1 : 0
        var s = String(Int((v * pow10(digits)).rounded()))
        if digits > 0 {
            while s.count <= digits { s = "0" + s }
            s.insert(".", at: s.index(s.endIndex, offsetBy: -digits))
        }
        return s + " " + units[i]
    }

    private static func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { a, _ in a * 10 } }

    /// A small text file under /proc or /sys, or nil.
    private static func readSmallFile(_ path: String) -> String? {
        guard let bytes = try? InputFile.read(path, limit: 1 << 16) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A request for more memory than the process can get.
public struct MemoryError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

private extension String {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.last, c == "\n" || c == " " { s.removeLast() }
        return String(s)
    }
}

import Foundation
import VZQKernels
import VZQSupport

/// The one error the format layer throws: which file, and what is wrong with it, in one line.
///
///     model.gguf: tensor 'blk.0.attn_q.weight' data [offset 123, 4096 bytes] runs past the end of the file (2000 bytes)
///
/// `file` is the path as the caller gave it (so the message points at the file they asked for).
public struct FormatError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let message: String

    public init(file: String, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}

/// Overflow-checked arithmetic for sizes read from untrusted files. Every helper returns nil on overflow
/// so that the caller turns it into a FormatError that names the offending field.
package enum Checked {
    package static func add(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.addingReportingOverflow(b)
        return o ? nil : r
    }

    package static func mul(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : r
    }

    /// Product of non-negative values, nil on overflow. The empty product is 1 (a scalar).
    package static func product(_ values: [Int]) -> Int? {
        var p = 1
        for v in values {
            guard let next = mul(p, v) else { return nil }
            p = next
        }
        return p
    }

    /// Rounds `value` up to a multiple of `alignment` (a power of two), nil on overflow.
    package static func alignUp(_ value: Int, _ alignment: Int) -> Int? {
        guard let bumped = add(value, alignment - 1) else { return nil }
        return bumped & ~(alignment - 1)
    }

    package static func isPowerOfTwo(_ v: Int) -> Bool { v > 0 && (v & (v - 1)) == 0 }
}

/// A coding path as one string, as JavaScript writes it: `messages[0].content`.
package func decodingPath(_ keys: [any CodingKey]) -> String {
    var s = ""
    for k in keys {
        if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : "." + k.stringValue }
    }
    return s
}

/// One line from a DecodingError: what is wrong, and where in the JSON (callers say which file and what kind).

package func describeDecodingError(_ error: DecodingError) -> String {
    func path(_ c: DecodingError.Context) -> String {
        let p = decodingPath(c.codingPath)
        return p.isEmpty ? "" : " at '\(p)'"
    }
    let text: String
    switch error {
    case let .dataCorrupted(c):
        let under = (c.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
        text = (under ?? c.debugDescription) + path(c)
    case let .keyNotFound(key, c): text = "missing '\(key.stringValue)'" + path(c)
    case let .typeMismatch(_, c): text = c.debugDescription + path(c)
    case let .valueNotFound(_, c): text = c.debugDescription + path(c)
    @unknown default: text = "\(error)"
    }
    return text.replacingOccurrences(of: "\n", with: " ")
}

extension KeyedDecodingContainer {
    /// An integer field. A number with a fraction (2.5) is a type error naming the field: Foundation's own error
    /// for that case is "The given data was not valid JSON." with no path. A whole number written as a float
    /// (2.0) is read as the integer it is.
    package func decodeIntegerIfPresent(forKey key: Key) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let i = try? decode(Int.self, forKey: key) { return i }
        let d = try decode(Double.self, forKey: key)  // not a number at all: typeMismatch with the path
        guard d.rounded() == d, abs(d) < 9.0e15 else {
            throw DecodingError.typeMismatch(Int.self, .init(codingPath: codingPath + [key],
                                                             debugDescription: "expected an integer, found \(d)"))
        }
        return Int(d)
    }
}

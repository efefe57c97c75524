import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// A JSON value as the tokenizer import needs it: integers kept apart from reals and from booleans (Python's
/// `isinstance(x, int)` checks decide what llama.cpp uses), objects keeping their keys in file order.
enum TokenizerJSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case real(Double)
    case string(String)
    case array([TokenizerJSON])
    case object([(String, TokenizerJSON)])

    static func == (a: TokenizerJSON, b: TokenizerJSON) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case let (.bool(x), .bool(y)): x == y
        case let (.int(x), .int(y)): x == y
        case let (.real(x), .real(y)): x == y
        case let (.string(x), .string(y)): x == y
        case let (.array(x), .array(y)): x == y
        case let (.object(x), .object(y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// The member `key` of an object (the last one when a key repeats, as Python's json does), else nil.
    subscript(key: String) -> TokenizerJSON? {
        guard case let .object(members) = self else { return nil }
        return members.last(where: { $0.0 == key })?.1
    }

    var string: String? { if case let .string(s) = self { s } else { nil } }
    var int: Int? { if case let .int(i) = self { i } else { nil } }
    var bool: Bool? { if case let .bool(b) = self { b } else { nil } }
    var array: [TokenizerJSON]? { if case let .array(a) = self { a } else { nil } }
    var members: [(String, TokenizerJSON)]? { if case let .object(m) = self { m } else { nil } }
    var isNull: Bool { self == .null }

    /// Python truthiness (`if x:`), for the places llama.cpp tests a value that way.
    var truthy: Bool {
        switch self {
        case .null: false
        case let .bool(b): b
        case let .int(i): i != 0
        case let .real(d): d != 0
        case let .string(s): !s.isEmpty
        case let .array(a): !a.isEmpty
        case let .object(m): !m.isEmpty
        }
    }

    /// Parses a whole document; the error names the byte offset.
    static func parse(_ bytes: [UInt8]) throws(TokenizerJSONError) -> TokenizerJSON {
        var p = TokenizerJSONParser(bytes: bytes)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.pos == bytes.count else { throw p.fail("unexpected data after the JSON value") }
        return v
    }
}

struct TokenizerJSONError: Error {
    let offset: Int
    let reason: String
}

private struct TokenizerJSONParser {
    let bytes: [UInt8]
    var pos = 0

    func fail(_ reason: String) -> TokenizerJSONError { TokenizerJSONError(offset: pos, reason: reason) }

    mutating func skipSpace() {
        while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
            pos += 1
        }
    }

    mutating func literal(_ word: String, _ v: TokenizerJSON) throws(TokenizerJSONError) -> TokenizerJSON {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos ..< pos + w.count]) == w else { throw fail("invalid literal") }
        pos += w.count
        return v
    }

    mutating func value(depth: Int) throws(TokenizerJSONError) -> TokenizerJSON {
        guard depth < 512 else { throw fail("nesting is too deep") }
        guard pos < bytes.count else { throw fail("unexpected end of data") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var members: [(String, TokenizerJSON)] = []
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            while true {
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                pos += 1
                skipSpace()
                members.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end of data in an object") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [TokenizerJSON] = []
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end of data in an array") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "N"): return try literal("NaN", .real(.nan))  // Python's json accepts these
        case UInt8(ascii: "I"): return try literal("Infinity", .real(.infinity))
        default:
            return try number()
        }
    }

    mutating func number() throws(TokenizerJSONError) -> TokenizerJSON {
        let start = pos
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "-") {
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "I") {
                _ = try literal("Infinity", .null)
                return .real(-.infinity)
            }
        }
        var digits = 0
        while pos < bytes.count, bytes[pos] >= 0x30, bytes[pos] <= 0x39 { pos += 1; digits += 1 }
        guard digits > 0 else { pos = start; throw fail("invalid value") }
        var integral = true
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            integral = false
            pos += 1
            var frac = 0
            while pos < bytes.count, bytes[pos] >= 0x30, bytes[pos] <= 0x39 { pos += 1; frac += 1 }
            guard frac > 0 else { throw fail("invalid number") }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            integral = false
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            var exp = 0
            while pos < bytes.count, bytes[pos] >= 0x30, bytes[pos] <= 0x39 { pos += 1; exp += 1 }
            guard exp > 0 else { throw fail("invalid number") }
        }
        let text = String(decoding: bytes[start ..< pos], as: UTF8.self)
        if integral, let i = Int(text) { return .int(i) }
        // integers beyond Int (model_max_length = 1e30 in tokenizer_config.json) keep their magnitude as a real;
        // llama.cpp only uses integers as token ids, where such a value is out of range either way
        guard let d = Double(text) else { throw fail("invalid number") }
        return integral ? .int(d > 0 ? Int.max : Int.min) : .real(d)
    }

    mutating func hex4() throws(TokenizerJSONError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0 ..< 4 {
            let c = bytes[pos]
            let d: UInt8
            switch c {
            case 0x30 ... 0x39: d = c - 0x30
            case 0x41 ... 0x46: d = c - 0x41 + 10
            case 0x61 ... 0x66: d = c - 0x61 + 10
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
            pos += 1
        }
        return v
    }

    mutating func string() throws(TokenizerJSONError) -> String {
        pos += 1  // opening quote
        var out: [UInt8] = []
        var runStart = pos
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: bytes[runStart ..< pos])
                pos += 1
                break
            }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { pos += 1; continue }
            out.append(contentsOf: bytes[runStart ..< pos])
            pos += 1
            guard pos < bytes.count else { throw fail("unterminated string") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800, scalar < 0xDC00 {
                    guard pos + 6 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u")
                    else { throw fail("unpaired UTF-16 surrogate in a \\u escape") }
                    pos += 2
                    let low = try hex4()
                    guard low >= 0xDC00, low < 0xE000 else { throw fail("unpaired UTF-16 surrogate in a \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00, scalar < 0xE000 {
                    throw fail("unpaired UTF-16 surrogate in a \\u escape")
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("invalid escape in a string")
            }
            runStart = pos
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }
}

import Foundation
import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Streaming detokenizer: feed generated token ids one at a time, get back the text that can be printed now.
///
/// - UTF-8: a character split across byte tokens (SentencePiece <0xNN> fallback, GPT-2 byte-level pieces) is held
///   back until its last byte arrives; bytes that can never become a character are printed as U+FFFD exactly
///   where `Tokenizer.decode` would put them, so the concatenation of everything returned (with `finish()`)
///   equals `tokenizer.decode(ids, skipSpecial:)`.
/// - SentencePiece: the space prefix (the first byte of the stream when it is a space) is dropped, as decode does.
/// - Stop strings: text that could be the start of a stop string is held back; when a stop string completes,
///   the text before it is returned, the stop string itself never is, `stop` names it and later pushes return "".
public struct TextStream: Sendable {
    public let tokenizer: Tokenizer
    public let stopStrings: [String]
    public let skipSpecial: Bool
    /// The stop string that ended the stream, if one did.
    public private(set) var stop: String?
    public var stopped: Bool { stop != nil }
    /// Everything returned so far by push() and finish().
    public private(set) var shownText = ""
    /// The reply as the model's tokens spell it: `shownText` with the SentencePiece space prefix that was
    /// dropped for display put back (" Paris" rather than "Paris"): the bytes of the tokens the KV cache holds.
    public var generatedText: String { droppedSpace ? " " + shownText : shownText }

    private let stops: [[UInt8]]
    /// Bytes of an incomplete UTF-8 character at the end of what was pushed.
    private var partial: [UInt8] = []
    /// Decoded UTF-8 held back because it may begin a stop string.
    private var held: [UInt8] = []
    private var atStart = true
    private var droppedSpace = false

    public init(tokenizer: Tokenizer, stopStrings: [String] = [], skipSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.stopStrings = stopStrings
        self.skipSpecial = skipSpecial
        stops = stopStrings.map { Array($0.utf8) }.filter { !$0.isEmpty }
    }

    /// The text that token `id` makes printable (possibly empty).
    public mutating func push(_ id: Int32) -> String {
        guard stop == nil else { return "" }
        if skipSpecial, id >= 0, Int(id) < tokenizer.types.count, tokenizer.types[Int(id)] == .control { return "" }
        var bytes = tokenizer.pieceBytes(id)
        if atStart, !bytes.isEmpty {
            atStart = false
            if tokenizer.model == .sentencePiece, tokenizer.addSpacePrefix, bytes[0] == 0x20 {
                bytes.removeFirst()
                droppedSpace = true
            }
        }
        partial += bytes
        let hold = Self.incompleteTail(partial)
        let complete = partial[..<(partial.count - hold)]
        if !complete.isEmpty {
            // decoding and re-encoding turns invalid bytes into U+FFFD exactly as decoding the whole text would
            held += Array(String(decoding: complete, as: UTF8.self).utf8)
            partial.removeFirst(partial.count - hold)
        }
        let out = release()
        shownText += out
        return out
    }

    /// The text still held back when generation ends without a stop string (an unfinished character as U+FFFD).
    public mutating func finish() -> String {
        guard stop == nil else { return "" }
        held += Array(String(decoding: partial, as: UTF8.self).utf8)
        partial = []
        let out = String(decoding: held, as: UTF8.self)
        held = []
        shownText += out
        return out
    }

    /// Returns what can be printed from `held`: everything before a completed stop string, else everything but
    /// the longest tail that is a proper prefix of some stop string.
    private mutating func release() -> String {
        guard !stops.isEmpty else {
            let out = String(decoding: held, as: UTF8.self)
            held = []
            return out
        }
        // earliest completed stop string
        var found: (at: Int, index: Int)?
        for (k, s) in stops.enumerated() {
            if let at = Self.firstIndex(of: s, in: held), found.map({ at < $0.at }) ?? true { found = (at, k) }
        }
        if let found {
            let out = String(decoding: held[..<found.at], as: UTF8.self)
            stop = stopStrings.first { Array($0.utf8) == stops[found.index] }
            held = []
            partial = []
            return out
        }
        var keep = 0
        for s in stops {
            for len in stride(from: min(s.count - 1, held.count), to: keep, by: -1)
            where held.suffix(len).elementsEqual(s.prefix(len)) {
                keep = len
                break
            }
        }
        // the kept tail starts with a stop string's first byte, so the cut is at a character boundary
        let out = String(decoding: held[..<(held.count - keep)], as: UTF8.self)
        held.removeFirst(held.count - keep)
        return out
    }

    private static func firstIndex(of needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        for i in 0 ... (hay.count - needle.count) where hay[i] == needle[0] {
            if hay[i ..< i + needle.count].elementsEqual(needle) { return i }
        }
        return nil
    }

    /// How many bytes at the end of `b` are the beginning of a UTF-8 character that more bytes could complete
    /// (a lead byte and fewer continuation bytes than it needs, each allowed at its position); 0 when the end
    /// is complete or already invalid.
    static func incompleteTail(_ b: [UInt8]) -> Int {
        let n = b.count
        for back in 1 ... min(3, max(n, 1)) where n > 0 {
            let lead = b[n - back]
            if lead & 0xC0 == 0x80 { continue }  // continuation byte: the lead is further back
            let need: Int
            switch lead {
            case 0xC2 ... 0xDF: need = 2
            case 0xE0 ... 0xEF: need = 3
            case 0xF0 ... 0xF4: need = 4
            default: return 0  // ASCII or a byte that never starts a character
            }
            guard back < need else { return 0 }
            if back >= 2 {
                // the second byte's range depends on the lead (no overlongs, surrogates or > U+10FFFF)
                let second = b[n - back + 1]
                let ok: Bool
                switch lead {
                case 0xE0: ok = (0xA0 ... 0xBF).contains(second)
                case 0xED: ok = (0x80 ... 0x9F).contains(second)
                case 0xF0: ok = (0x90 ... 0xBF).contains(second)
                case 0xF4: ok = (0x80 ... 0x8F).contains(second)
                default: ok = true
                }
                if !ok { return 0 }
            }
            return back
        }
        return 0
    }
}

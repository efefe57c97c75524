import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// The vocabulary of a SentencePiece `tokenizer.model`: a protobuf `ModelProto` whose field 1 holds the pieces
/// (`SentencePiece { string piece = 1; float score = 2; Type type = 3; }`). The trainer, normalizer and
/// self-test fields are skipped; only the wire format is checked there.
struct SentencePieceModel: Sendable {
    /// SentencePiece's piece types (sentencepiece_model.proto); a missing type field means `normal`.
    enum PieceType: Int, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    struct Piece: Sendable {
        var piece: String
        var score: Float
        var type: PieceType
    }

    var pieces: [Piece]

    /// Parses the protobuf bytes; `file` only names the file in errors.
    init(bytes: [UInt8], file: String) throws(FormatError) {
        var r = ProtoReader(bytes: bytes[...], file: file, what: "ModelProto")
        var pieces: [Piece] = []
        while let (field, wire) = try r.tag() {
            if field == 1, wire == 2 {
                let sub = try r.lengthDelimited()
                pieces.append(try Self.piece(sub, file: file, index: pieces.count))
            } else {
                try r.skip(wire)
            }
        }
        guard !pieces.isEmpty else { throw FormatError(file: file, "not a SentencePiece model: it holds no pieces") }
        self.pieces = pieces
    }

    private static func piece(_ bytes: ArraySlice<UInt8>, file: String, index: Int) throws(FormatError) -> Piece {
        var r = ProtoReader(bytes: bytes, file: file, what: "piece \(index)")
        var text: String?
        var score: Float = 0
        var type = PieceType.normal
        while let (field, wire) = try r.tag() {
            switch (field, wire) {
            case (1, 2):
                let raw = try r.lengthDelimited()
                guard let s = String(validating: raw, as: UTF8.self) else {
                    throw FormatError(file: file, "SentencePiece piece \(index) is not valid UTF-8")
                }
                text = s
            case (2, 5):
                score = Float(bitPattern: try r.fixed32())
            case (3, 0):
                let v = try r.varint()
                guard let t = PieceType(rawValue: Int(truncatingIfNeeded: v)) else {
                    throw FormatError(file: file, "SentencePiece piece \(index) has unknown type \(v)")
                }
                type = t
            default:
                try r.skip(wire)
            }
        }
        guard let text else { throw FormatError(file: file, "SentencePiece piece \(index) has no text") }
        return Piece(piece: text, score: score, type: type)
    }
}

/// Protobuf wire-format reader over a byte slice; every overrun is a FormatError naming the message.
private struct ProtoReader {
    var bytes: ArraySlice<UInt8>
    let file: String
    let what: String

    init(bytes: ArraySlice<UInt8>, file: String, what: String) {
        self.bytes = bytes
        self.file = file
        self.what = what
    }

    func truncated() -> FormatError {
        FormatError(file: file, "SentencePiece model is truncated or corrupt (in \(what))")
    }

    mutating func varint() throws(FormatError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let b = bytes.first, shift < 64 else { throw truncated() }
            bytes = bytes.dropFirst()
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    /// The next (field number, wire type), or nil at the end of the message.
    mutating func tag() throws(FormatError) -> (Int, Int)? {
        if bytes.isEmpty { return nil }
        let t = try varint()
        let field = Int(truncatingIfNeeded: t >> 3)
        guard field > 0 else { throw truncated() }
        return (field, Int(t & 7))
    }

    mutating func take(_ n: Int) throws(FormatError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count else { throw truncated() }
        let out = bytes.prefix(n)
        bytes = bytes.dropFirst(n)
        return out
    }

    mutating func lengthDelimited() throws(FormatError) -> ArraySlice<UInt8> {
        let n = try varint()
        guard n <= UInt64(bytes.count) else { throw truncated() }
        return try take(Int(n))
    }

    mutating func fixed32() throws(FormatError) -> UInt32 {
        let b = try take(4)
        return b.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func skip(_ wire: Int) throws(FormatError) {
        switch wire {
        case 0: _ = try varint()
        case 1: _ = try take(8)
        case 2: _ = try lengthDelimited()
        case 5: _ = try take(4)
        default: throw truncated()  // groups (3, 4) are not used by sentencepiece_model.proto
        }
    }
}

import Foundation
import VZQFormats

/// Text ⇄ token ids from a GGUF file's `tokenizer.ggml.*` metadata, for the two vocabularies llama.cpp calls SPM
/// (`tokenizer.ggml.model` = "llama") and BPE ("gpt2").
///
/// "llama" (SentencePiece / byte-fallback BPE, Llama-2, Vicuna, LLaVA-1.5, Mistral):
///   spaces become ▁ and one ▁ is put in front of the text (`tokenizer.ggml.add_space_prefix`, default true);
///   the text is split into UTF-8 characters and adjacent symbols are merged, highest score first (leftmost on
///   ties), while their concatenation is a token, as llama.cpp's llm_tokenizer_spm; a character that is not a
///   token becomes its bytes' `<0xNN>` tokens (else unk). When every score is the same (gguf-py's LlamaHfVocab
///   writes -1000 for all tokens of a tokenizer.json) the score is taken as -id: BPE trainers number merged
///   tokens in merge order, so this reproduces the merge ranks that the GGUF does not carry.
///   The space prefix follows Hugging Face's Metaspace(prepend_scheme: "first") by default: only at the start
///   of the text, and not when the text already begins with a space. llama.cpp instead prefixes every text run
///   after a special token and always; `spacePrefix = .llamaCpp` does that.
/// "gpt2" (byte-level BPE: GPT-2, Qwen2, Llama-3, SmolLM): the text is split with the regex of
///   `tokenizer.ggml.pre` (see PreTokenizerKind), each piece's UTF-8 bytes are written in GPT-2's printable
///   byte alphabet and merged by `tokenizer.ggml.merges` rank. For Llama-3 ("llama-bpe") a piece that is itself
///   a token is taken whole (ignore_merges, as HF and llama.cpp). For "qwen2" the text is NFC-normalised first,
///   as Qwen2's tokenizer.json normalizer does (llama.cpp does not).
///
/// Special tokens: with `parseSpecial`, control and unknown tokens written in the text are recognised (leftmost,
/// longest first) and map straight to their ids; user-defined tokens are always recognised, as in llama.cpp.
public struct Tokenizer: Sendable {
    public enum Model: String, Sendable { case sentencePiece = "llama", bytePairGPT2 = "gpt2" }

    /// llama.cpp's token types (tokenizer.ggml.token_type).
    public enum TokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public enum SpacePrefix: Sendable {
        /// Hugging Face Metaspace "first": ▁ before the text's first run only, unless it starts with a space.
        case huggingFace
        /// llama.cpp: ▁ before the first run and every run after a special token, even before a space.
        case llamaCpp
    }

    public let model: Model
    public let pre: String
    public let tokens: [String]
    public let types: [TokenType]
    public let bos: Int32?
    public let eos: Int32?
    public let unk: Int32?
    public let addBOS: Bool
    public let addEOS: Bool
    public let addSpacePrefix: Bool
    public var spacePrefix: SpacePrefix = .huggingFace

    public var count: Int { tokens.count }

    // lookups
    private let vocab: [[UInt8]: Int32]
    /// (left id << 32 | right id) → merged id and priority (SPM: -score, GPT-2: rank)
    private let pairs: [UInt64: (merged: Int32, priority: Float)]
    /// SPM: <0xNN> ids; GPT-2: the id of each byte's one-character token (-1 when missing)
    private let byteTokens: [Int32]
    /// The bytes each token decodes to (control tokens: their text).
    private let pieces: [[UInt8]]
    private let specials: SpecialMatcher
    private let preKind: PreTokenizerKind
    private let ignoreMerges: Bool

    // MARK: construction

    /// From a loaded GGUF file.
    public init(gguf: GGUFFile) throws {
        try self.init(metadata: gguf.metadata)
    }

    /// From key/value pairs, such as TokenizerImport.metadata(modelDirectory:) returns.
    public init(pairs kv: [(key: String, value: GGUFValue)]) throws {
        var m = GGUFMetadata(file: "<metadata>")
        for (k, v) in kv { m.set(k, v) }
        try self.init(metadata: m)
    }

    public init(metadata m: GGUFMetadata) throws {
        let name = try m.string(GGUFKey.Tokenizer.model)
        guard let model = Model(rawValue: name) else {
            throw FormatError(file: m.file, "tokenizer.ggml.model \"\(name)\" is not supported (only \"llama\" and \"gpt2\")")
        }
        self.model = model
        pre = try m.string(GGUFKey.Tokenizer.pre, default: "default")
        tokens = try m.strings(GGUFKey.Tokenizer.tokens)
        let n = tokens.count
        guard n > 0, n < Int(Int32.max) else { throw FormatError(file: m.file, "tokenizer.ggml.tokens is empty") }
        let rawTypes = try m.ints(GGUFKey.Tokenizer.tokenType, default: [Int](repeating: 1, count: n))
        guard rawTypes.count == n else {
            throw FormatError(file: m.file, "tokenizer.ggml.token_type has \(rawTypes.count) entries for \(n) tokens")
        }
        types = rawTypes.map { TokenType(rawValue: Int32(clamping: $0)) ?? .normal }

        func id(_ key: String) throws -> Int32? {
            guard m.contains(key) else { return nil }
            let v = try m.int(key)
            guard v >= 0, v < n else { return nil }
            return Int32(v)
        }
        bos = try id(GGUFKey.Tokenizer.bosTokenID)
        eos = try id(GGUFKey.Tokenizer.eosTokenID)
        unk = try id(GGUFKey.Tokenizer.unknownTokenID)
        let llama3Pre = ["llama3", "llama-v3", "llama-bpe"].contains(pre)
        addBOS = try m.bool(GGUFKey.Tokenizer.addBOS, default: model == .sentencePiece || llama3Pre)
        addEOS = try m.bool(GGUFKey.Tokenizer.addEOS, default: false)
        addSpacePrefix = try m.bool(GGUFKey.Tokenizer.addSpacePrefix, default: model == .sentencePiece)
        preKind = PreTokenizerKind(pre: pre)
        ignoreMerges = llama3Pre

        var vocab: [[UInt8]: Int32] = [:]
        vocab.reserveCapacity(n)
        for (i, t) in tokens.enumerated() {
            let key = Array(t.utf8)
            if vocab[key] == nil { vocab[key] = Int32(i) }  // first id wins for duplicate texts
        }
        self.vocab = vocab

        let table: MergeTable
        switch model {
        case .sentencePiece:
            // A NaN score ranks below every merge (it would make the priority order undefined).
            var scores = m.contains(GGUFKey.Tokenizer.scores)
                ? try m.floats(GGUFKey.Tokenizer.scores, finiteOnly: false).map { $0.isNaN ? -.infinity : $0 } : []
            if scores.count != n || Set(scores).count <= 1 {
                scores = (0 ..< n).map { -Float($0) }
            }
            table = Self.sentencePieceTable(tokens: tokens, types: types, vocab: vocab, scores: scores)
        case .bytePairGPT2:
            table = Self.gpt2Table(tokens: tokens, types: types, vocab: vocab,
                                   merges: try m.strings(GGUFKey.Tokenizer.merges, default: []))
        }
        (pieces, pairs, byteTokens) = (table.pieces, table.pairs, table.byteTokens)

        var special: [([UInt8], Int32, Bool)] = []
        for (i, t) in types.enumerated() where !tokens[i].isEmpty {
            switch t {
            case .control, .unknown: special.append((Array(tokens[i].utf8), Int32(i), true))
            case .userDefined: special.append((Array(tokens[i].utf8), Int32(i), false))
            default: break
            }
        }
        specials = SpecialMatcher(special)
    }

    /// Each token's bytes, the merge table (pair of ids → merged id and priority, lower first) and the byte-fallback
    /// token of each byte value.
    typealias MergeTable = (pieces: [[UInt8]], pairs: [UInt64: (merged: Int32, priority: Float)], byteTokens: [Int32])

    static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    /// SentencePiece: pieces with "▁" as spaces, <0xNN> byte tokens, and a merge for every way a mergeable token
    /// splits into two mergeable tokens at a character boundary, ranked by the token's score.
    private static func sentencePieceTable(tokens: [String], types: [TokenType], vocab: [[UInt8]: Int32],
                                           scores: [Float]) -> MergeTable {
        var pieces: [[UInt8]] = []
        pieces.reserveCapacity(tokens.count)
        var pairs: [UInt64: (merged: Int32, priority: Float)] = [:]
        var byteTokens = [Int32](repeating: -1, count: 256)
        let key = pairKey
        for (i, t) in tokens.enumerated() {
            let bytes = Array(t.utf8)
            switch types[i] {
            case .byte:
                if let b = Tokenizer.byteValue(bytes) {
                    pieces.append([b])
                    if byteTokens[Int(b)] < 0 { byteTokens[Int(b)] = Int32(i) }
                } else {
                    pieces.append(bytes)
                }
            case .normal, .userDefined, .undefined:
                pieces.append(Tokenizer.unescapeSpaces(bytes))
            default:
                pieces.append(bytes)
            }
        }
        // every way a mergeable token splits into two tokens at a character boundary
        for (i, t) in tokens.enumerated() where [.normal, .userDefined, .undefined].contains(types[i]) {
            let bytes = Array(t.utf8)
            guard bytes.count > 1 else { continue }
            for cut in 1 ..< bytes.count where bytes[cut] & 0xC0 != 0x80 {
                guard let a = vocab[Array(bytes[..<cut])], let b = vocab[Array(bytes[cut...])],
                      Tokenizer.mergeable(types[Int(a)]), Tokenizer.mergeable(types[Int(b)])
                else { continue }
                let k = key(a, b)
                let p = -scores[i]
                if let old = pairs[k], old.priority <= p { continue }
                pairs[k] = (Int32(i), p)
            }
        }
        return (pieces, pairs, byteTokens)
    }

    /// GPT-2 byte-level BPE: pieces decoded from the byte-to-unicode alphabet, merges ranked by their line.
    private static func gpt2Table(tokens: [String], types: [TokenType], vocab: [[UInt8]: Int32], merges: [String]) -> MergeTable {
        var pieces: [[UInt8]] = []
        pieces.reserveCapacity(tokens.count)
        var pairs: [UInt64: (merged: Int32, priority: Float)] = [:]
        var byteTokens = [Int32](repeating: -1, count: 256)
        let key = pairKey
        let toUnicode = Tokenizer.gpt2ByteToUnicode
        var fromUnicode: [UInt32: UInt8] = [:]
        for (b, u) in toUnicode.enumerated() { fromUnicode[u.value] = UInt8(b) }
        for b in 0 ..< 256 {
            byteTokens[b] = vocab[Array(String(Character(toUnicode[b])).utf8)] ?? -1
        }
        for (i, t) in tokens.enumerated() {
            switch types[i] {
            case .normal, .undefined, .byte:
                // GPT-2 alphabet → bytes; a character outside it is kept as its UTF-8
                var out: [UInt8] = []
                for s in t.unicodeScalars {
                    if let b = fromUnicode[s.value] { out.append(b) } else { out.append(contentsOf: Array(String(s).utf8)) }
                }
                pieces.append(out)
            default:
                pieces.append(Array(t.utf8))
            }
        }
        pairs.reserveCapacity(merges.count)
        for (rank, line) in merges.enumerated() {
            let bytes = Array(line.utf8)
            guard let sp = bytes.firstIndex(of: 0x20), sp > 0, sp + 1 < bytes.count else { continue }
            let lhs = Array(bytes[..<sp]), rhs = Array(bytes[(sp + 1)...])
            guard let a = vocab[lhs], let b = vocab[rhs], let c = vocab[lhs + rhs] else { continue }
            let k = key(a, b)
            if pairs[k] == nil { pairs[k] = (c, Float(rank)) }
        }
        return (pieces, pairs, byteTokens)
    }

    private static func mergeable(_ t: TokenType) -> Bool { t == .normal || t == .userDefined || t == .undefined }

    /// "<0xAB>" → 0xAB
    static func byteValue(_ b: [UInt8]) -> UInt8? {
        guard b.count == 6, b[0] == 0x3C, b[1] == 0x30, b[2] == 0x78, b[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30 ... 0x39: c - 0x30
            case 0x41 ... 0x46: c - 0x41 + 10
            case 0x61 ... 0x66: c - 0x61 + 10
            default: nil
            }
        }
        guard let h = hex(b[3]), let l = hex(b[4]) else { return nil }
        return h << 4 | l
    }

    /// ▁ (E2 96 81) → space
    static func unescapeSpaces(_ b: [UInt8]) -> [UInt8] {
        guard b.count >= 3 else { return b }
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            if i + 2 < b.count, b[i] == 0xE2, b[i + 1] == 0x96, b[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }

    /// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest become U+0100….
    static let gpt2ByteToUnicode: [Unicode.Scalar] = {
        var out = [Unicode.Scalar](repeating: " ", count: 256)
        var extra: UInt32 = 0
        for b in 0 ..< 256 {
            if (33 ... 126).contains(b) || (161 ... 172).contains(b) || (174 ... 255).contains(b) {
                out[b] = Unicode.Scalar(UInt32(b))!
            } else {
                out[b] = Unicode.Scalar(256 + extra)!
                extra += 1
            }
        }
        return out
    }()

    /// The UTF-8 of each byte's GPT-2 alphabet character.
    static let gpt2ByteUTF8: [[UInt8]] = gpt2ByteToUnicode.map { Array(String(Character($0)).utf8) }

    // MARK: encode

    /// Token ids for `text`. `addSpecial`: BOS/EOS as tokenizer.ggml.add_bos_token/add_eos_token say (defaults as
    /// llama.cpp: BOS for "llama" and Llama-3, none otherwise). `parseSpecial`: control tokens written in the text
    /// become their ids (otherwise they are tokenized as plain text). `continuing`: the text goes on a prompt that
    /// already has text or image rows before it, so Hugging Face's first-only space prefix does not apply (as when
    /// transformers tokenizes the whole prompt as one string).
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false, continuing: Bool = false) -> [Int32] {
        var out: [Int32] = []
        if addSpecial, addBOS, let bos { out.append(bos) }
        let bytes = Array(text.utf8)
        var runStart = 0
        var afterSpecial = true
        func flush(_ end: Int) {
            guard runStart < end else { return }
            encodeRun(bytes[runStart ..< end], atStart: runStart == 0 && !continuing, afterSpecial: afterSpecial, into: &out)
            afterSpecial = false
        }
        if specials.isEmpty {
            flush(bytes.count)
        } else {
            var i = 0
            while i < bytes.count {
                if let (len, id) = specials.match(bytes, at: i, includeControl: parseSpecial) {
                    flush(i)
                    out.append(id)
                    afterSpecial = true
                    i += len
                    runStart = i
                } else {
                    i += 1
                }
            }
            flush(bytes.count)
        }
        if addSpecial, addEOS, let eos { out.append(eos) }
        return out
    }

    private func encodeRun(_ run: ArraySlice<UInt8>, atStart: Bool, afterSpecial: Bool, into out: inout [Int32]) {
        switch model {
        case .sentencePiece:
            var text: [UInt8] = []
            text.reserveCapacity(run.count + 3)
            if addSpacePrefix {
                switch spacePrefix {
                case .huggingFace:
                    let startsWithSpace = run.first == 0x20 || run.starts(with: [0xE2, 0x96, 0x81])
                    if atStart, !startsWithSpace { text += [0xE2, 0x96, 0x81] }
                case .llamaCpp: if afterSpecial { text += [0xE2, 0x96, 0x81] }
                }
            }
            for b in run {
                if b == 0x20 { text += [0xE2, 0x96, 0x81] } else { text.append(b) }
            }
            encodeSPM(text, into: &out)
        case .bytePairGPT2:
            var s = String(decoding: run, as: UTF8.self)
            if preKind == .qwen2 { s = s.precomposedStringWithCanonicalMapping }
            let scalars = Array(s.unicodeScalars)
            var cache: [[UInt8]: [Int32]] = [:]
            for piece in PreTokenizer.split(scalars, kind: preKind) {
                var utf8: [UInt8] = []
                for sc in scalars[piece] { appendUTF8(sc, to: &utf8) }
                if let hit = cache[utf8] {
                    out += hit
                    continue
                }
                let ids = encodeWord(utf8)
                if piece.count < 64 { cache[utf8] = ids }
                out += ids
            }
        }
    }

    private func pair(_ a: Int32, _ b: Int32) -> (merged: Int32, priority: Float)? {
        pairs[UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))]
    }

    /// One pre-tokenized piece of a byte-level BPE tokenizer.
    private func encodeWord(_ utf8: [UInt8]) -> [Int32] {
        if ignoreMerges {
            var mapped: [UInt8] = []
            for b in utf8 { mapped += Tokenizer.gpt2ByteUTF8[Int(b)] }
            if let id = vocab[mapped] { return [id] }
        }
        let merged = MergeQueue.run(utf8.map { byteTokens[Int($0)] }, pair: pair)
        // a byte with no one-character token (never in a complete byte-level vocabulary) is dropped, as HF's BPE
        // does when the model has no unk token (tokenizer.ggml.unknown_token_id of a GPT-2 vocabulary is usually
        // just <|endoftext|>, copied from tokenizer_config.json)
        return merged.filter { $0 >= 0 }
    }

    /// SentencePiece: `text` is UTF-8 with spaces already ▁.
    private func encodeSPM(_ text: [UInt8], into out: inout [Int32]) {
        // symbols: UTF-8 characters
        var starts: [Int] = []
        var ids: [Int32] = []
        starts.reserveCapacity(text.count)
        ids.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            let lead = text[i]
            var len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
            len = min(len, text.count - i)
            starts.append(i)
            let id = vocab[Array(text[i ..< i + len])] ?? -1
            ids.append(id >= 0 && Tokenizer.mergeable(types[Int(id)]) ? id : -1)
            i += len
        }
        starts.append(text.count)
        // symbols that are not tokens keep their text position through the merge: give them unique negative ids
        var positional = ids
        for k in 0 ..< positional.count where positional[k] < 0 { positional[k] = -2 - Int32(k) }
        let merged = MergeQueue.run(positional, pair: pair)
        for id in merged {
            if id >= 0 {
                out.append(id)
                continue
            }
            let k = Int(-2 - id)
            for b in text[starts[k] ..< starts[k + 1]] {
                let t = byteTokens[Int(b)]
                if t >= 0 { out.append(t) } else if let unk { out.append(unk) }
            }
        }
    }

    // MARK: decode

    /// The bytes of one token as decode writes them (SPM: ▁ → space, <0xNN> → the byte; GPT-2: the byte alphabet
    /// undone); control tokens give their text.
    public func pieceBytes(_ id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < pieces.count else { return [] }
        return pieces[Int(id)]
    }

    /// One token's text (may be an incomplete UTF-8 sequence, shown with U+FFFD).
    public func piece(_ id: Int32) -> String { String(decoding: pieceBytes(id), as: UTF8.self) }

    /// Text for `ids`. `skipSpecial`: leave out control tokens (BOS, EOS, …). For "llama" one leading space
    /// (the space prefix) is removed, as HF's Strip decoder and llama.cpp do.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0, Int(id) < pieces.count else { continue }
            if skipSpecial, types[Int(id)] == .control { continue }
            bytes += pieces[Int(id)]
        }
        if model == .sentencePiece, addSpacePrefix, bytes.first == 0x20 { bytes.removeFirst() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

@inline(__always) private func appendUTF8(_ s: Unicode.Scalar, to out: inout [UInt8]) {
    let v = s.value
    switch v {
    case 0 ..< 0x80:
        out.append(UInt8(v))
    case 0x80 ..< 0x800:
        out.append(UInt8(0xC0 | v >> 6))
        out.append(UInt8(0x80 | v & 0x3F))
    case 0x800 ..< 0x10000:
        out.append(UInt8(0xE0 | v >> 12))
        out.append(UInt8(0x80 | v >> 6 & 0x3F))
        out.append(UInt8(0x80 | v & 0x3F))
    default:
        out.append(UInt8(0xF0 | v >> 18))
        out.append(UInt8(0x80 | v >> 12 & 0x3F))
        out.append(UInt8(0x80 | v >> 6 & 0x3F))
        out.append(UInt8(0x80 | v & 0x3F))
    }
}

/// Leftmost-longest matching of special tokens' literal texts, indexed by first byte.
private struct SpecialMatcher: Sendable {
    private var byFirst: [[([UInt8], Int32, Bool)]] = Array(repeating: [], count: 256)
    let isEmpty: Bool

    init(_ list: [([UInt8], Int32, Bool)]) {
        isEmpty = list.isEmpty
        for e in list { byFirst[Int(e.0[0])].append(e) }
        for i in 0 ..< 256 { byFirst[i].sort { $0.0.count > $1.0.count } }
    }

    func match(_ text: [UInt8], at i: Int, includeControl: Bool) -> (Int, Int32)? {
        for (t, id, control) in byFirst[Int(text[i])] where includeControl || !control {
            guard i + t.count <= text.count else { continue }
            var ok = true
            for k in 1 ..< t.count where text[i + k] != t[k] {
                ok = false
                break
            }
            if ok { return (t.count, id) }
        }
        return nil
    }
}

import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Reads a Hugging Face tokenizer (tokenizer.json, tokenizer.model, tokenizer_config.json,
/// special_tokens_map.json) and returns the `tokenizer.ggml.*` metadata llama.cpp expects in a GGUF text model.
///
/// The result is what llama.cpp's convert_hf_to_gguf.py writes for Llama- and Qwen2-family models, key by key and
/// in the same order:
///   - `tokenizer.model` present: SentencePiece (`_create_vocab_sentencepiece`): model "llama", pre "default",
///     pieces with their scores and types, then added_tokens.json and tokenizer_config.json's added_tokens_decoder
///     laid over them, padded to config.json's vocab_size with `[PADi]` (score -10000, type unused).
///   - else tokenizer.json with a byte-fallback BPE model and a Sequence decoder (Llama/Vicuna/Mistral fast
///     tokenizers): gguf-py's LlamaHfVocab: model "llama", pre "default", every score -1000, types byte / control
///     (the tokenizer's special tokens) / normal, then the added tokens past the base vocabulary.
///   - else tokenizer.json with a GPT-2 byte-level BPE model (Qwen2, Llama-3, SmolLM, GPT-2): `get_vocab_base`:
///     model "gpt2", tokens padded to vocab_size with `[PADi]` (unused), added tokens control (special or
///     special-looking) or user-defined, merges as "a b". `tokenizer.ggml.pre` comes from the pre_tokenizer
///     (see `preTokenizerName`), since the hash llama.cpp uses needs the HF tokenizer itself.
///   - then gguf-py's SpecialVocab: merges, bos/eos/unk/sep/pad/mask (and eot/eom) ids, add_bos/add_eos/add_sep,
///     chat template(s).
public enum TokenizerImport {
    public static func metadata(modelDirectory: String) throws -> [(key: String, value: GGUFValue)] {
        try metadata(modelDirectory: modelDirectory, vocabSize: nil)
    }

    /// `vocabSize`: the number of rows of the model's token embedding, when the caller knows it; nil reads
    /// config.json's `vocab_size` (text_config's for multimodal configs) as llama.cpp does. The SentencePiece and
    /// GPT-2 vocabularies are padded (or, for SentencePiece, cut) to it.
    ///
    /// The LlamaHfVocab path (byte-fallback BPE tokenizer.json) is padded to an explicit `vocabSize` with
    /// `[PADi]` tokens (i = the id; score -1000, type unused), never cut. llama.cpp's _set_vocab_llama_hf does not
    /// pad: it writes the tokenizer's own tokens (base vocabulary + added tokens past it) and config.json's
    /// vocab_size, so a model whose embedding has more rows than its tokenizer has tokens (LLaVA-1.5's 32064
    /// rows for 32002 tokens) gives a file llama.cpp's loader rejects (token_embd must have one row per token).
    /// With `vocabSize` nil this path writes exactly what llama.cpp's converter writes.
    public static func metadata(modelDirectory: String, vocabSize: Int?) throws -> [(key: String, value: GGUFValue)] {
        var dir = ModelFiles(path: modelDirectory)
        return try dir.build(vocabSizeOverride: vocabSize)
    }

    /// The llama.cpp pre-tokenizer name for a GPT-2 style tokenizer.json, or nil when it is not one vzquant
    /// recognises (the caller then writes "default"). llama.cpp decides by hashing a test tokenization; this reads
    /// the pre_tokenizer instead: Qwen2's split regex → "qwen2", Llama-3's → "llama-bpe", Digits(individual) +
    /// ByteLevel → "smollm", a lone ByteLevel with its built-in regex (or a Split with the GPT-2 regex) → "gpt-2".
    static func preTokenizerName(_ tokenizerJSON: TokenizerJSON) -> String? {
        let pre = tokenizerJSON["pre_tokenizer"] ?? .null
        let steps: [TokenizerJSON] = pre["type"]?.string == "Sequence" ? (pre["pretokenizers"]?.array ?? []) : [pre]
        let kinds = steps.map { $0["type"]?.string ?? "" }
        let splits = steps.filter { $0["type"]?.string == "Split" }.map { $0["pattern"]?["Regex"]?.string ?? "" }
        if splits.count == 1 {
            switch splits[0] {
            case qwen2Regex: return "qwen2"
            case llama3Regex: return "llama-bpe"
            case gpt2Regex: return "gpt-2"
            default: return nil
            }
        }
        guard splits.isEmpty, let byteLevel = steps.first(where: { $0["type"]?.string == "ByteLevel" }),
              byteLevel["use_regex"]?.bool ?? true
        else { return nil }
        if kinds == ["Digits", "ByteLevel"], steps[0]["individual_digits"]?.bool == true { return "smollm" }
        if kinds == ["ByteLevel"] { return "gpt-2" }
        return nil
    }

    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
}

// MARK: - token types and helpers

enum TokenType: Int32 {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// Token text compared and hashed by its UTF-8 bytes (Swift's String equality is canonical equivalence, which
/// would merge distinct vocabulary entries such as precomposed and decomposed accents).
struct TokenKey: Hashable {
    let bytes: [UInt8]
    init(_ s: String) { bytes = Array(s.utf8) }
}

func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

func same(_ a: String?, _ b: TokenizerJSON?) -> Bool {
    guard let a, let b = b?.string else { return false }
    return same(a, b)
}

/// convert_hf_to_gguf.py's does_token_look_special.
func looksSpecial(_ t: String) -> Bool {
    if ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(where: { same($0, t) }) { return true }
    if t.hasPrefix("<|"), t.hasSuffix("|>") { return true }
    if t.hasPrefix("<\u{FF5C}"), t.hasSuffix("\u{FF5C}>") { return true }
    return t.hasPrefix("<unused") && t.hasSuffix(">")
}

/// `<0xAB>`, LlamaHfVocab's byte-token test.
func isByteToken(_ t: String) -> Bool {
    let b = Array(t.utf8)
    func hex(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) }
    return b.count == 6 && b[0] == 0x3C && b[1] == 0x30 && b[2] == 0x78 && hex(b[3]) && hex(b[4]) && b[5] == 0x3E
}

let metaspace = "\u{2581}"

func writeNote(_ s: String) {
    FileHandle.standardError.write(Data("note: \(s)\n".utf8))
}

/// An insertion-ordered map from a special-token type ("bos", ...) to a value, as Python dicts keep it.
struct Ordered<V> {
    var items: [(String, V)] = []
    subscript(key: String) -> V? {
        get { items.first(where: { $0.0 == key })?.1 }
        set {
            if let i = items.firstIndex(where: { $0.0 == key }) {
                if let newValue { items[i].1 = newValue } else { items.remove(at: i) }
            } else if let newValue {
                items.append((key, newValue))
            }
        }
    }
}

// MARK: - the model directory

struct ModelFiles {
    let path: String
    private var cache: [String: TokenizerJSON?] = [:]

    init(path: String) { self.path = path }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func isFile(_ name: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: file(name), isDirectory: &isDir) && !isDir.boolValue
    }

    func bytes(_ name: String) throws(FormatError) -> [UInt8] {
        do {
            return try InputFile.read(file(name), limit: Limits.textFileBytes)
        } catch let e as FormatError {
            throw e
        } catch {
            throw FormatError(file: file(name), "cannot be read: \(error)")
        }
    }

    /// Text as Python's text-mode open reads it: UTF-8 with \r\n and \r turned into \n.
    func text(_ name: String) throws(FormatError) -> String {
        let raw = try bytes(name)
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = 0
        while i < raw.count {
            if raw[i] == 0x0D {
                out.append(0x0A)
                if i + 1 < raw.count, raw[i + 1] == 0x0A { i += 1 }
            } else {
                out.append(raw[i])
            }
            i += 1
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw FormatError(file: file(name), "is not valid UTF-8 text")
        }
        return s
    }

    /// The parsed JSON file, or nil when it does not exist.
    mutating func json(_ name: String) throws(FormatError) -> TokenizerJSON? {
        if let hit = cache[name] { return hit }
        guard isFile(name) else {
            cache[name] = .some(nil)
            return nil
        }
        let data = try bytes(name)
        let value: TokenizerJSON
        do {
            value = try TokenizerJSON.parse(data)
        } catch {
            throw FormatError(file: file(name), "malformed JSON at byte \(error.offset): \(error.reason)")
        }
        cache[name] = .some(value)
        return value
    }

    /// config.json with text_config's members laid over the root (convert_hf_to_gguf.py's TextModel hparams).
    mutating func hparam(_ key: String) throws(FormatError) -> TokenizerJSON? {
        guard let config = try json("config.json") else { return nil }
        if let text = config["text_config"], text.members != nil, let v = text[key] { return v }
        return config[key]
    }

    // MARK: build

    /// Far above any real vocabulary (the largest are ~260K): a bigger vocab_size is a broken config, not a
    /// reason to allocate gigabytes of [PAD] tokens.
    static let maxVocabulary = 1 << 21

    mutating func build(vocabSizeOverride: Int?) throws -> [(key: String, value: GGUFValue)] {
        if let v = vocabSizeOverride, v <= 0 || v > ModelFiles.maxVocabulary {
            throw FormatError(file: path, "vocab size \(v) is not between 1 and \(ModelFiles.maxVocabulary)")
        }
        var out: [(key: String, value: GGUFValue)] = []
        func strings(_ a: [String]) -> GGUFValue { .array(.string, a.map { .string($0) }) }
        func types(_ a: [TokenType]) -> GGUFValue { .array(.int32, a.map { .int32($0.rawValue) }) }

        if isFile("tokenizer.model") {
            let v = try sentencePieceVocab(vocabSizeOverride: vocabSizeOverride)
            out.append((GGUFKey.Tokenizer.model, .string("llama")))
            out.append((GGUFKey.Tokenizer.pre, .string("default")))
            out.append((GGUFKey.Tokenizer.tokens, strings(v.tokens)))
            out.append((GGUFKey.Tokenizer.scores, .array(.float32, v.scores.map { .float32($0) })))
            out.append((GGUFKey.Tokenizer.tokenType, types(v.types)))
            out += try specialVocab(loadMerges: false, nVocab: v.tokens.count)
            return out
        }
        guard let tj = try json("tokenizer.json") else {
            throw FormatError(file: path, "no tokenizer: neither tokenizer.json nor tokenizer.model is in the directory")
        }
        guard let model = tj["model"], model.members != nil else {
            throw FormatError(file: file("tokenizer.json"), "has no \"model\" object")
        }
        let modelType = model["type"]?.string ?? "?"
        guard modelType == "BPE" else {
            throw FormatError(file: file("tokenizer.json"),
                              "holds a \(modelType) model; vzquant imports BPE tokenizer.json or a SentencePiece tokenizer.model")
        }
        let byteFallback = model["byte_fallback"]?.truthy ?? false
        // LlamaHfVocab takes byte-fallback BPE with a Sequence decoder; anything else goes the GPT-2 way
        if byteFallback, tj["decoder"]?["type"]?.string == "Sequence" {
            var v = try llamaHfVocab(tj)
            if let n = vocabSizeOverride, n > v.tokens.count {
                writeNote("\(file("tokenizer.json")): \(v.tokens.count) tokens padded with [PAD\(v.tokens.count)]…[PAD\(n - 1)] to the model's \(n) embedding rows (llama.cpp's converter would leave them out, and llama.cpp could not load its file)")
                for i in v.tokens.count ..< n {
                    v.tokens.append("[PAD\(i)]")
                    v.types.append(.unused)
                }
            }
            out.append((GGUFKey.Tokenizer.model, .string("llama")))
            out.append((GGUFKey.Tokenizer.pre, .string("default")))
            out.append((GGUFKey.Tokenizer.tokens, strings(v.tokens)))
            out.append((GGUFKey.Tokenizer.scores, .array(.float32, v.tokens.map { _ in .float32(-1000) })))
            out.append((GGUFKey.Tokenizer.tokenType, types(v.types)))
            out += try specialVocab(loadMerges: false, nVocab: v.tokens.count)
            return out
        }
        let v = try gpt2Vocab(tj, vocabSizeOverride: vocabSizeOverride)
        let pre: String
        if let name = TokenizerImport.preTokenizerName(tj) {
            pre = name
        } else {
            writeNote("\(file("tokenizer.json")): pre-tokenizer not recognised; writing tokenizer.ggml.pre = \"default\"")
            pre = "default"
        }
        out.append((GGUFKey.Tokenizer.model, .string("gpt2")))
        out.append((GGUFKey.Tokenizer.pre, .string(pre)))
        out.append((GGUFKey.Tokenizer.tokens, strings(v.tokens)))
        out.append((GGUFKey.Tokenizer.tokenType, types(v.types)))
        out += try specialVocab(loadMerges: true, nVocab: nil)
        return out
    }

    // MARK: SentencePiece (convert_hf_to_gguf.py _create_vocab_sentencepiece)

    mutating func sentencePieceVocab(vocabSizeOverride: Int?) throws -> (tokens: [String], scores: [Float], types: [TokenType]) {
        let sp = try SentencePieceModel(bytes: bytes("tokenizer.model"), file: file("tokenizer.model"))
        var n = sp.pieces.count
        if let v = vocabSizeOverride {
            n = v
        } else if let v = try hparam("vocab_size_per_layer_input")?.int, v != 0 {
            n = v
        } else if let v = try hparam("vocab_size")?.int, v != 0 {
            n = v
        }
        guard n > 0, n <= ModelFiles.maxVocabulary else {
            throw FormatError(file: file("config.json"), "vocab_size \(n) is not between 1 and \(ModelFiles.maxVocabulary)")
        }
        var tokens = (0 ..< n).map { "[PAD\($0)]" }
        var scores = [Float](repeating: -10000, count: n)
        var types = [TokenType](repeating: .unused, count: n)
        for (i, p) in sp.pieces.enumerated() where i < n {
            tokens[i] = p.piece
            scores[i] = p.score
            switch p.type {
            case .unknown: types[i] = .unknown
            case .control: types[i] = .control
            case .unused: types[i] = .unused
            case .byte: types[i] = .byte
            case .normal, .userDefined: types[i] = .normal
            }
        }
        if let added = try json("added_tokens.json") {
            guard let members = added.members else {
                throw FormatError(file: file("added_tokens.json"), "is not a JSON object of token: id")
            }
            for (text, idValue) in members {
                guard let id = idValue.int, id >= 0 else {
                    throw FormatError(file: file("added_tokens.json"), "token \(text.debugDescription) has no valid id")
                }
                guard id < n else { continue }
                tokens[id] = text
                scores[id] = -1000
                types[id] = .userDefined
            }
        }
        if let decoder = try json("tokenizer_config.json")?["added_tokens_decoder"]?.members {
            for (key, data) in decoder {
                guard let id = Int(key), id >= 0 else {
                    throw FormatError(file: file("tokenizer_config.json"), "added_tokens_decoder key \(key.debugDescription) is not a token id")
                }
                guard var text = data["content"]?.string else {
                    throw FormatError(file: file("tokenizer_config.json"), "added_tokens_decoder[\(key)] has no content string")
                }
                guard id < n else { continue }
                if data["special"]?.truthy == true || looksSpecial(text) {
                    types[id] = .control
                } else {
                    text = text.replacingOccurrences(of: metaspace, with: " ")
                    types[id] = .userDefined
                }
                scores[id] = -1000
                tokens[id] = text
            }
        }
        return (tokens, scores, types)
    }

    // MARK: tokenizer.json vocabularies

    /// The tokenizer's added tokens, in tokenizer.json order: (content, id, special).
    func addedTokens(_ tj: TokenizerJSON) throws(FormatError) -> [(content: String, id: Int, special: Bool)] {
        guard let list = tj["added_tokens"] else { return [] }
        guard let items = list.array else {
            throw FormatError(file: file("tokenizer.json"), "\"added_tokens\" is not an array")
        }
        return try items.enumerated().map { (i, t) throws(FormatError) in
            guard let content = t["content"]?.string, let id = t["id"]?.int, id >= 0 else {
                throw FormatError(file: file("tokenizer.json"), "added_tokens[\(i)] has no content string or valid id")
            }
            return (content, id, t["special"]?.truthy ?? false)
        }
    }

    /// The BPE model's vocabulary (token → id), in file order.
    func modelVocab(_ tj: TokenizerJSON) throws(FormatError) -> [(String, Int)] {
        guard let members = tj["model"]?["vocab"]?.members else {
            throw FormatError(file: file("tokenizer.json"), "model.vocab is missing or not an object")
        }
        var out: [(String, Int)] = []
        out.reserveCapacity(members.count)
        for (token, idValue) in members {
            guard let id = idValue.int, id >= 0 else {
                throw FormatError(file: file("tokenizer.json"), "model.vocab entry \(token.debugDescription) has no valid id")
            }
            out.append((token, id))
        }
        return out
    }

    /// The tokens transformers lists as the tokenizer's special tokens (all_special_tokens): the named ones
    /// (bos, eos, unk, sep, pad, cls, mask) and additional/extra special tokens, from tokenizer_config.json,
    /// else special_tokens_map.json.
    mutating func allSpecialTokens() throws(FormatError) -> [String] {
        let config = try json("tokenizer_config.json")
        let map = try json("special_tokens_map.json")
        func content(_ v: TokenizerJSON?) -> String? { v?.string ?? v?["content"]?.string }
        var out: [String] = []
        func add(_ s: String?) { if let s, !out.contains(where: { same($0, s) }) { out.append(s) } }
        for typ in ["bos", "eos", "unk", "sep", "pad", "cls", "mask"] {
            let key = "\(typ)_token"
            add(content(config?[key]) ?? content(map?[key]))
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            let v = config?[key] ?? map?[key]
            if let list = v?.array { list.forEach { add(content($0)) } }
            if let members = v?.members { members.forEach { add(content($0.1)) } }
        }
        return out
    }

    /// gguf-py's LlamaHfVocab (what AutoTokenizer reports for a byte-fallback BPE tokenizer.json).
    mutating func llamaHfVocab(_ tj: TokenizerJSON) throws -> (tokens: [String], types: [TokenType]) {
        let vocab = try modelVocab(tj)
        let added = try addedTokens(tj)
        let base = vocab.count
        var byID: [Int: String] = [:]
        var idOf: [TokenKey: Int] = [:]
        for (t, i) in vocab { byID[i] = t; idOf[TokenKey(t)] = i }
        for a in added { byID[a.id] = a.content; idOf[TokenKey(a.content)] = a.id }
        var specialIDs = Set<Int>()
        var specialKeys = Set<TokenKey>()
        for s in try allSpecialTokens() {
            guard let id = idOf[TokenKey(s)] else { continue }
            specialIDs.insert(id)
            specialKeys.insert(TokenKey(s))
        }
        var tokens: [String] = []
        var types: [TokenType] = []
        tokens.reserveCapacity(base)
        for i in 0 ..< base {
            guard let t = byID[i] else {
                throw FormatError(file: file("tokenizer.json"), "token id \(i) is missing from the vocabulary of \(base) tokens")
            }
            tokens.append(t)
            types.append(isByteToken(t) ? .byte : specialIDs.contains(i) ? .control : .normal)
        }
        // added tokens past the base vocabulary, by id (get_added_vocab, last content wins)
        var extra: [Int: String] = [:]
        for a in added where a.id >= base { extra[a.id] = a.content }
        var seen = Set<TokenKey>()
        for (_, t) in extra.sorted(by: { $0.key < $1.key }) where seen.insert(TokenKey(t)).inserted {
            tokens.append(t)
            types.append(specialKeys.contains(TokenKey(t)) ? .control : .userDefined)
        }
        return (tokens, types)
    }

    /// convert_hf_to_gguf.py's get_vocab_base for a GPT-2 byte-level BPE tokenizer.json.
    mutating func gpt2Vocab(_ tj: TokenizerJSON, vocabSizeOverride: Int?) throws -> (tokens: [String], types: [TokenType]) {
        let vocab = try modelVocab(tj)
        let added = try addedTokens(tj)
        var byID: [Int: String] = [:]
        var keys = Set<TokenKey>()
        for (t, i) in vocab { byID[i] = t; keys.insert(TokenKey(t)) }
        for a in added { byID[a.id] = a.content; keys.insert(TokenKey(a.content)) }
        var addedKeys = Set<TokenKey>()
        var addedSpecial: [Int: Bool] = [:]
        for a in added { addedKeys.insert(TokenKey(a.content)); addedSpecial[a.id] = a.special }

        var n = keys.count
        if let v = vocabSizeOverride {
            n = v
        } else if let v = try hparam("vocab_size"), !v.isNull {
            guard let i = v.int, i > 0, i <= ModelFiles.maxVocabulary else {
                throw FormatError(file: file("config.json"), "vocab_size is not an integer between 1 and \(ModelFiles.maxVocabulary)")
            }
            n = i
        }
        if let maxID = byID.keys.max(), maxID >= n {
            throw FormatError(file: file("tokenizer.json"), "token id \(maxID) does not fit the model's vocab_size \(n)")
        }
        var tokens: [String] = []
        var types: [TokenType] = []
        tokens.reserveCapacity(n)
        types.reserveCapacity(n)
        for i in 0 ..< n {
            guard var t = byID[i] else {
                tokens.append("[PAD\(i)]")
                types.append(.unused)
                continue
            }
            if addedKeys.contains(TokenKey(t)) {
                if addedSpecial[i] == true || looksSpecial(t) {
                    types.append(.control)
                } else {
                    t = t.replacingOccurrences(of: metaspace, with: " ")
                    types.append(.userDefined)
                }
            } else {
                types.append(.normal)
            }
            tokens.append(t)
        }
        return (tokens, types)
    }
}

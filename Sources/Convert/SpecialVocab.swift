import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// gguf-py's SpecialVocab: special token ids, add_*_token flags, BPE merges and chat templates of a model directory.
extension ModelFiles {
    // MARK: gguf-py SpecialVocab

    mutating func specialVocab(loadMerges: Bool, nVocab: Int?) throws -> [(key: String, value: GGUFValue)] {
        var merges: [String] = []
        var ids = Ordered<Int>()
        var addFlags = Ordered<Bool>()
        var types = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
        var chatTemplate: TokenizerJSON = .null

        func setID(_ typ: String, _ v: TokenizerJSON?) throws(FormatError) {
            guard let id = v?.int else { return }
            guard id >= 0, id <= Int(UInt32.max) else { throw FormatError(file: path, "invalid id \(id) for the \(typ) token") }
            if let n = nVocab, id >= n {
                writeNote("\(typ) token id \(id) is out of range (vocabulary of \(n)); not written")
                return
            }
            if ids[typ] == nil { ids[typ] = id }
        }

        let tj = try json("tokenizer.json")
        var addedList: [TokenizerJSON] = []
        if let tj {
            if loadMerges, let m = tj["model"]?["merges"]?.array, !m.isEmpty {
                merges = try mergeStrings(m)
            }
            addedList = tj["added_tokens"]?.array ?? []
        }
        var config: [String: TokenizerJSON]? = nil
        if let c = try json("tokenizer_config.json") {
            guard let members = c.members else {
                throw FormatError(file: file("tokenizer_config.json"), "is not a JSON object")
            }
            config = Dictionary(members, uniquingKeysWith: { _, last in last })
        }
        var configTruthy: Bool { !(config?.isEmpty ?? true) }

        if let tj, tj.truthy { applyPostProcessor(tj, config: &config, types: &types, addFlags: &addFlags) }

        if let config, !config.isEmpty {
            chatTemplate = try chosenChatTemplate(config: config)

            for typ in types {
                if let b = config["add_\(typ)_token"]?.bool { addFlags[typ] = b }
                let entry = config["\(typ)_token"]
                guard let content = entry?.string ?? entry?["content"]?.string else { continue }
                let match = addedList.first(where: { same(content, $0["content"]) })
                try setID(typ, match?["id"])
            }
        }

        if let c = try json("config.json") {
            for typ in types {
                var v = c["\(typ)_token_id"]
                if v == nil || v == .null, let text = c["text_config"] { v = text["\(typ)_token_id"] }
                try setID(typ, v)
            }
        }

        if loadMerges, merges.isEmpty, isFile("merges.txt") {
            merges = try mergesFromText()
        }

        var out: [(key: String, value: GGUFValue)] = []
        if !merges.isEmpty {
            out.append((GGUFKey.Tokenizer.merges, .array(.string, merges.map { .string($0) })))
        } else if loadMerges {
            writeNote("\(path): no BPE merges found; the GGUF tokenizer may not work")
        }
        let idKeys = ["bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "sep": "seperator_token_id",
                      "pad": "padding_token_id", "mask": "mask_token_id", "eot": "eot_token_id", "eom": "eom_token_id"]
        for (typ, id) in ids.items {
            guard let key = idKeys[typ] else { continue }  // gguf-py has no writer for cls
            out.append(("tokenizer.ggml." + key, .uint32(UInt32(id))))
        }
        for (typ, flag) in addFlags.items where ["bos", "eos", "sep"].contains(typ) {
            out.append(("tokenizer.ggml.add_\(typ)_token", .bool(flag)))
        }
        out += chatTemplateEntries(chatTemplate)
        return out
    }

    /// tokenizer.json merges: "a b" strings, or [a, b] pairs (transformers ≥ 4.45), whose spaces become U+0120.
    func mergeStrings(_ m: [TokenizerJSON]) throws(FormatError) -> [String] {
        if m[0].string != nil {
            return try m.map { (v) throws(FormatError) in
                guard let s = v.string else { throw FormatError(file: file("tokenizer.json"), "model.merges mixes strings and pairs") }
                return s
            }
        }
        guard let p0 = m[0].array, p0.count == 2, p0[0].string != nil else {
            throw FormatError(file: file("tokenizer.json"), "model.merges has an unknown format")
        }
        return try m.map { (v) throws(FormatError) in
            guard let parts = v.array?.compactMap(\.string), parts.count == v.array?.count else {
                throw FormatError(file: file("tokenizer.json"), "model.merges holds an entry that is not a list of strings")
            }
            return parts.map { $0.utf8.contains(0x20) ? $0.replacingOccurrences(of: " ", with: "\u{0120}") : $0 }
                .joined(separator: " ")
        }
    }

    func mergesFromText() throws(FormatError) -> [String] {
        let lines = try text("merges.txt").split(separator: "\n", omittingEmptySubsequences: false)
        var out: [String] = []
        for (i, raw) in lines.enumerated() {
            if i == 0, raw.trimmingCharacters(in: .whitespaces).hasPrefix("#") { continue }
            let parts = raw.split(whereSeparator: { $0.isWhitespace })
            if parts.isEmpty { continue }
            guard parts.count == 2 else { continue }  // gguf-py skips malformed lines with a warning
            out.append("\(parts[0]) \(parts[1])")
        }
        return out
    }

    /// gguf-py's add_chat_template: a string, or a list of {name, template} (the "default" one becomes
    /// tokenizer.chat_template, the others tokenizer.chat_template.<name> plus the tokenizer.chat_templates list).
    func chatTemplateEntries(_ t: TokenizerJSON) -> [(key: String, value: GGUFValue)] {
        switch t {
        case let .string(s):
            return [(GGUFKey.Tokenizer.chatTemplate, .string(s))]
        case let .array(choices):
            var out: [(key: String, value: GGUFValue)] = []
            var names: [String] = []
            var defaultTemplate: String?
            for c in choices {
                let raw = c["name"]?.string ?? ""
                let name = String(raw.unicodeScalars.map { s -> Character in
                    s.isASCII && (s.properties.isAlphabetic || ("0" ... "9").contains(s)) ? Character(s) : "_"
                })
                guard !name.isEmpty, let body = c["template"]?.string else { continue }
                if name == "default" {
                    defaultTemplate = body
                } else {
                    if !names.contains(name) { names.append(name) }
                    out.append(("tokenizer.chat_template.\(name)", .string(body)))
                }
            }
            if !names.isEmpty { out.append(("tokenizer.chat_templates", .array(.string, names.map { .string($0) }))) }
            if let d = defaultTemplate { out.append((GGUFKey.Tokenizer.chatTemplate, .string(d))) }
            return out
        default:
            return []
        }
    }

    /// gguf-py's SpecialVocab._try_load_from_tokenizer_json, post-processor part: which special tokens the
    /// tokenizer adds (RobertaProcessing, TemplateProcessing) and the bos/eos/cls/sep it implies.
    func applyPostProcessor(_ tj: TokenizerJSON, config: inout [String: TokenizerJSON]?, types: inout [String],
                            addFlags: inout Ordered<Bool>) {
        var configTruthy: Bool { !(config?.isEmpty ?? true) }
        var bos = config?["bos_token"] ?? .null
        var cls = config?["cls_token"] ?? .null
        var eos = config?["eos_token"] ?? .null
        var sep = config?["sep_token"] ?? .null
        if !bos.truthy, cls.truthy, configTruthy { config?["bos_token"] = cls; bos = cls }
        if !eos.truthy, sep.truthy, configTruthy { config?["eos_token"] = sep; eos = sep }
        if let post = tj["post_processor"], post.truthy {
            let processors = post["processors"]?.array ?? [post]
            for proc in processors {
                switch proc["type"]?.string {
                case "RobertaProcessing":
                    addFlags["bos"] = true
                    addFlags["eos"] = true
                    addFlags["sep"] = true
                    if !cls.truthy, configTruthy {
                        cls = proc["cls"]?.array?.first ?? bos
                        config?["cls_token"] = cls
                    }
                    if !sep.truthy, configTruthy {
                        sep = proc["sep"]?.array?.first ?? eos
                        config?["sep_token"] = sep
                    }
                case "TemplateProcessing":
                    let single = proc["single"]?.array ?? []
                    var pair = proc["pair"]?.array ?? []
                    var first: String? = nil
                    var last: String? = nil
                    func specialID(_ item: TokenizerJSON) -> String? {
                        guard let s = item["SpecialToken"]?["id"]?.string, !s.isEmpty else { return nil }
                        return s
                    }
                    if single.count > 1 {
                        first = specialID(single[0])
                        if let f = first {
                            if !configTruthy { bos = .string(f) }
                            addFlags["bos"] = same(f, bos) || same(f, cls)
                        }
                        last = specialID(single[single.count - 1])
                        if let l = last {
                            if !configTruthy {
                                eos = .string(l)
                            } else if !same(l, eos) {
                                if !types.contains("eot") {
                                    types.append("eot")
                                    config?["eot_token"] = eos
                                } else if !types.contains("eom") {
                                    types.append("eom")
                                    config?["eom_token"] = eos
                                }
                                eos = .string(l)
                                config?["eos_token"] = eos
                            }
                            addFlags["eos"] = same(l, eos)
                        }
                    }
                    if !pair.isEmpty {
                        let start = first != nil && same(first, pair[0]["SpecialToken"]?["id"]) ? 1 : 0
                        let stop = last != nil && same(last, pair[pair.count - 1]["SpecialToken"]?["id"]) ? pair.count - 1 : pair.count
                        pair = start < stop ? Array(pair[start ..< stop]) : []
                        if !pair.isEmpty {
                            let a = pair[0]["Sequence"]?["id"]?.string
                            let b = pair[pair.count - 1]["Sequence"]?["id"]?.string
                            let middle = pair.count > 2 ? Array(pair[1 ..< pair.count - 1]) : []
                            if a == "A", b == "B", !middle.isEmpty {
                                var addSep = false
                                if let e = specialID(middle[0]), same(e, sep) || same(e, eos), last == nil {
                                    addSep = true
                                }
                                if middle.count == 2, let e = specialID(middle[1]), same(e, sep) || same(e, eos) {
                                    addSep = true
                                }
                                addFlags["sep"] = addSep
                                if addSep, !sep.truthy, configTruthy { config?["sep_token"] = eos }
                            }
                        }
                    }
                default:
                    break
                }
            }
        }
    }

    /// The chat template: tokenizer_config.json's, else chat_template.jinja (+ additional_chat_templates/), else
    /// chat_template.json's; .null when none is a string or a list.
    mutating func chosenChatTemplate(config: [String: TokenizerJSON]) throws(FormatError) -> TokenizerJSON {
        var alt: TokenizerJSON = .null
        if isFile("chat_template.jinja") {
            let main = try text("chat_template.jinja")
            alt = .string(main)
            let extraDir = file("additional_chat_templates")
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: extraDir)) ?? [])
                .filter { $0.hasSuffix(".jinja") }.sorted()
            if !names.isEmpty {
                var list: [TokenizerJSON] = [.object([("name", .string("default")), ("template", .string(main))])]
                for name in names {
                    let body = try text("additional_chat_templates/" + name)
                    list.append(.object([("name", .string(String(name.dropLast(".jinja".count)))), ("template", .string(body))]))
                }
                alt = .array(list)
            }
        } else if let j = try json("chat_template.json") {
            alt = j["chat_template"] ?? .null
        }
        let chosen = config["chat_template"] ?? alt
        switch chosen {
        case .null, .string, .array: return chosen
        default:
            writeNote("\(file("tokenizer_config.json")): chat_template is neither a string nor a list; ignored")
            return .null
        }
    }
}

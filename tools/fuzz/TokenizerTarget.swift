// tokenizer: what `vzquant convert` reads of a Hugging Face tokenizer, and the tokenizer built from it.
//
// The input is parsed whole by TokenizerJSON (walked as the importer walks it) and by SentencePieceModel. It is
// then written as a model directory: cut by "\n%%%\n" into the files below in this order, an empty part meaning
// the file is absent (an input without a separator is tokenizer.json alone). TokenizerImport.metadata reads the
// directory; its key/values go through Tokenizer(pairs:) (encode/decode with and without special tokens) and the
// chat template detection.
import Foundation

private let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "config.json", "tokenizer.model",
                              "added_tokens.json", "special_tokens_map.json", "merges.txt", "chat_template.jinja",
                              "chat_template.json"]

func fuzzTokenizer(_ bytes: UnsafeBufferPointer<UInt8>) {
    let whole = Array(bytes)
    if let tj = try? TokenizerJSON.parse(whole) {
        blackHole(TokenizerImport.preTokenizerName(tj))
        blackHole(walk(tj, depth: 0))
    }
    _ = try? SentencePieceModel(bytes: whole, file: "fuzz.model")

    let parts = splitParts(bytes)
    writeScratchFiles(tokenizerFiles, parts)
    for (i, p) in parts.enumerated() where i < tokenizerFiles.count && !p.isEmpty && i != 3 {
        if parts.count > 1, let tj = try? TokenizerJSON.parse(Array(p)) { blackHole(walk(tj, depth: 0)) }
    }
    let salt = inputSalt(bytes)
    // Mostly nil (vocab_size from config.json); one input in four: an embedding row count the converter passes.
    let vocabSize: Int? = salt % 4 != 3 ? nil : 1 + salt % 600
    let imported = Result { try TokenizerImport.metadata(modelDirectory: scratchDirectory, vocabSize: vocabSize) }
    if case let .failure(e) = imported { trace("import: \(e)") }
    guard let kv = try? imported.get() else { return }
    var meta = GGUFMetadata(file: "<import>")
    for (k, v) in kv { meta.set(k, v) }
    meta.set("general.architecture", .string((salt >> 2) & 1 == 0 ? "llama" : "qwen2"))
    let template = try? ChatTemplate.detect(metadata: meta)
    guard let tokenizer = try? Tokenizer(pairs: kv) else { return }
    trace("tokenizer: \(tokenizer.model) \(tokenizer.pre), \(tokenizer.count) tokens, template \(template?.name ?? "-")")
    var texts = ["Hello world", " héllo  wörld\n\n12345 it's", "<s>[INST] hi [/INST]</s><|im_start|>user\n<image>😀<|im_end|>"]
    if let template, let text = try? template.render([.system("S"), .user("<image>Q"), .assistant("A"), .user("B")],
                                                     addGenerationPrompt: true) {
        texts.append(text)
    }
    var added = ""
    for (i, type) in tokenizer.types.enumerated() where type == .control || type == .userDefined {
        added += tokenizer.tokens[i] + "x"
        if added.utf8.count > 256 { break }
    }
    texts.append(added)
    for text in texts {
        let ids = tokenizer.encode(text, addSpecial: true, parseSpecial: true)
        blackHole(tokenizer.decode(ids))
        blackHole(tokenizer.decode(tokenizer.encode(text, addSpecial: false, parseSpecial: false), skipSpecial: true))
        for id in ids.prefix(4) { blackHole(tokenizer.piece(id)) }
    }
}

/// Visits a parsed document the way the importer reads one (members, arrays, typed accessors).
private func walk(_ v: TokenizerJSON, depth: Int) -> Int {
    guard depth < 64 else { return 0 }
    var n = 1
    blackHole(v.truthy)
    blackHole(v.isNull)
    if let s = v.string { n &+= s.utf8.count }
    if let i = v.int { n &+= i & 1 }
    if let b = v.bool { n &+= b ? 1 : 0 }
    if let a = v.array { for e in a.prefix(64) { n &+= walk(e, depth: depth + 1) } }
    if let m = v.members {
        for (k, e) in m.prefix(64) {
            n &+= walk(e, depth: depth + 1)
            blackHole(v[k])
        }
    }
    return n
}

import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport

/// A SentencePiece-style ("llama") vocabulary of exactly `size` tokens, valid for llama.cpp and `Tokenizer`:
/// <unk>, <s>, </s>, the 256 byte tokens <0x00>…<0xFF> (so any text encodes through byte fallback), printable
/// pieces (every ASCII character with and without ▁, a few ▁-prefixed English words with all their prefixes, so
/// the bigram merges can reach them), syllable filler, and the family's special tokens last.
public struct SyntheticVocabulary: Sendable {
    public var tokens: [String]
    public var scores: [Float]
    public var types: [Tokenizer.TokenType]
    public var bos: Int
    public var eos: Int
    public var unk: Int
    public var addBOS: Bool
    public var chatTemplate: String

    static let words = ["the", "a", "is", "of", "and", "to", "in", "what", "this", "image", "picture", "photo",
                        "describe", "there", "are", "how", "many", "it", "on", "with", "for", "you", "cat", "dog",
                        "man", "woman", "color", "red", "blue", "green", "hello", "world", "answer", "question"]

    /// Control and user-defined tokens each family adds at the end of the vocabulary.
    static func specials(_ chat: ModelPreset.ChatFamily) -> [(String, Tokenizer.TokenType)] {
        switch chat {
        // LLaVA's image placeholder, recognised in any text as one token.
        case .vicuna: [("<image>", .userDefined)]
        // SmolVLM's tokens around each tile's rows (`<row_R_col_C>` for grids up to 6×6, as its tokenizer has),
        // and "\n" / "\n\n" as pieces of their own: llama.cpp's mtmd looks all of these up as single tokens.
        case .smolvlm: [("<|im_start|>", .control), ("<|im_end|>", .control), ("<end_of_utterance>", .control),
                        ("<fake_token_around_image>", .userDefined), ("<global-img>", .userDefined), ("<image>", .userDefined)]
            + (1...6).flatMap { r in (1...6).map { c in ("<row_\(r)_col_\(c)>", Tokenizer.TokenType.userDefined) } }
        // Qwen2-VL's control tokens (llama.cpp's mtmd looks up <|vision_start|> / <|vision_end|> around images).
        case .qwenChatML: ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                           "<|image_pad|>", "<|video_pad|>"].map { ($0, .control) }
        }
    }

    /// <unk>, <s>, </s>, 256 bytes, ▁, 94 printable characters twice, and the specials.
    static func minimumSize(_ chat: ModelPreset.ChatFamily) -> Int {
        3 + 256 + 1 + (chat == .vicuna ? 0 : 2) + 2 * 94 + specials(chat).count
    }

    public init(chat: ModelPreset.ChatFamily, size: Int) {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [Tokenizer.TokenType] = [.unknown, .control, .control]
        for b in 0..<256 {
            tokens.append(String(format: "<0x%02X>", b))
            types.append(.byte)
        }
        let specials = Self.specials(chat)
        let normalCount = max(0, size - tokens.count - specials.count)
        var seen = Set(tokens)
        var normal: [String] = []
        func add(_ s: String) {
            guard normal.count < normalCount, !seen.contains(s) else { return }
            seen.insert(s)
            normal.append(s)
        }
        add("▁")
        if chat != .vicuna { add("\n"); add("\n\n") }
        for c in 0x21...0x7E {
            let ch = String(UnicodeScalar(UInt8(c)))
            add(ch)
            add("▁" + ch)
        }
        for w in Self.words {
            for end in 1...w.count { add("▁" + w.prefix(end)) }
        }
        // Syllables (consonant + vowel), then pairs and triples of them, with and without ▁.
        let consonants = Array("bcdfghjklmnprstvwz"), vowels = Array("aeiou")
        let syllables = consonants.flatMap { c in vowels.map { v in String([c, v]) } }
        var stems = syllables
        while normal.count < normalCount {
            for s in stems { add("▁" + s); add(s) }
            guard normal.count < normalCount else { break }
            stems = stems.prefix(2000).flatMap { s in syllables.map { s + $0 } }
        }
        let firstNormal = tokens.count
        tokens += normal
        types += Array(repeating: .normal, count: normal.count)
        for (s, t) in specials {
            tokens.append(s)
            types.append(t)
        }
        // Normal pieces score by rank (earlier = more frequent); bytes and specials 0, as SentencePiece exports them.
        scores = types.indices.map { types[$0] == .normal ? -Float($0 - firstNormal) : 0 }
        self.tokens = tokens
        self.types = types
        unk = 0
        switch chat {
        case .vicuna:
            bos = 1
            eos = 2
            addBOS = true
            chatTemplate = """
                {% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}\
                {% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}\
                {% else %}{{ 'ASSISTANT: ' + message['content'] + ' ' }}{% endif %}{% endfor %}\
                {% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}
                """
        case .smolvlm:
            bos = tokens.firstIndex(of: "<|im_start|>")!
            eos = tokens.firstIndex(of: "<end_of_utterance>")!
            addBOS = false  // the template writes <|im_start|> itself
            chatTemplate = """
                <|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\
                <end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}
                """
        case .qwenChatML:
            bos = tokens.firstIndex(of: "<|endoftext|>")!
            eos = tokens.firstIndex(of: "<|im_end|>")!
            addBOS = false
            chatTemplate = """
                {% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system
                You are a helpful assistant.<|im_end|>
                {% endif %}<|im_start|>{{ message['role'] }}
                {{ message['content'] }}<|im_end|>
                {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
                {% endif %}
                """
        }
    }

    /// The `tokenizer.ggml.*` keys llama.cpp reads for a SentencePiece vocabulary.
    public var metadata: [(key: String, value: GGUFValue)] {
        [(GGUFKey.Tokenizer.model, .string("llama")),
         (GGUFKey.Tokenizer.pre, .string("default")),
         (GGUFKey.Tokenizer.tokens, .strings(tokens)),
         (GGUFKey.Tokenizer.scores, .float32s(scores)),
         (GGUFKey.Tokenizer.tokenType, .int32s(types.map(\.rawValue))),
         (GGUFKey.Tokenizer.bosTokenID, .uint32(UInt32(bos))),
         (GGUFKey.Tokenizer.eosTokenID, .uint32(UInt32(eos))),
         (GGUFKey.Tokenizer.unknownTokenID, .uint32(UInt32(unk))),
         (GGUFKey.Tokenizer.addBOS, .bool(addBOS)),
         (GGUFKey.Tokenizer.addEOS, .bool(false)),
         (GGUFKey.Tokenizer.chatTemplate, .string(chatTemplate))]
    }
}

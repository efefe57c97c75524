import Foundation
import VZQFormats

/// One message of a conversation. `content` may contain `ChatTemplate.imageMarker` where an image goes.
public struct ChatMessage: Sendable, Equatable, Codable {
    public enum Role: String, Sendable, Codable { case system, user, assistant }

    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }
    public static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: .assistant, content: text) }
}

public struct ChatTemplateError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The prompt formats of the models vzquant runs, written out by hand instead of interpreting the Jinja text of
/// `tokenizer.chat_template`. Each family renders exactly what transformers' apply_chat_template renders with that
/// model's own template (tools/make_chat_template_fixtures.py; ChatTemplateTests compare every case):
///
///   vicuna  llava-hf/llava-1.5-7b-hf: a system message is its text and a space, a turn is "USER: text " or
///           "ASSISTANT: text "; the generation prompt is "ASSISTANT:".
///   chatml  Qwen2 / Qwen2.5: "<|im_start|>role\ntext<|im_end|>\n"; when the conversation does not start with a
///           system message the template's default one is put first (Qwen2: "You are a helpful assistant.",
///           Qwen2.5: "You are Qwen, created by Alibaba Cloud. …"), none when the template has none.
///   smollm  SmolLM2-Instruct: ChatML with the default system prompt "You are a helpful AI assistant named SmolLM,
///           trained by Hugging Face".
///   llama3  Llama-3-Instruct: "<|begin_of_text|>" then "<|start_header_id|>role<|end_header_id|>\n\n" + text
///           (whitespace-trimmed) + "<|eot_id|>"; the generation prompt is the assistant header.
///   llama2  Llama-2-chat: "<s>[INST] text [/INST]", the reply " text </s>", a system message wrapped in
///           <<SYS>> into the first user turn; roles must alternate user/assistant.
///   smolvlm SmolVLM / Idefics3 (llama.cpp's "smolvlm"): "<|im_start|>" once, then "User: text<end_of_utterance>\n"
///           and "Assistant: text<end_of_utterance>\n" ("User:" directly followed by an image marker), a system
///           message as its text and a blank line; the generation prompt is "Assistant:".
///   raw     no template: the messages' texts concatenated (base models, completion prompts).
///
/// Images: a message's text keeps `imageMarker` where it stands; the runtime splits the encoded prompt there.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, Sendable, CaseIterable, Codable {
        case vicuna, chatml, smollm, smolvlm, llama3, llama2, raw
    }

    public static let imageMarker = "<image>"
    public static let smolLMSystemPrompt = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    public let family: Family
    /// ChatML: the system message put first when the conversation has none (nil: none).
    public let defaultSystemPrompt: String?

    public init(family: Family, defaultSystemPrompt: String? = nil) {
        self.family = family
        self.defaultSystemPrompt = family == .smollm ? (defaultSystemPrompt ?? Self.smolLMSystemPrompt) : defaultSystemPrompt
    }

    /// For `--chat-template NAME`: one of the family names. "chatml" has no default system prompt.
    public init(name: String) throws {
        guard let family = Family(rawValue: name.lowercased()) else {
            let names = Family.allCases.map(\.rawValue).joined(separator: ", ")
            throw ChatTemplateError("unknown chat template \"\(name)\"; known templates: \(names)")
        }
        self.init(family: family)
    }

    public var name: String { family.rawValue }

    /// True when the rendered text starts with the BOS token's text (llama3 "<|begin_of_text|>", llama2 "<s>"): the
    /// caller then encodes with addSpecial: false so BOS is not added twice (and parseSpecial: true in any case).
    public var textIncludesBOS: Bool { family == .llama3 || family == .llama2 || family == .smolvlm }

    /// Texts that end the assistant's turn when the model writes them (special tokens decode to their text).
    public var stopStrings: [String] {
        switch family {
        case .vicuna: ["</s>", "USER:"]
        case .chatml, .smollm: ["<|im_end|>", "<|endoftext|>"]
        case .smolvlm: ["<end_of_utterance>"]
        case .llama3: ["<|eot_id|>", "<|end_of_text|>"]
        case .llama2: ["</s>", "[INST]"]
        case .raw: []
        }
    }

    // MARK: detection

    /// From a GGUF file's `tokenizer.chat_template` and `general.architecture`.
    public static func detect(metadata: GGUFMetadata) throws -> ChatTemplate {
        let text = metadata.contains(GGUFKey.Tokenizer.chatTemplate) ? try metadata.string(GGUFKey.Tokenizer.chatTemplate) : nil
        let architecture = try metadata.string(GGUFKey.General.architecture, default: "")
        // Without a template a llama-architecture file is taken as Vicuna/LLaVA-1.5 only with a SentencePiece
        // vocabulary (Llama-2 family); a byte-level one (Llama-3, SmolLM base models) gets no template.
        if text == nil, architecture == "llama",
           try metadata.string(GGUFKey.Tokenizer.model, default: "llama") != "llama" {
            return ChatTemplate(family: .raw)
        }
        return detect(templateText: text, architecture: architecture)
    }

    /// By markers in the template text:
    ///   "<|im_start|>" → chatml, or smollm when the text names SmolLM (default system prompt taken from the text);
    ///   "<|start_header_id|>" → llama3; "[INST]" → llama2; "USER:" or "ASSISTANT:" → vicuna.
    /// No template, or one with none of these: by architecture. "llama" → vicuna, because LLaVA-1.5 files made
    /// by llama.cpp's tools carry no template and Vicuna is the format it was trained on (llama.cpp itself falls
    /// back to chatml); "qwen2", "qwen2vl" → chatml without a default system prompt; anything else → raw.
    public static func detect(templateText: String?, architecture: String) -> ChatTemplate {
        if let text = templateText, !text.isEmpty {
            if text.contains("<end_of_utterance>") { return ChatTemplate(family: .smolvlm) }
            if text.contains("<|im_start|>") {
                let system = chatMLDefaultSystemPrompt(in: text)
                if text.contains("SmolLM") { return ChatTemplate(family: .smollm, defaultSystemPrompt: system) }
                return ChatTemplate(family: .chatml, defaultSystemPrompt: system)
            }
            if text.contains("<|start_header_id|>") { return ChatTemplate(family: .llama3) }
            if text.contains("[INST]") { return ChatTemplate(family: .llama2) }
            if text.contains("USER:") || text.contains("ASSISTANT:") { return ChatTemplate(family: .vicuna) }
        }
        switch architecture {
        case "llama": return ChatTemplate(family: .vicuna)
        case "qwen2", "qwen2vl": return ChatTemplate(family: .chatml)
        default: return ChatTemplate(family: .raw)
        }
    }

    /// The literal system text a ChatML template writes when the conversation has no system message: the first
    /// "<|im_start|>system" + newline (real or the Jinja escape "\n") + plain text + "<|im_end|>" in the template
    /// source, skipping occurrences whose text is an expression (quotes, braces, "+").
    static func chatMLDefaultSystemPrompt(in template: String) -> String? {
        let head = "<|im_start|>system"
        var rest = Substring(template)
        while let start = rest.range(of: head) {
            rest = rest[start.upperBound...]
            var body = rest
            if body.hasPrefix("\\n") { body = body.dropFirst(2) } else if body.hasPrefix("\n") { body = body.dropFirst() } else { continue }
            guard let end = body.range(of: "<|im_end|>") else { return nil }
            let candidate = body[..<end.lowerBound]
            if candidate.isEmpty || candidate.contains(where: { "'\"{}+".contains($0) }) { continue }
            return candidate.replacingOccurrences(of: "\\n", with: "\n")
        }
        return nil
    }

    // MARK: rendering

    /// The prompt text for `messages`; `addGenerationPrompt` appends the opening of the assistant's turn
    /// (llama2 and raw have none). Throws for a conversation the model's template refuses (llama2: roles that
    /// do not alternate user/assistant after an optional first system message).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        var out = ""
        switch family {
        case .vicuna:
            for m in messages {
                if m.role != .system { out += m.role.rawValue.uppercased() + ": " }
                out += m.content + " "
            }
            if addGenerationPrompt { out += "ASSISTANT:" }
        case .chatml, .smollm:
            for (i, m) in messages.enumerated() {
                if i == 0, m.role != .system, let system = defaultSystemPrompt {
                    out += "<|im_start|>system\n" + system + "<|im_end|>\n"
                }
                out += "<|im_start|>" + m.role.rawValue + "\n" + m.content + "<|im_end|>\n"
            }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .smolvlm:
            out += "<|im_start|>"
            for m in messages {
                switch m.role {
                case .system: out += m.content + "\n\n"
                case .user, .assistant:
                    let role = m.role == .user ? "User:" : "Assistant:"
                    out += role + (m.content.hasPrefix(Self.imageMarker) ? "" : " ") + m.content + "<end_of_utterance>\n"
                }
            }
            if addGenerationPrompt { out += "Assistant:" }
        case .llama3:
            for (i, m) in messages.enumerated() {
                if i == 0 { out += "<|begin_of_text|>" }
                out += "<|start_header_id|>" + m.role.rawValue + "<|end_header_id|>\n\n" + Self.trim(m.content) + "<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .llama2:
            var turns = messages[...]
            var system: String?
            if let first = messages.first, first.role == .system {
                system = first.content
                turns = messages.dropFirst()
            }
            for (i, m) in turns.enumerated() {
                guard (m.role == .user) == (i % 2 == 0) else {
                    throw ChatTemplateError("llama2 chat template: conversation roles must alternate user/assistant/user/assistant/...")
                }
                var content = m.content
                if i == 0, let system { content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content }
                switch m.role {
                case .user: out += "<s>[INST] " + Self.trim(content) + " [/INST]"
                case .assistant: out += " " + Self.trim(content) + " </s>"
                case .system: break  // a later system message at an odd position: the template writes nothing
                }
            }
        case .raw:
            for m in messages { out += m.content }
        }
        return out
    }

    /// A character no template writes, trims or escapes: it stands for the reply while rendering.
    static let replyMark = "\u{E000}"

    /// The text that follows a reply when the conversation `history` (rendered with the generation prompt, then
    /// the model's reply) goes on with `next`: the end of the assistant's turn, the new messages and the next
    /// generation prompt. The reply itself is whatever the model generated — its tokens stay in the cache as
    /// sampled and are never rendered again — so only the text around it matters. nil when the template renders
    /// the earlier text differently once the reply and `next` follow (then the conversation must be prefilled
    /// again); the characters the template writes between the generation prompt and the reply's text (vicuna's
    /// and llama2's space) are the reply's own business: a model writes them as part of its first token.
    public func textAfterReply(history: [ChatMessage], next: [ChatMessage]) throws -> String? {
        let seen = try render(history, addGenerationPrompt: true)
        let full = try render(history + [.assistant(Self.replyMark)] + next, addGenerationPrompt: true)
        guard let mark = full.range(of: Self.replyMark), full[..<mark.lowerBound].utf8.starts(with: seen.utf8) else { return nil }
        return String(full[mark.upperBound...])
    }

    /// Python's str.strip() / Jinja's trim: surrounding whitespace.
    static func trim(_ s: String) -> String {
        s.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

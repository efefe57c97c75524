import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// A conversation with a loaded model — messages with images in, a streamed reply out — and the one place that
/// decides what the KV cache must prefill. `vzquant run`, `chat` and `bench model` (and a server) call it.
///
/// The cache is the source of truth: the tokens in it, prompt and reply exactly as sampled, are never tokenized
/// again. A new message prefills only the text the chat template puts after the reply (the end of the assistant's
/// turn, the message, the next generation prompt; `ChatTemplate.textAfterReply`) and the images of that message,
/// which are encoded and VisionZip-compressed once. The whole conversation is prefilled again only when the
/// template renders earlier text differently once the new message is there, or after a turn the cache refused.
public final class Conversation {
    public let session: Session
    /// nil: no template — the messages' texts as given (completion prompts, `--raw`).
    public let template: ChatTemplate?
    /// What has been said, the system message first; replies as the user saw them.
    public private(set) var messages: [ChatMessage] = []
    private let system: String?
    /// Every image of `messages`, in order.
    private var images: [EncodedImage] = []
    /// How many of `images` the cache holds.
    private var cachedImages = 0
    /// The cache holds `messages` rendered with the generation prompt, then these reply tokens (not yet a message).
    private var reply: (text: String, tokens: Int)?
    /// The cache may hold part of a refused turn: the next message prefills the whole conversation again.
    private var stale = false

    public init(session: Session, template: ChatTemplate?, system: String? = nil) {
        self.session = session
        self.template = template
        self.system = system
        reset()
    }

    /// Starts over: an empty cache, only the system message.
    public func reset() {
        session.reset()
        messages = system.map { [.system($0)] } ?? []
        images = []
        cachedImages = 0
        reply = nil
        stale = false
    }

    /// Stop strings of the template (the end of the assistant's turn written out as text).
    public var templateStopStrings: [String] { template?.stopStrings ?? [] }

    /// What `add` prefilled.
    public struct Prefill: Sendable {
        public var report: PrefillReport
        /// The cache was emptied and the whole conversation prefilled (first message, or the template rewrote).
        public var wholeConversation: Bool
        /// Text tokens of the prefill (without image rows).
        public var textTokens: Int { report.tokens - report.imageTokens }
    }

    /// Adds a user message and prefills what the cache lacks. `images` go where the text says
    /// `ChatTemplate.imageMarker`, else before the text (one marker and a newline each). When the cache cannot
    /// take the rows (`ContextFull`) the conversation is left as before the call and the next call prefills it all.
    @discardableResult
    public func add(user text: String, images new: [EncodedImage] = []) throws -> Prefill {
        let message = ChatMessage.user(Self.placingImages(new.count, in: text))
        let saved = (messages, images, reply)
        do {
            return try prefill(message, images: new)
        } catch {
            (messages, images, reply) = saved
            stale = true
            throw error
        }
    }

    /// `text` with `count` images placed: where it says `ChatTemplate.imageMarker`, else before it (a marker and a
    /// newline each), as `add(user:images:)` places them.
    public static func placingImages(_ count: Int, in text: String) -> String {
        let marker = ChatTemplate.imageMarker
        guard count > 0, !text.contains(marker) else { return text }
        return String(repeating: marker + "\n", count: count) + text
    }

    /// Starts over from turns that already happened (a server request carries its whole history): `history` holds
    /// user and assistant messages, the user's last, their images placed (`placingImages`); `images` are those
    /// images in order. Everything is prefilled in one go; later `add` calls extend it as usual.
    @discardableResult
    public func start(history: [ChatMessage], images all: [EncodedImage]) throws -> Prefill {
        guard let last = history.last, last.role == .user else {
            throw ModelError("a conversation must end with a message from the user")
        }
        reset()
        let marker = ChatTemplate.imageMarker
        let earlier = history.dropLast().map { $0.content.components(separatedBy: marker).count - 1 }.reduce(0, +)
        guard earlier <= all.count else {
            throw ModelError("the messages have more image markers '\(marker)' than images (\(all.count))")
        }
        messages += history.dropLast()
        images = Array(all[..<earlier])
        do {
            return try prefill(last, images: Array(all[earlier...]))
        } catch {
            reset()
            throw error
        }
    }

    private func prefill(_ message: ChatMessage, images new: [EncodedImage]) throws -> Prefill {
        let marker = ChatTemplate.imageMarker
        // The text after what the cache holds, if the template lets the cache be extended.
        var delta: String?
        if !stale, session.position > 0 {
            if let template {
                delta = try template.textAfterReply(history: messages, next: [message])
            } else {
                delta = message.content
            }
        }
        // The turn the cache ends with is the assistant's, even when it generated nothing.
        if reply != nil || (!stale && session.position > 0) { messages.append(.assistant(reply?.text ?? "")) }
        reply = nil
        messages.append(message)
        images += new
        let whole = delta == nil
        if whole {
            session.reset()
            cachedImages = 0
            stale = false
        }
        let text = try delta ?? (template?.render(messages, addGenerationPrompt: true) ?? messages.map(\.content).joined())
        let pieces = try PromptPiece.splice(text, images: Array(images[cachedImages...]), marker: marker)
        let report = try session.prefill(pieces, addBOS: whole && !(template?.textIncludesBOS ?? false))
        cachedImages = images.count
        return Prefill(report: report, wholeConversation: whole)
    }

    /// Prefills token ids and images exactly as given, outside the template (bench: a prompt of an exact token
    /// count). The messages do not record them: a later `add(user:)` prefills the conversation from scratch.
    @discardableResult
    public func add(pieces: [PromptPiece]) throws -> Prefill {
        reply = nil
        stale = true
        let report = try session.prefill(pieces, addBOS: false)
        return Prefill(report: report, wholeConversation: session.position == report.tokens)
    }

    /// The assistant's reply, as generated.
    public struct Reply: Sendable {
        /// The text shown to the user (no stop string, no SentencePiece space prefix).
        public var text: String
        public var report: GenerationReport
        /// Reply tokens the cache keeps (the tokens of a stop string are dropped from it).
        public var cachedTokens: Int
    }

    /// Generates the reply to what was added, streaming its text. Generation ends at an end-of-turn token, a
    /// stop string (`stopStrings` and the template's), `maxTokens` or a full cache. `keepInCache`: the reply's
    /// tokens stay in the cache for the next message (chat); a stop string's tokens are taken back out of it.
    /// `stopTokens`: the ids that end the turn (nil: the model's end-of-generation tokens; bench: none).
    public func generate(maxTokens: Int, stopStrings: [String] = [], stopTokens: Set<Int32>? = nil, keepInCache: Bool = true,
                         sample: (UnsafeBufferPointer<Float>, [Int32]) -> Int32,
                         onText: (String) -> Void = { _ in }, interrupted: () -> Bool = { false }) throws -> Reply {
        let start = session.position
        var stream = TextStream(tokenizer: session.tokenizer, stopStrings: templateStopStrings + stopStrings)
        let budget = min(maxTokens, session.contextLength - session.position)
        let report = try session.generate(
            maxTokens: budget, stopTokens: stopTokens ?? session.endOfGenerationTokens(extraTexts: templateStopStrings),
            keepInCache: keepInCache, sample: sample,
            onToken: { token in
                let piece = stream.push(token)
                if !piece.isEmpty { onText(piece) }
                return stream.stopped
            },
            interrupted: interrupted)
        let tail = stream.finish()
        if !tail.isEmpty { onText(tail) }
        var kept = session.position - start
        if stream.stopped {
            // Keep the tokens whose bytes lie wholly inside the reply before the stop string.
            kept = Self.tokensWithin(report.tokens, bytes: stream.generatedText.utf8.count, tokenizer: session.tokenizer)
            session.truncate(to: start + kept)
        }
        reply = (stream.shownText, kept)
        return Reply(text: stream.shownText, report: report, cachedTokens: kept)
    }

    /// How many leading `tokens` spell at most `bytes` bytes.
    static func tokensWithin(_ tokens: [Int32], bytes: Int, tokenizer: Tokenizer) -> Int {
        var total = 0
        for (i, t) in tokens.enumerated() {
            total += tokenizer.pieceBytes(t).count
            if total > bytes { return i }
        }
        return tokens.count
    }
}

import Foundation
import VZQRuntime
import VZQTokenReduction
import VZQText
import VZQFormats

/// The body of `POST /v1/chat/completions` as OpenAI's API defines it: the fields vzquant serves, plus its own
/// `visual_tokens` and `token_reducer`. Fields it does not know are ignored (clients send many); a known field of
/// the wrong type is a 400 naming it.
struct ChatCompletionRequest: Decodable {
    var model: String?
    var messages: [Message]
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var minP: Double?
    var repeatPenalty: Double?
    var seed: Int64?
    var stop: Stop?
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?
    var visualTokens: VisualTokensField?
    var tokenReducer: String?

    enum CodingKeys: String, CodingKey {
        case model, messages, temperature, seed, stop, stream, n
        case maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens", topP = "top_p", topK = "top_k"
        case minP = "min_p", repeatPenalty = "repeat_penalty", streamOptions = "stream_options"
        case visualTokens = "visual_tokens", tokenReducer = "token_reducer"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        messages = try c.decode([Message].self, forKey: .messages)
        maxTokens = try c.decodeIntegerIfPresent(forKey: .maxTokens)
        maxCompletionTokens = try c.decodeIntegerIfPresent(forKey: .maxCompletionTokens)
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
        topP = try c.decodeIfPresent(Double.self, forKey: .topP)
        topK = try c.decodeIntegerIfPresent(forKey: .topK)
        minP = try c.decodeIfPresent(Double.self, forKey: .minP)
        repeatPenalty = try c.decodeIfPresent(Double.self, forKey: .repeatPenalty)
        seed = try c.decodeIntegerIfPresent(forKey: .seed).map(Int64.init)
        stop = try c.decodeIfPresent(Stop.self, forKey: .stop)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try c.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        n = try c.decodeIntegerIfPresent(forKey: .n)
        visualTokens = try c.decodeIfPresent(VisualTokensField.self, forKey: .visualTokens)
        tokenReducer = try c.decodeIfPresent(String.self, forKey: .tokenReducer)
    }

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    struct Message: Decodable {
        var role: String
        var content: Content?
    }

    /// `content`: a string, or an array of parts (text and images), or null (an assistant's tool call).
    enum Content: Decodable {
        case text(String)
        case parts([Part])

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                self = .text(s)
            } else if let p = try? c.decode([Part].self) {
                self = .parts(p)
            } else {
                // Decode again to surface the part's own error (which field of which part), else say what fits.
                if (try? c.decode([AnyJSON].self)) != nil { self = .parts(try c.decode([Part].self)); return }
                throw DecodingError.typeMismatch(String.self, .init(codingPath: decoder.codingPath,
                                                                    debugDescription: "expected a string or an array of content parts"))
            }
        }
    }

    struct Part: Decodable {
        var type: String
        var text: String?
        var imageURL: ImageURL?

        enum CodingKeys: String, CodingKey { case type, text, imageURL = "image_url" }
    }

    /// `image_url`: `{"url": …}` as OpenAI sends it, or a bare string as some clients do.
    struct ImageURL: Decodable {
        var url: String

        init(from decoder: any Decoder) throws {
            if let s = try? decoder.singleValueContainer().decode(String.self) {
                url = s
                return
            }
            enum Keys: String, CodingKey { case url }
            url = try decoder.container(keyedBy: Keys.self).decode(String.self, forKey: .url)
        }
    }

    /// `stop`: a string or an array of strings.
    struct Stop: Decodable {
        var strings: [String]

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { strings = [s] } else { strings = try c.decode([String].self) }
        }
    }

    /// `visual_tokens`: a number, or "all" (VisionZip off), as `--visual-tokens`.
    struct VisualTokensField: Decodable {
        var value: VisualTokens

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            let text: String
            if let n = try? c.decode(Int.self) { text = String(n) } else if let s = try? c.decode(String.self) { text = s } else {
                throw DecodingError.typeMismatch(Int.self, .init(codingPath: decoder.codingPath,
                                                                 debugDescription: "expected a number of tokens or \"all\""))
            }
            do { value = try VisualTokens(text) } catch {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
            }
        }
    }

    /// Any JSON value (to tell an array of bad parts from a value of the wrong kind).
    struct AnyJSON: Decodable {
        init(from decoder: any Decoder) throws {}
    }
}

/// What the server settles before a request is queued: its limits, and whether images can be read.
public struct RequestLimits: Sendable {
    /// `max_tokens` above this is refused; absent, it is the default.
    public var maxTokens: Int
    /// Bytes of one decoded image.
    public var maxImageBytes: Int
    /// Local image paths (`file://` or absolute) are read only below this directory.
    public var localFilesRoot: String?
    /// The server has a vision model.
    public var acceptsImages: Bool
    /// `visual_tokens` when a request does not say.
    public var defaultVisualTokens: VisualTokens

    public init(maxTokens: Int, maxImageBytes: Int, localFilesRoot: String?, acceptsImages: Bool,
                defaultVisualTokens: VisualTokens) {
        self.maxTokens = maxTokens
        self.maxImageBytes = maxImageBytes
        self.localFilesRoot = localFilesRoot
        self.acceptsImages = acceptsImages
        self.defaultVisualTokens = defaultVisualTokens
    }
}

/// A request checked and reduced to what the engine runs: messages as the chat template takes them (images
/// placed by markers), the image bytes in order, sampling and stopping.
public struct ChatJobRequest: Sendable, Equatable {
    /// The leading system message, if any.
    public var system: String?
    /// User and assistant messages (and later system ones), the user's last.
    public var history: [ChatMessage]
    /// The images of `history`'s markers, in order, as their files' bytes.
    public var images: [Data]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    public var stop: [String]
    public var stream: Bool
    public var includeUsage: Bool
    public var visualTokens: VisualTokens
    /// `token_reducer`: "visionzip" (default) or "divprune".
    public var tokenReducer: String

    /// Parses and checks a request body. Throws `APIError` (400 or 413) naming what is wrong.
    public static func parse(_ body: Data, limits: RequestLimits) throws -> ChatJobRequest {
        let r: ChatCompletionRequest
        do {
            r = try JSONDecoder().decode(ChatCompletionRequest.self, from: body)
        } catch let e as DecodingError {
            let (message, param) = e.requestMessage
            throw APIError.badRequest(message, param: param)
        } catch {
            throw APIError.badRequest("the body is not valid JSON")
        }
        return try ChatJobRequest(r, limits: limits)
    }

    init(_ r: ChatCompletionRequest, limits: RequestLimits) throws {
        func bad(_ message: String, _ param: String) -> APIError { .badRequest("\(param): \(message)", param: param) }
        if let n = r.n, n != 1 { throw bad("only n = 1 is served", "n") }
        if let reducer = r.tokenReducer, !TokenReducers.names.contains(reducer) {
            throw bad("unknown token reducer '\(reducer)' (served: \(TokenReducers.names.joined(separator: ", ")))", "token_reducer")
        }
        tokenReducer = r.tokenReducer ?? "visionzip"
        let requested = r.maxCompletionTokens ?? r.maxTokens
        if let m = requested, !(1...limits.maxTokens).contains(m) {
            throw bad("\(m) is outside 1…\(limits.maxTokens) (the server's cap)", r.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens")
        }
        maxTokens = requested ?? limits.maxTokens

        // Sampling: llama.cpp's defaults where the request is silent (OpenAI's temperature 1 with top_p 1 on a
        // small quantized model rambles); temperature 0 is greedy, as `vzquant run --temp 0`.
        let temperature = r.temperature ?? 0.8
        guard temperature.isFinite, (0...2).contains(temperature) else { throw bad("must be in 0…2", "temperature") }
        let topP = r.topP ?? 0.95
        guard topP.isFinite, topP > 0, topP <= 1 else { throw bad("must be in (0, 1]", "top_p") }
        let topK = r.topK ?? 40
        guard topK >= 0 else { throw bad("must be ≥ 0", "top_k") }
        let minP = r.minP ?? 0
        guard minP.isFinite, minP >= 0, minP < 1 else { throw bad("must be in [0, 1)", "min_p") }
        let penalty = r.repeatPenalty ?? 1
        guard penalty.isFinite, penalty > 0, penalty <= 10 else { throw bad("must be in (0, 10]", "repeat_penalty") }
        let seed = r.seed.map { UInt64(bitPattern: $0) } ?? UInt64.random(in: 0...UInt64.max)
        sampling = SamplingParameters(temperature: Float(temperature), topK: topK, topP: Float(topP), minP: Float(minP),
                                      repeatPenalty: Float(penalty), seed: seed)

        stop = r.stop?.strings ?? []
        guard stop.count <= 16 else { throw bad("at most 16 stop strings", "stop") }
        guard !stop.contains(where: \.isEmpty) else { throw bad("a stop string must not be empty", "stop") }
        stream = r.stream ?? false
        includeUsage = r.streamOptions?.includeUsage ?? false
        visualTokens = r.visualTokens?.value ?? limits.defaultVisualTokens

        // Messages: roles, texts and images in order.
        guard !r.messages.isEmpty else { throw bad("at least one message is needed", "messages") }
        var history: [ChatMessage] = []
        var images: [Data] = []
        system = nil
        for (i, m) in r.messages.enumerated() {
            let param = "messages[\(i)]"
            let role: ChatMessage.Role
            switch m.role {
            case "system", "developer": role = .system
            case "user": role = .user
            case "assistant": role = .assistant
            default: throw bad("role '\(m.role)' is not served (system, user, assistant)", param + ".role")
            }
            var texts: [String] = []
            var count = 0
            switch m.content {
            case nil:
                throw bad("content is missing (tool calls are not served)", param + ".content")
            case let .text(s)?:
                texts = [s]
            case let .parts(parts)?:
                for (j, p) in parts.enumerated() {
                    let partParam = "\(param).content[\(j)]"
                    switch p.type {
                    case "text":
                        guard let t = p.text else { throw bad("a text part needs 'text'", partParam) }
                        texts.append(t)
                    case "image_url":
                        guard let url = p.imageURL?.url else { throw bad("an image part needs 'image_url'", partParam) }
                        guard role == .user else { throw bad("only user messages may hold images", partParam) }
                        guard limits.acceptsImages else {
                            throw bad("this server has no vision model (start it with --mmproj)", partParam)
                        }
                        images.append(try ImageInput.bytes(url, limits: limits, param: partParam + ".image_url"))
                        count += 1
                    default:
                        throw bad("part type '\(p.type)' is not served (text, image_url)", partParam + ".type")
                    }
                }
            }
            let text = texts.joined(separator: "\n")
            if text.contains(ChatTemplate.imageMarker), count != text.components(separatedBy: ChatTemplate.imageMarker).count - 1 {
                throw bad("the text has \(text.components(separatedBy: ChatTemplate.imageMarker).count - 1) image marker(s) '\(ChatTemplate.imageMarker)' for \(count) image(s)", param + ".content")
            }
            let content = Conversation.placingImages(count, in: text)
            if i == 0, role == .system {
                system = content
            } else {
                history.append(ChatMessage(role: role, content: content))
            }
        }
        guard let last = history.last, last.role == .user else {
            throw bad("the last message must be the user's", "messages")
        }
        self.history = history
        self.images = images
    }
}

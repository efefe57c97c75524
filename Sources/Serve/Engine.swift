import Foundation
import VZQFormats
import VZQImage
import VZQRuntime
import VZQTokenReduction
import VZQSupport
import VZQText

/// What a request's prefill did, sent before any text.
public struct JobStarted: Sendable {
    /// Positions of the whole prompt (cached and prefilled) — OpenAI's `prompt_tokens`.
    public var promptTokens: Int
    /// Of those, the positions the cache already held from the previous request (the conversation's prefix).
    public var cachedTokens: Int
    /// Positions this request prefilled (text and image rows).
    public var prefillTokens: Int
    public var prefillMs: Double
    /// Visual tokens of this request's new images before and after VisionZip.
    public var visualTokensBefore: Int
    public var visualTokensAfter: Int
    /// Image decode, encoder, VisionZip and projector time.
    public var imageMs: Double
    /// Time the request waited in the queue.
    public var queueMs: Double
}

/// How a request's generation ended.
public struct JobFinished: Sendable {
    public var text: String
    public var completionTokens: Int
    /// OpenAI's finish_reason: "stop" (end of turn or a stop string) or "length" (max_tokens, a full context).
    public var finishReason: String
    public var decodeTokensPerSecond: Double
    public var cancelled: Bool
}

/// One queued request: its prefill result first (`started`), then its text (`output`). Cancelling it (the client
/// went away) drops it from the queue or stops its generation at the next token.
public final class ChatJob: @unchecked Sendable {
    public enum Output: Sendable {
        case text(String)
        case finished(JobFinished)
        case failed(APIError)
    }

    public let request: ChatJobRequest
    public let id: String
    public let started: AsyncStream<Result<JobStarted, APIError>>
    public let output: AsyncStream<Output>
    let startedSink: AsyncStream<Result<JobStarted, APIError>>.Continuation
    let outputSink: AsyncStream<Output>.Continuation
    /// monotonicMilliseconds() when the job was queued.
    let queuedAt = monotonicMilliseconds()
    private let lock = NSLock()
    private var cancelled = false

    init(_ request: ChatJobRequest) {
        self.request = request
        id = "chatcmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        (started, startedSink) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
        (output, outputSink) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    public func cancel() { lock.withLock { cancelled = true } }
    public var isCancelled: Bool { lock.withLock { cancelled } }

    func fail(_ error: APIError) {
        startedSink.yield(.failure(error))
        startedSink.finish()
        outputSink.yield(.failed(error))
        outputSink.finish()
    }
}

/// The one resident model and the thread that runs it. Requests wait in a bounded FIFO; the worker takes them one
/// at a time (a board has no cores to spare for two). The KV cache keeps the last conversation, so a request whose
/// messages extend it — the previous messages, the reply as generated, one new user message — prefills only its
/// own tokens and images.
public final class Engine: @unchecked Sendable {
    public struct Options: Sendable {
        /// Requests that may wait while one runs; one more is answered 503.
        public var maxQueue: Int
        public var imageDecode: ImageDecodeOptions
        public init(maxQueue: Int, imageDecode: ImageDecodeOptions) {
            self.maxQueue = maxQueue
            self.imageDecode = imageDecode
        }
    }

    public let modelName: String
    public let contextLength: Int
    public let acceptsImages: Bool
    let metrics: ServerMetrics
    private let options: Options
    private let template: ChatTemplate

    // The worker's own state: touched only on its thread.
    private let session: Session
    private var conversation: Conversation?
    /// What the cache holds, as the requests said it: extended by exactly one user message, it is reused.
    private var transcript: Transcript?

    // Shared state, under `condition`.
    private let condition = NSCondition()
    private var waiting: [ChatJob] = []
    private var busy = false
    /// Seconds a request took, smoothed (for Retry-After).
    private var averageSeconds = 1.0

    struct Transcript: Equatable {
        var system: String?
        var messages: [ChatMessage]
        var images: [Data]
        var visualTokens: VisualTokens
        var tokenReducer: String
    }

    public init(session: Session, template: ChatTemplate, modelName: String, options: Options, metrics: ServerMetrics) {
        self.session = session
        self.template = template
        self.modelName = modelName
        self.options = options
        self.metrics = metrics
        contextLength = session.contextLength
        acceptsImages = session.vision != nil
        let thread = Thread { [unowned self] in self.work() }
        thread.name = "vzquant-engine"
        thread.stackSize = 16 << 20
        thread.start()
    }

    /// Queues a request. Throws a 503 (with Retry-After) when `maxQueue` requests already wait.
    public func submit(_ request: ChatJobRequest) throws -> ChatJob {
        let job = ChatJob(request)
        try condition.withLock {
            let queued = waiting.filter { !$0.isCancelled }.count
            if queued >= options.maxQueue, busy || queued > 0 {
                var e = APIError(HTTPStatus.unavailable, "the server is busy: \(queued) request(s) wait (--max-queue \(options.maxQueue)); retry later",
                                 code: "queue_full")
                e.retryAfter = max(1, Int((averageSeconds * Double(queued + 1)).rounded(.up)))
                throw e
            }
            waiting.append(job)
            metrics.queueLength.set(Double(waiting.count))
            condition.signal()
        }
        return job
    }

    /// Requests waiting, and whether one is running.
    public var load: (waiting: Int, busy: Bool) { condition.withLock { (waiting.count, busy) } }

    private func work() {
        while true {
            let job: ChatJob = condition.withLock {
                while waiting.isEmpty { condition.wait() }
                busy = true
                let job = waiting.removeFirst()
                metrics.queueLength.set(Double(waiting.count))
                return job
            }
            let t0 = monotonicMilliseconds()
            if job.isCancelled {
                job.fail(APIError(HTTPStatus.badRequest, "cancelled", code: "cancelled"))
                metrics.cancelled.increment()
            } else {
                run(job)
            }
            let seconds = (monotonicMilliseconds() - t0) / 1000
            condition.withLock {
                busy = false
                averageSeconds = 0.8 * averageSeconds + 0.2 * seconds
            }
        }
    }

    private func run(_ job: ChatJob) {
        let r = job.request
        let started: JobStarted
        do {
            started = try prefill(job)
        } catch {
            conversation = nil
            transcript = nil
            job.fail(Self.apiError(error))
            metrics.requestFailed()
            return
        }
        job.startedSink.yield(.success(started))
        job.startedSink.finish()
        metrics.prefilled(started)

        do {
            let conversation = conversation!
            var sampler = try Sampler(r.sampling)
            let reply = try conversation.generate(
                maxTokens: r.maxTokens, stopStrings: r.stop, keepInCache: true,
                sample: { logits, history in sampler.sample(logits: logits, history: history) },
                onText: { job.outputSink.yield(.text($0)) },
                interrupted: { job.isCancelled })
            transcript = Transcript(system: r.system, messages: r.history + [.assistant(reply.text)], images: r.images,
                                    visualTokens: r.visualTokens, tokenReducer: r.tokenReducer)
            let report = reply.report
            let reason: String
            switch report.stopReason {
            case .endOfText, .stopString: reason = "stop"
            case .maxTokens, .contextFull, .interrupted: reason = "length"
            }
            let finished = JobFinished(text: reply.text, completionTokens: report.tokens.count, finishReason: reason,
                                       decodeTokensPerSecond: report.decodeTokensPerSecond,
                                       cancelled: report.stopReason == .interrupted)
            job.outputSink.yield(.finished(finished))
            job.outputSink.finish()
            metrics.finished(finished)
        } catch {
            conversation = nil
            transcript = nil
            job.outputSink.yield(.failed(Self.apiError(error)))
            job.outputSink.finish()
            metrics.requestFailed()
        }
    }

    /// Brings the cache to the request's prompt: only the new message when the request extends the cached
    /// conversation, else the whole conversation.
    private func prefill(_ job: ChatJob) throws -> JobStarted {
        let r = job.request
        let queueMs = monotonicMilliseconds() - job.queuedAt
        var reused = false
        if let conversation, let transcript, transcript.system == r.system, transcript.visualTokens == r.visualTokens,
           transcript.tokenReducer == r.tokenReducer,
           r.history.count == transcript.messages.count + 1, Array(r.history.dropLast()) == transcript.messages,
           r.images.count >= transcript.images.count, Array(r.images.prefix(transcript.images.count)) == transcript.images {
            reused = conversation.session === session
        }
        let cached = reused ? session.position : 0
        let newImages = reused ? Array(r.images[transcript!.images.count...]) : r.images
        var images: [EncodedImage] = []
        var imageMs = 0.0
        for (i, bytes) in newImages.enumerated() {
            let t0 = monotonicMilliseconds()
            images.append(try encodeImage(bytes, name: "image \(i + 1)", visualTokens: r.visualTokens,
                                          reducer: try TokenReducers.named(r.tokenReducer)))
            imageMs += monotonicMilliseconds() - t0
        }
        let prefill: Conversation.Prefill
        if reused, let conversation {
            prefill = try conversation.add(user: r.history.last!.content, images: images)
        } else {
            transcript = nil
            let fresh = Conversation(session: session, template: template, system: r.system)
            conversation = fresh
            prefill = try fresh.start(history: r.history, images: images)
        }
        let before = images.flatMap(\.crops).map(\.tokensBefore).reduce(0, +)
        let after = images.map(\.tokens).reduce(0, +)
        return JobStarted(promptTokens: session.position, cachedTokens: prefill.wholeConversation ? 0 : cached,
                          prefillTokens: prefill.report.tokens, prefillMs: prefill.report.milliseconds,
                          visualTokensBefore: before, visualTokensAfter: after, imageMs: imageMs, queueMs: queueMs)
    }

    private func encodeImage(_ bytes: Data, name: String, visualTokens: VisualTokens,
                             reducer: any TokenReducer) throws -> EncodedImage {
        guard let vision = session.vision else { throw APIError.badRequest("this server has no vision model (start it with --mmproj)") }
        let image = try ImageDecoder.decode(data: bytes, name: name, options: options.imageDecode)
        return try vision.encode(image, visualTokens: visualTokens, merge: .sum, reducer: reducer)
    }

    /// Library errors as API errors: the request's fault (400), too large (413), or the server's (500).
    static func apiError(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as ContextFull:
            return APIError(HTTPStatus.badRequest, "the conversation needs \(e.needed) positions, the context holds \(e.capacity)",
                            code: "context_length_exceeded")
        case let e as ImageOverLimit: return APIError(HTTPStatus.contentTooLarge, "\(e)", code: "image_too_large")
        case let e as FormatError: return APIError(HTTPStatus.badRequest, "\(e)", code: "invalid_image")
        default: return APIError(HTTPStatus.badRequest, "\(error)")
        }
    }
}

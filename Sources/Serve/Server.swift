import Foundation
import Hummingbird
import Logging
import NIOCore
import VZQRuntime
import VZQSupport

/// Where and how the server listens, and what it accepts.
public struct ServerOptions: Sendable {
    public var host: String
    public var port: Int
    /// Requests (but `GET /` and `GET /health`) must carry `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// Request bodies larger than this are refused (413) before they are read whole.
    public var maxBodyBytes: Int
    public var limits: RequestLimits

    public init(host: String, port: Int, apiKey: String?, maxBodyBytes: Int, limits: RequestLimits) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.maxBodyBytes = maxBodyBytes
        self.limits = limits
    }
}

/// `vzquant serve`: OpenAI's chat-completions API over one resident model, on Hummingbird.
///
///   POST /v1/chat/completions   messages (text, data: URL images) → a completion, or server-sent chunks
///   GET  /v1/models             the model
///   GET  /health                {"status": "ok", …}
///   GET  /metrics               Prometheus text
///   GET  /                      a chat page
public enum ChatServer {
    /// Serves until SIGINT/SIGTERM. `onListening` receives the address once the socket is bound (port 0: the
    /// one the system chose).
    public static func run(engine: Engine, options: ServerOptions, logger: Logger,
                           onListening: @escaping @Sendable (String) -> Void) async throws {
        let router = makeRouter(engine: engine, options: options)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "vzquant"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? options.host):\($0.port ?? options.port)" }
                onListening(address ?? "\(options.host):\(options.port)")
            },
            logger: logger)
        try await app.runService()
    }

    static func makeRouter(engine: Engine, options: ServerOptions) -> Router<BasicRequestContext> {
        let router = Router()
        // Middleware applies to the routes added after it: these two come first.
        router.add(middleware: ErrorMiddleware(metrics: engine.metrics))
        router.add(middleware: APIKeyMiddleware(key: options.apiKey))

        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                     body: .init(byteBuffer: ByteBuffer(string: ChatPage.html)))
        }
        router.get("/health") { _, _ in
            let (waiting, busy) = engine.load
            return json(["status": "ok", "queue": waiting, "busy": busy, "model": engine.modelName])
        }
        router.get("/v1/models") { _, _ in
            json(["object": "list",
                  "data": [["id": engine.modelName, "object": "model", "created": startTime, "owned_by": "vzquant",
                            "meta": ["context_length": engine.contextLength, "vision": engine.acceptsImages]]]])
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: engine.metrics.exposition())))
        }
        router.post("/v1/chat/completions") { request, _ in
            try await chatCompletions(request, engine: engine, options: options)
        }
        return router
    }

    static let startTime = Int(Date().timeIntervalSince1970)

    /// `POST /v1/chat/completions`.
    static func chatCompletions(_ request: Request, engine: Engine, options: ServerOptions) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: options.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(HTTPStatus.contentTooLarge, "the request body is over the server's limit of \(options.maxBodyBytes) bytes (--max-body-bytes)")
        } catch {
            throw APIError(HTTPStatus.badRequest, "the request body could not be read: \(error)")
        }
        let spec = try ChatJobRequest.parse(Data(buffer: body), limits: options.limits)
        let job = try engine.submit(spec)
        let reply = ReplyFormat(id: job.id, model: engine.modelName, created: Int(Date().timeIntervalSince1970))

        let result: Waited
        do {
            result = try await waitForJob(job, spec: spec, reply: reply, request: request)
        } catch let e as APIError {
            // Hummingbird closes the connection after watching it: say so, or keep-alive clients reuse it and fail.
            return ErrorMiddleware.response(e, closing: true)
        }
        if let response = result.response { return response }

        // Streamed: the prefill went well, so the status is 200 and every later event is a chunk. A write that fails
        // (the client went away) cancels the job.
        let started = result.started
        let includeUsage = spec.includeUsage
        let stream = ResponseBody { writer in
            do {
                try await writer.write(reply.sse(reply.chunk(role: "assistant", content: "")))
                for await event in job.output {
                    switch event {
                    case let .text(piece):
                        try await writer.write(reply.sse(reply.chunk(content: piece)))
                    case let .finished(f):
                        try await writer.write(reply.sse(reply.chunk(finishReason: f.finishReason)))
                        if includeUsage { try await writer.write(reply.sse(reply.usageChunk(f, started: started))) }
                    case let .failed(error):
                        try await writer.write(reply.sse(error.body))
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                job.cancel()
                throw error
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", .connection: "close"],
                        body: stream)
    }

    /// Waits for the job's prefill (and, unstreamed, its whole reply); a client that goes away meanwhile cancels it.
    static func waitForJob(_ job: ChatJob, spec: ChatJobRequest, reply: ReplyFormat, request: Request) async throws -> Waited {
        // Hummingbird also reports the inbound side closed when it stops watching it (after the wait): not a cancel.
        let waiting = Flag(true)
        return try await request.body.consumeWithInboundCloseHandler({ _ in
            defer { waiting.set(false) }
            var started: JobStarted?
            for await s in job.started {
                switch s {
                case let .success(value): started = value
                case let .failure(error): throw error
                }
            }
            guard let started else { throw APIError(HTTPStatus.internalError, "the engine ended the request without an answer") }
            if spec.stream { return Waited(started: started, response: nil) }
            for await event in job.output {
                switch event {
                case .text: continue
                case let .finished(f): return Waited(started: started, response: reply.completion(f, started: started))
                case let .failed(error): throw error
                }
            }
            throw APIError(HTTPStatus.internalError, "the engine ended the request without finishing it")
        }, onInboundClosed: { if waiting.value { job.cancel() } })
    }

    struct Waited: Sendable {
        var started: JobStarted
        var response: Response?
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// A Bool shared between tasks.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var state: Bool
    init(_ value: Bool) { state = value }
    var value: Bool { lock.withLock { state } }
    func set(_ value: Bool) { lock.withLock { state = value } }
}

/// Turns every error into OpenAI's error object with its status (a Hummingbird error keeps its status: 404, 405,
/// 413 …), and counts requests for /metrics.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let t0 = monotonicMilliseconds()
        let known = ["/", "/health", "/metrics", "/v1/models", "/v1/chat/completions"]
        let path = known.contains(request.uri.path) ? request.uri.path : "other"
        var response: Response
        do {
            response = try await next(request, context)
        } catch let e as APIError {
            response = Self.response(e)
        } catch let e as HTTPError {
            let message: String
            switch e.status.code {
            case 404: message = "no such endpoint: \(request.method) \(request.uri.path)"
            case 405: message = "\(request.method) is not served at \(request.uri.path)"
            case 413: message = "the request body is over the server's limit (--max-body-bytes)"
            default: message = e.body ?? e.status.reasonPhrase
            }
            response = Self.response(APIError(Int(e.status.code), message))
        } catch is CancellationError {
            response = Self.response(APIError(HTTPStatus.badRequest, "cancelled: the client went away", code: "cancelled"))
        } catch {
            response = Self.response(APIError(HTTPStatus.internalError, "\(error)"))
        }
        metrics.request(path: path, status: Int(response.status.code), seconds: (monotonicMilliseconds() - t0) / 1000)
        return response
    }

    static func response(_ e: APIError, closing: Bool = false) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if closing { headers[.connection] = "close" }
        if let retry = e.retryAfter { headers[.retryAfter] = String(retry) }
        if e.status == HTTPStatus.unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: HTTPResponse.Status(code: e.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: e.body)))
    }
}

/// `--api-key`: every request but the page and the health check carries `Authorization: Bearer KEY`, compared in
/// time that does not depend on where the two differ.
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let key: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let key, !(request.method == .get && ["/", "/health"].contains(request.uri.path)) else {
            return try await next(request, context)
        }
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        let given = header.hasPrefix(prefix) ? String(header.dropFirst(prefix.count)) : ""
        guard Self.equalInConstantTime(given, key) else {
            throw APIError(HTTPStatus.unauthorized, header.isEmpty ? "an API key is needed: Authorization: Bearer KEY" : "the API key is not valid",
                           code: "invalid_api_key")
        }
        return try await next(request, context)
    }

    /// Compares every byte of the longer string, whatever the lengths and contents.
    static func equalInConstantTime(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt64(x.count ^ y.count)
        for i in 0..<max(x.count, y.count) {
            let p: UInt8 = i < x.count ? x[i] : 0
            let q: UInt8 = i < y.count ? y[i] : 0
            diff |= UInt64(p ^ q)
        }
        return diff == 0
    }
}

import ArgumentParser
import Foundation
import Logging
import VZQServe
import VZQuant

/// `vzquant serve -m MODEL.gguf [--mmproj MMPROJ.gguf]`: OpenAI's chat-completions API over HTTP, one resident model.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over HTTP: OpenAI's chat-completions API, a chat page, health and metrics.",
        discussion: """
            POST /v1/chat/completions (messages with text and data: URL images, stream, max_tokens, temperature, \
            top_p, top_k, min_p, seed, stop, and vzquant's visual_tokens), GET /v1/models, GET /health, \
            GET /metrics (Prometheus), GET / (a chat page). One request runs at a time; up to --max-queue wait, \
            more are answered 503. A request that extends the previous conversation prefills only its new message.
            """
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var compute: ComputeOptions

    @Option(name: .long, help: "Address to listen on (0.0.0.0: every interface).")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port (0: any free port, printed at start).")
    var port = 8080

    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' (default: VZQ_API_KEY if set, else none).")
    var apiKey: String?

    @Option(name: .customLong("alias"), help: "Model name in the API (default: the file's name).")
    var alias: String?

    @Option(name: .customLong("chat-template"), help: "Template: \(ChatTemplate.Family.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the file).")
    var chatTemplate: String?

    @Option(name: .customLong("max-queue"), help: "Requests that may wait while one runs; more are answered 503.")
    var maxQueue = 16

    @Option(name: .customLong("max-tokens"), help: "Largest max_tokens a request may ask (and the default).")
    var maxTokens = 1024

    @Option(name: .customLong("max-body-bytes"), help: "Largest request body.")
    var maxBodyBytes = 48 << 20

    @Option(name: .customLong("max-image-bytes"), help: "Largest image (decoded bytes).")
    var maxImageBytes = 32 << 20

    @Option(name: .customLong("max-decode-pixels"), help: "Largest image a request may send (width × height).")
    var maxDecodePixels = 32_000_000

    @Option(name: .customLong("visual-tokens"), help: "Visual tokens per image/crop when a request does not say (a number, or 'all').")
    var visualTokens = String(VisualTokens.defaultBudget)

    @Option(name: .customLong("allow-local-files"), help: "Let requests name local image files (file:// or absolute paths) below this directory.")
    var allowLocalFiles: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0…65535") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be ≥ 0") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be ≥ 1") }
        guard maxBodyBytes >= 1024, maxImageBytes >= 1, maxDecodePixels >= 1 else {
            throw ValidationError("--max-body-bytes must be ≥ 1024 and the image limits ≥ 1")
        }
        do { _ = try VisualTokens(visualTokens) } catch { throw ValidationError("--visual-tokens: \(error)") }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty") }
    }

    func run() async throws {
        try compute.apply()
        let options: ServerOptions
        let engine: Engine
        do {
            var localRoot: String?
            if let dir = allowLocalFiles {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
                    throw ValidationError("--allow-local-files: '\(dir)' is not a directory")
                }
                localRoot = ImageInput.resolvedPath(dir)
            }
            let session = try Session(model: modelOptions.model, mmproj: modelOptions.mmproj, options: modelOptions.sessionOptions)
            let template = try chatTemplate.map { try ChatTemplate(name: $0) } ?? ChatTemplate.detect(metadata: session.metadata)
            let name = alias ?? URL(fileURLWithPath: modelOptions.model).deletingPathExtension().lastPathComponent
            let decode = ImageDecodeOptions(maxPixels: maxDecodePixels, maxFileBytes: maxImageBytes)
            engine = Engine(session: session, template: template, modelName: name,
                            options: .init(maxQueue: maxQueue, imageDecode: decode), metrics: ServerMetrics())
            let key = apiKey ?? ProcessInfo.processInfo.environment["VZQ_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            options = ServerOptions(
                host: host, port: port, apiKey: key, maxBodyBytes: maxBodyBytes,
                limits: RequestLimits(maxTokens: maxTokens, maxImageBytes: maxImageBytes, localFilesRoot: localRoot,
                                      acceptsImages: session.vision != nil, defaultVisualTokens: try VisualTokens(visualTokens)))
            note("vzquant serve · \(name) · template \(template.name) · context \(session.contextLength)"
                 + (session.vision != nil ? " · images" : "") + " · queue \(maxQueue)" + (key != nil ? " · API key required" : ""))
        } catch let e as ValidationError {
            throw e
        } catch {
            fail("\(error)")
        }
        var logger = Logger(label: "vzquant.serve")
        logger.logLevel = .warning
        do {
            try await ChatServer.run(engine: engine, options: options, logger: logger) { address in
                note("listening on http://\(address)")
            }
        } catch {
            fail("cannot serve on \(host):\(port): \(error)")
        }
    }
}

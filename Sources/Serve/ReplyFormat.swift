import Foundation
import Hummingbird
import NIOCore

/// OpenAI's reply objects for one request: `chat.completion`, or the `chat.completion.chunk`s of a stream, with
/// `usage` (plus vzquant's own numbers: visual tokens before and after VisionZip, prefill and decode speed).
struct ReplyFormat: Sendable {
    let id: String
    let model: String
    let created: Int

    func completion(_ f: JobFinished, started: JobStarted) -> Response {
        let body: [String: Any] = [
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [["index": 0, "message": ["role": "assistant", "content": f.text], "logprobs": NSNull(),
                         "finish_reason": f.finishReason]],
            "usage": usage(f, started: started),
        ]
        return Response(status: .ok, headers: [.contentType: "application/json", .connection: "close"],
                        body: .init(byteBuffer: ByteBuffer(bytes: Self.encode(body))))
    }

    /// One streamed chunk: the role first, then text deltas, then the finish reason with an empty delta.
    func chunk(role: String? = nil, content: String? = nil, finishReason: String? = nil) -> Data {
        var delta: [String: Any] = [:]
        if let role { delta["role"] = role }
        if let content { delta["content"] = content }
        return Self.encode([
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [["index": 0, "delta": delta, "logprobs": NSNull(), "finish_reason": finishReason.map { $0 as Any } ?? NSNull()]],
        ])
    }

    /// The last chunk when `stream_options.include_usage` asks: no choices, the usage.
    func usageChunk(_ f: JobFinished, started: JobStarted) -> Data {
        Self.encode(["id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [Any](),
                     "usage": usage(f, started: started)])
    }

    func usage(_ f: JobFinished, started s: JobStarted) -> [String: Any] {
        [
            "prompt_tokens": s.promptTokens,
            "completion_tokens": f.completionTokens,
            "total_tokens": s.promptTokens + f.completionTokens,
            "prompt_tokens_details": ["cached_tokens": s.cachedTokens],
            "vzquant": [
                "prefill_tokens": s.prefillTokens,
                "prefill_ms": Self.rounded(s.prefillMs),
                "prefill_tokens_per_second": Self.rounded(s.prefillMs > 0 ? Double(s.prefillTokens) / s.prefillMs * 1000 : 0),
                "decode_tokens_per_second": Self.rounded(f.decodeTokensPerSecond),
                "visual_tokens_before": s.visualTokensBefore,
                "visual_tokens_after": s.visualTokensAfter,
                "image_ms": Self.rounded(s.imageMs),
                "queue_ms": Self.rounded(s.queueMs),
            ] as [String: Any],
        ]
    }

    /// A server-sent event carrying `data`.
    func sse(_ data: Data) -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(data)
        buffer.writeString("\n\n")
        return buffer
    }

    static func rounded(_ v: Double) -> Double { (v * 100).rounded() / 100 }

    static func encode(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
    }
}

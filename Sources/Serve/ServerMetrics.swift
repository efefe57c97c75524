import Foundation
import Prometheus

/// What `GET /metrics` shows, in Prometheus' text format: requests by status, tokens, the queue, the last
/// prefill and decode speeds and the visual tokens VisionZip saved.
public final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let promptTokens: Counter
    let completionTokens: Counter
    let prefillTokens: Counter
    let cachedTokens: Counter
    let visualTokensBefore: Counter
    let visualTokensSaved: Counter
    let cancelled: Counter
    let failed: Counter
    let queueLength: Gauge
    let prefillSpeed: Gauge
    let decodeSpeed: Gauge
    let requestSeconds: DurationHistogram

    public init() {
        let r = registry
        promptTokens = r.makeCounter(name: "vzquant_prompt_tokens_total", help: "Prompt positions of answered requests (cached and prefilled)")
        completionTokens = r.makeCounter(name: "vzquant_completion_tokens_total", help: "Tokens generated")
        prefillTokens = r.makeCounter(name: "vzquant_prefill_tokens_total", help: "Positions prefilled (text and image rows)")
        cachedTokens = r.makeCounter(name: "vzquant_cached_prompt_tokens_total", help: "Prompt positions reused from the KV cache")
        visualTokensBefore = r.makeCounter(name: "vzquant_visual_tokens_before_total", help: "Visual tokens of request images before VisionZip")
        visualTokensSaved = r.makeCounter(name: "vzquant_visual_tokens_saved_total", help: "Visual tokens VisionZip removed")
        cancelled = r.makeCounter(name: "vzquant_requests_cancelled_total", help: "Requests whose client went away")
        failed = r.makeCounter(name: "vzquant_requests_failed_total", help: "Requests the engine refused or could not finish")
        queueLength = r.makeGauge(name: "vzquant_queue_length", help: "Requests waiting for the model")
        prefillSpeed = r.makeGauge(name: "vzquant_prefill_tokens_per_second", help: "Prefill speed of the last request")
        decodeSpeed = r.makeGauge(name: "vzquant_decode_tokens_per_second", help: "Decode speed of the last request")
        requestSeconds = r.makeDurationHistogram(
            name: "vzquant_request_duration_seconds",
            buckets: [.milliseconds(100), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10),
                      .seconds(30), .seconds(60), .seconds(300)],
            help: "Time from a request's arrival to its last byte")
    }

    /// Counts an answered request by path and status.
    func request(path: String, status: Int, seconds: Double) {
        registry.makeCounter(name: "vzquant_requests_total", labels: [("path", path), ("status", String(status))],
                             help: "HTTP requests answered").increment()
        if path == "/v1/chat/completions" { requestSeconds.record(.nanoseconds(Int64(seconds * 1e9))) }
    }

    func prefilled(_ s: JobStarted) {
        promptTokens.increment(by: Int64(s.promptTokens))
        prefillTokens.increment(by: Int64(s.prefillTokens))
        cachedTokens.increment(by: Int64(s.cachedTokens))
        visualTokensBefore.increment(by: Int64(s.visualTokensBefore))
        visualTokensSaved.increment(by: Int64(max(0, s.visualTokensBefore - s.visualTokensAfter)))
        if s.prefillMs > 0 { prefillSpeed.set(Double(s.prefillTokens) / s.prefillMs * 1000) }
    }

    func finished(_ f: JobFinished) {
        completionTokens.increment(by: Int64(f.completionTokens))
        if f.decodeTokensPerSecond > 0 { decodeSpeed.set(f.decodeTokensPerSecond) }
        if f.cancelled { cancelled.increment() }
    }

    func requestFailed() { failed.increment() }

    /// The text `GET /metrics` returns.
    public func exposition() -> String { registry.emitToString() }
}

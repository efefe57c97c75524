import Foundation
import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// `vzquant run --json`: one object per run, snake_case keys (stable; documented in the README).
public struct RunReport: Encodable, Sendable {
    public struct Timings: Encodable, Sendable {
        public var loadMs = 0.0
        public var imageDecodeMs = 0.0
        public var preprocessMs = 0.0
        public var visionMs = 0.0
        public var visionzipMs = 0.0
        public var projectorMs = 0.0
        public var prefillMs = 0.0
        public var prefillTokensPerS = 0.0
        /// From the start of image work (or of the prefill without images) to the first token.
        public var ttftMs = 0.0
        public var decodeMs = 0.0
        public var decodeTokensPerS = 0.0
        public init() {}

        enum CodingKeys: String, CodingKey {
            case loadMs = "load_ms", imageDecodeMs = "image_decode_ms", preprocessMs = "preprocess_ms"
            case visionMs = "vision_ms", visionzipMs = "visionzip_ms", projectorMs = "projector_ms"
            case prefillMs = "prefill_ms", prefillTokensPerS = "prefill_tokens_per_s", ttftMs = "ttft_ms"
            case decodeMs = "decode_ms", decodeTokensPerS = "decode_tokens_per_s"
        }
    }

    /// VisionZip's choice for one crop; indices count in the encoder's token sequence (0 = CLS when the encoder
    /// has one, then the patches in raster order).
    public struct VisionZipReport: Encodable, Sendable {
        public struct Contextual: Encodable, Sendable {
            public var target: Int
            public var members: [Int]
        }
        public var dominant: [Int]
        public var contextual: [Contextual]
        public var tokensBefore: Int
        public var tokensAfter: Int
        public var rule: String
        public var merge: String
        /// Per-crop reports (AnyRes images; the fields above are the first crop's, the whole image squeezed).
        public var crops: [VisionZipReport]?

        enum CodingKeys: String, CodingKey {
            case dominant, contextual, rule, merge, crops
            case tokensBefore = "tokens_before", tokensAfter = "tokens_after"
        }

        public init(_ s: VisionZip.Selection, merge: VisionZip.Merge) {
            dominant = s.dominant
            contextual = s.contextual.map { Contextual(target: $0.target, members: $0.members) }
            tokensBefore = s.tokensBefore
            tokensAfter = s.tokensAfter
            rule = s.rule.rawValue
            self.merge = merge.rawValue
        }
    }

    public struct Image: Encodable, Sendable {
        public var path: String
        /// Rows this image put into the prompt.
        public var tokens: Int
        /// Encoder tokens of all its crops before VisionZip.
        public var tokensBefore: Int
        public var crops: Int
        /// Nil when VisionZip is off.
        public var visionzip: VisionZipReport?

        enum CodingKeys: String, CodingKey {
            case path, tokens, crops, visionzip
            case tokensBefore = "tokens_before"
        }

        public init(path: String, encoded: EncodedImage) {
            self.path = path
            tokens = encoded.tokens
            tokensBefore = encoded.crops.map(\.tokensBefore).reduce(0, +)
            crops = encoded.crops.count
            let zips = encoded.crops.compactMap { $0.selection.map { VisionZipReport($0, merge: encoded.merge) } }
            if var first = zips.first {
                if zips.count > 1 { first.crops = zips }
                visionzip = first
            }
        }
    }

    public var model: String
    public var mmproj: String?
    public var visualTokens: String?
    public var promptTokens: Int
    public var prefillTokens: Int
    public var images: [Image]
    /// Generated ids (the continuation only; end-of-generation tokens excluded).
    public var tokens: [Int32]
    /// The continuation only.
    public var text: String
    public var stopReason: String
    public var threads: Int
    public var kernel: String
    public var timings: Timings

    enum CodingKeys: String, CodingKey {
        case model, mmproj, images, tokens, text, threads, kernel, timings
        case visualTokens = "visual_tokens", promptTokens = "prompt_tokens", prefillTokens = "prefill_tokens"
        case stopReason = "stop_reason"
    }

    public init(model: String, mmproj: String?, visualTokens: String?, promptTokens: Int, prefillTokens: Int,
                images: [Image], tokens: [Int32], text: String, stopReason: StopReason, timings: Timings) {
        self.model = model
        self.mmproj = mmproj
        self.visualTokens = visualTokens
        self.promptTokens = promptTokens
        self.prefillTokens = prefillTokens
        self.images = images
        self.tokens = tokens
        self.text = text
        self.stopReason = stopReason.rawValue
        threads = Threads.count
        kernel = Kernel.current.description
        self.timings = timings
    }

    public func json() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(self), as: UTF8.self)
    }
}

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

/// How a session sizes its model.
public struct SessionOptions: Sendable {
    /// Positions the KV cache holds; nil: the model's context length, capped at `defaultContextCap`.
    public var contextLength: Int?
    /// Rows per prefill step (the arena is planned for this many).
    public var batch: Int = 256
    /// F16 by default, as llama.cpp: half the memory of F32, within the int8 activations' own noise (SmolLM2Tests).
    public var kvCache: KVCacheType = .f16
    /// nil: `VZQ_WIDEN_F32`.
    public var widenToF32: Bool?
    public var imageOptions = ImageDecodeOptions()
    /// A bound on an image's resized area below the mmproj's (Qwen2-VL's max_pixels; `--max-image-pixels`).
    public var maxImagePixels: Int?

    /// A KV cache for 2048 positions of a 7B model is already 2 GiB in f32 (1 GiB in f16): boards want no more
    /// unless they ask (it is reserved up front; pages count only once used).
    public static let defaultContextCap = 2048

    public init(contextLength: Int? = nil, batch: Int = 256, kvCache: KVCacheType = .f16, widenToF32: Bool? = nil) {
        self.contextLength = contextLength
        self.batch = batch
        self.kvCache = kvCache
        self.widenToF32 = widenToF32
    }
}

/// One piece of a prompt: text (special tokens written in it are parsed), token ids, or an encoded image.
public enum PromptPiece: Sendable {
    case text(String)
    case tokens([Int32])
    case image(EncodedImage)

    /// Splits `text` at every `marker`, putting the images in order where the markers stood.
    public static func splice(_ text: String, images: [EncodedImage], marker: String = "<image>") throws -> [PromptPiece] {
        let parts = text.components(separatedBy: marker)
        guard parts.count - 1 == images.count else {
            throw ModelError("the prompt has \(parts.count - 1) image marker(s) '\(marker)' for \(images.count) image(s)")
        }
        var pieces: [PromptPiece] = []
        for (i, part) in parts.enumerated() {
            if !part.isEmpty { pieces.append(.text(part)) }
            if i < images.count { pieces.append(.image(images[i])) }
        }
        return pieces
    }
}

/// What one prefill did.
public struct PrefillReport: Sendable {
    public var tokens: Int
    public var imageTokens: Int
    public var milliseconds: Double
    /// The rows' (temporal, height, width) rotary positions [tokens · 3] when the decoder takes multimodal
    /// positions (Qwen2-VL's M-RoPE); nil otherwise.
    public var ropePositions: [Int32]? = nil
    public var tokensPerSecond: Double { milliseconds > 0 ? Double(tokens) / milliseconds * 1000 : 0 }
}

/// A loaded model (text GGUF, optional mmproj) and its conversation state: the KV cache keeps every position
/// prefilled or generated so far, so later turns only add their new tokens.
public final class Session {
    public let model: any LanguageModel
    public let tokenizer: Tokenizer
    public let vision: VisionPipeline?
    public let metadata: GGUFMetadata
    public let modelPath: String
    /// Token ids in the cache, image rows as -1 (for reports and re-tokenizing nothing).
    public private(set) var history: [Int32] = []
    /// Logits after the last prefilled or decoded row [vocab].
    public private(set) var lastLogits: [Float] = []
    public let loadMs: Double

    public init(model path: String, mmproj: String? = nil, options: SessionOptions = .init()) throws {
        let t0 = monotonicMilliseconds()
        let file = try GGUFFile(path: path)
        metadata = file.metadata
        modelPath = path
        tokenizer = try Tokenizer(gguf: file)
        let arch = try file.metadata.string(GGUFKey.General.architecture)
        let trained = try file.metadata.int("\(arch).context_length", default: 2048)
        let context = options.contextLength ?? min(trained, SessionOptions.defaultContextCap)
        guard Limits.context.contains(context) else {
            throw ModelError("a context length of \(context) positions is outside \(Limits.describe(Limits.context))")
        }
        model = try LanguageModels.load(file, LanguageModelOptions(maxContext: context, maxBatch: options.batch,
                                                                   widenToF32: options.widenToF32, kvCache: options.kvCache))
        vision = try mmproj.map { try VisionPipeline(path: $0, maxImagePixels: options.maxImagePixels) }
        if let vision, vision.outputWidth != model.hidden {
            throw ModelError("\(mmproj!): the projector makes rows of \(vision.outputWidth), the language model takes \(model.hidden)")
        }
        loadMs = monotonicMilliseconds() - t0
    }

    public var contextLength: Int { model.maxContext }
    public var position: Int { model.position }

    /// Empties the KV cache (a new conversation).
    public func reset() {
        model.reset()
        history.removeAll()
        lastLogits.removeAll()
    }

    /// Drops the cache's positions from `p` on (e.g. the tokens of a stop string). The logits are then stale
    /// until the next prefill or decode.
    public func truncate(to p: Int) {
        guard p < position else { return }
        model.truncate(to: p)
        history.removeSubrange(p...)
        lastLogits.removeAll()
    }

    /// Decodes and encodes an image file (nil mmproj: an error naming --mmproj). `keepCrops`: keep the processed
    /// crops in the result (for `--visionzip-map`).
    public func encodeImage(path: String, visualTokens: VisualTokens, merge: VisionZip.Merge = .sum,
                            reducer: any TokenReducer = VisionZipReducer(), options: ImageDecodeOptions = .init(),
                            keepCrops: Bool = false) throws -> (EncodedImage, decodeMs: Double) {
        guard let vision else { throw ModelError("\(path): images need a vision file (an mmproj GGUF with the tower and projector)") }
        let t0 = monotonicMilliseconds()
        let image = try ImageDecoder.decode(file: path, options: options)
        let decodeMs = monotonicMilliseconds() - t0
        return (try vision.encode(image, visualTokens: visualTokens, merge: merge, reducer: reducer,
                                   keepCrops: keepCrops), decodeMs)
    }

    /// Token ids of a text piece (special tokens written in it are recognised; no BOS).
    /// `continuing`: the text follows earlier text or image rows of the same prompt (no first-only space prefix).
    public func tokenize(_ text: String, continuing: Bool = false) -> [Int32] {
        tokenizer.encode(text, addSpecial: false, parseSpecial: true, continuing: continuing)
    }

    /// Prefills `pieces` after what the cache holds. `addBOS`: prepend BOS when the file says so (first turn only).
    @discardableResult
    public func prefill(_ pieces: [PromptPiece], addBOS: Bool) throws -> PrefillReport {
        let d = model.hidden
        var rows: [Float] = []
        var ids: [Int32] = []
        var imageTokens = 0
        // Multimodal positions (Qwen2-VL): text rows advance all three streams together; an image's rows sit at
        // start + (0, row, column), and what follows continues one past the largest.
        let multimodal = model.usesMultimodalPositions
        var positions: [Int32] = []
        var next = model.ropePosition
        func textPositions(_ count: Int) {
            guard multimodal else { return }
            for _ in 0..<count { positions += [Int32(next), Int32(next), Int32(next)]; next += 1 }
        }
        // The prompt is one text as far as the tokenizer is concerned: only its very start (not a later turn, not
        // the text after an image) gets a first-only space prefix. BOS is not part of the text.
        var continuing = position > 0
        func flushText(_ t: [Int32]) throws {
            guard !t.isEmpty else { return }
            rows += try model.embeddings(t)
            ids += t
            textPositions(t.count)
        }
        func flushText(_ s: String) throws {
            guard !s.isEmpty else { return }
            try flushText(tokenize(s, continuing: continuing))
            continuing = true
        }
        if addBOS, tokenizer.addBOS, let bos = tokenizer.bos { try flushText([bos]) }
        for p in pieces {
            switch p {
            case let .text(s): try flushText(s)
            case let .tokens(t):
                try flushText(t)
                continuing = continuing || !t.isEmpty
            case let .image(img):
                guard img.embeddings.count == img.tokens * d else {
                    throw ModelError("image rows have width \(img.embeddings.count / max(img.tokens, 1)), the model takes \(d)")
                }
                // The family's layout: rows (a crop's, or a range of the image's), with its text around them.
                var start = [0]
                for c in img.crops { start.append(start.last! + c.tokensAfter) }
                if let grid = img.gridPositions, grid.count != 2 * img.tokens {
                    throw ModelError("image has \(grid.count / 2) grid positions for \(img.tokens) rows")
                }
                func splice(_ r: Range<Int>) {
                    continuing = true
                    rows += img.embeddings[(r.lowerBound * d)..<(r.upperBound * d)]
                    ids += [Int32](repeating: -1, count: r.count)
                    imageTokens += r.count
                    guard multimodal else { return }
                    guard let grid = img.gridPositions else { return textPositions(r.count) }
                    let base = next
                    for k in r {
                        let (row, column) = (Int(grid[2 * k]), Int(grid[2 * k + 1]))
                        positions += [Int32(base), Int32(base + row), Int32(base + column)]
                        next = max(next, base + max(row, column) + 1)
                    }
                    // Pruned rows keep their places: what follows sits where it would after the whole image.
                    if let span = img.positionSpan { next = max(next, base + span) }
                }
                for piece in img.layout.mergingText {
                    switch piece {
                    case let .text(s): try flushText(s)
                    case let .crop(i):
                        guard start.last == img.tokens else { throw ModelError("image crops hold \(start.last!) rows, the image \(img.tokens)") }
                        guard img.crops.indices.contains(i) else { throw ModelError("image layout names crop \(i) of \(img.crops.count)") }
                        splice(start[i]..<start[i + 1])
                    case let .rows(r):
                        guard r.lowerBound >= 0, r.upperBound <= img.tokens else {
                            throw ModelError("image layout names rows \(r) of \(img.tokens)")
                        }
                        splice(r)
                    }
                }
            }
        }
        let n = ids.count
        guard n > 0 || position > 0 else {
            throw ModelError("the prompt is empty: it gives no tokens to generate from (this model adds no BOS token)")
        }
        guard n > 0 else { return PrefillReport(tokens: 0, imageTokens: 0, milliseconds: 0) }
        guard position + n <= contextLength else {
            throw ContextFull(needed: position + n, capacity: contextLength)
        }
        let t0 = monotonicMilliseconds()
        lastLogits = try model.prefill(embeddings: rows, positions: multimodal ? positions : nil, lastOnly: true)
        let ms = monotonicMilliseconds() - t0
        history += ids
        return PrefillReport(tokens: n, imageTokens: imageTokens, milliseconds: ms, ropePositions: multimodal ? positions : nil)
    }

    /// One generated token in, its logits kept for the next sampling step.
    public func decode(_ token: Int32) throws {
        guard position < contextLength else { throw ContextFull(needed: position + 1, capacity: contextLength) }
        let logits = try model.decode(token: token)
        // Reuse the buffer: nothing is allocated per token.
        if lastLogits.count == logits.count {
            lastLogits.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: logits) }
        } else {
            lastLogits = Array(logits)
        }
        history.append(token)
    }
}

/// The KV cache cannot take the next rows.
public struct ContextFull: Error, CustomStringConvertible {
    public let needed: Int
    public let capacity: Int
    public var description: String {
        "context full: \(needed) positions needed, the cache holds \(capacity)"
    }
}

import CQuant
import Foundation
import VZQRuntime
import VZQConvert
import VZQTokenReduction
import VZQText
import VZQModels
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport

/// What `vzquant bench model` measures.
public struct ModelBenchOptions: Sendable {
    public var model: String
    public var mmproj: String?
    /// Image file; nil with an mmproj: `ModelBench.syntheticImage` (no decode time then).
    public var image: String?
    /// One row per entry (ignored without an mmproj). Empty: `ModelBench.defaultBudgets` for the encoder.
    public var visualTokens: [VisualTokens] = []
    /// Text tokens of the prompt (BOS included when the tokenizer adds one).
    public var promptTokens: Int
    /// Tokens generated greedily after the prefill (0: prefill only, like llama-bench's pp).
    public var genTokens: Int
    public var repetitions = 3
    public var warmupRuns = 1
    public var kvCache: KVCacheType = .f16
    public var batch = 256
    public var merge: VisionZip.Merge = .sum
    /// Token reducers by name; each budget other than "all" gets one row per reducer.
    public var reducers: [String] = ["visionzip"]
    /// Label of the row group (ratios compare rows with the same setting).
    public var setting = ""
    /// Qwen2-VL / Qwen2.5-VL: a lower max_pixels than the mmproj's (`--max-image-pixels`).
    public var maxImagePixels: Int?

    public init(model: String, mmproj: String? = nil, image: String? = nil, promptTokens: Int? = nil, genTokens: Int = 16) {
        self.model = model
        self.mmproj = mmproj
        self.image = image
        self.promptTokens = promptTokens ?? (mmproj == nil ? 512 : 20)
        self.genTokens = genTokens
    }
}

/// The measuring loop: for each visual-token budget, a fresh session (so peak RSS and the KV cache are those of
/// that budget alone: the cache is planned for exactly prompt + visual + generated tokens), a warm-up run, then
/// timed repetitions of image → encoder → VisionZip → projector → prefill → first token → decode.
public enum ModelBench {
    /// The rows, and whether peak RSS could be reset before each (else a row's peak includes earlier rows').
    public static func run(_ o: ModelBenchOptions, progress: BenchProgress? = nil) throws -> (rows: [ModelBenchRow], peakRSSPerRow: Bool) {
        guard o.promptTokens >= 1 else { throw BenchReportError("the prompt needs at least 1 token (got \(o.promptTokens))") }
        guard o.genTokens >= 0, o.repetitions >= 1, o.warmupRuns >= 0 else {
            throw BenchReportError("generated tokens must be ≥ 0 and repetitions ≥ 1 (got \(o.genTokens), \(o.repetitions))")
        }
        let picture: RGBImage? = o.mmproj == nil ? nil : try o.image.map { try ImageDecoder.decode(file: $0) } ?? syntheticImage()
        // Visual tokens per budget, to size each row's cache exactly (the pipeline is loaded once for this).
        let reducers = try o.reducers.map { try TokenReducers.named($0) }
        guard !reducers.isEmpty else { throw BenchReportError("no token reducer to measure") }
        var budgets: [(VisualTokens?, Int)] = [(nil, 0)]
        if let mmproj = o.mmproj, let picture {
            progress?.step("planning")
            let vision = try VisionPipeline(path: mmproj, maxImagePixels: o.maxImagePixels)
            let list = o.visualTokens.isEmpty ? try defaultBudgets(tokensPerCrop: vision.tokensPerCrop(for: picture)) : o.visualTokens
            // The family's layout text (tile markers) takes cache positions too.
            let tokenizer = try Tokenizer(gguf: GGUFFile(path: o.model))
            let count: (String) -> Int = { tokenizer.encode($0, addSpecial: false, parseSpecial: true).count }
            budgets = list.map { ($0, vision.tokens(for: picture, visualTokens: $0, countText: count)) }
        }
        var rows: [ModelBenchRow] = []
        var peakPerRow = true
        for (budget, visual) in budgets {
            let rowReducers: [(any TokenReducer)?] = budget == nil || budget == .all ? [nil] : reducers
            for reducer in rowReducers {
                // Freed memory of the previous row goes back to the system, or "RSS before load" would grow row by row.
                cq_release_free_memory()
                peakPerRow = MemoryProbe.resetPeak() && peakPerRow
                rows.append(try row(o, budget: budget, reducer: reducer, visualTokens: visual, picture: picture,
                                    progress: progress))
            }
        }
        return (rows, peakPerRow)
    }

    /// VisionZip off, then the paper's LLaVA-1.5 budgets scaled to the encoder: T/3, 2T/9 and T/9 of the T tokens a
    /// crop gives (576 → 192, 128, 64; SmolVLM's 64 → 21, 14, 7; Qwen2.5-VL's 1024×768 picture: 999 → 333, 222, 111).
    public static func defaultBudgets(tokensPerCrop t: Int) throws -> [VisualTokens] {
        let sizes = [t / 3, 2 * t / 9, t / 9].map { max($0, 1) }
        var out: [VisualTokens] = [.all]
        for n in sizes where !out.contains(.budget(try .split(visualTokens: n))) { out.append(.budget(try .split(visualTokens: n))) }
        return out
    }

    /// A deterministic 1024×768 test picture (smooth gradients, edges and texture), so a run needs no file;
    /// AnyRes models cut it into their 2×2 grid plus the overview.
    public static func syntheticImage(width: Int = 1024, height: Int = 768) -> RGBImage {
        var img = RGBImage(width: width, height: height, fill: (0, 0, 0))
        var rng = SeededRandom(seed: 42)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 3
                let disc = (x - width / 3) * (x - width / 3) + (y - height / 2) * (y - height / 2) < (height / 4) * (height / 4)
                let stripes = (x / 32 + y / 48) % 2 == 0
                let noise = Int(rng.next() % 24)
                img.pixels[i] = UInt8(clamping: (disc ? 220 : x * 255 / width) + noise / 2)
                img.pixels[i + 1] = UInt8(clamping: (stripes ? 160 : 60) + noise)
                img.pixels[i + 2] = UInt8(clamping: y * 255 / height - noise / 2)
            }
        }
        return img
    }

    /// `count` token ids of ordinary English text (BOS first when the tokenizer adds one).
    static func promptIds(_ tokenizer: Tokenizer, count: Int) -> [Int32] {
        let paragraph = " Describe the picture in detail: the objects, their colours and positions, any text, and what"
            + " is probably happening. Then answer the question about it as briefly as you can, in one sentence."
        var ids: [Int32] = []
        if tokenizer.addBOS, let bos = tokenizer.bos { ids.append(bos) }
        let chunk = tokenizer.encode(paragraph, addSpecial: false)
        guard !chunk.isEmpty else { return ids + [Int32](repeating: 0, count: count - ids.count) }
        while ids.count < count { ids += chunk }
        return Array(ids.prefix(count))
    }

    private static func row(_ o: ModelBenchOptions, budget: VisualTokens?, reducer: (any TokenReducer)?,
                            visualTokens visualCount: Int, picture: RGBImage?,
                            progress: BenchProgress?) throws -> ModelBenchRow {
        let label = budget.map { "visual tokens \($0)" + (reducer.map { " \($0.name)" } ?? "") } ?? "text"
        progress?.step("\(label): loading")
        let rssBefore = MemoryProbe.rssBytes()
        var samples = PhaseSamples()
        // The cache holds exactly this row's prompt + visual tokens + generated tokens.
        let context = o.promptTokens + visualCount + max(o.genTokens, 1)
        let t0 = monotonicMilliseconds()
        var sessionOptions = SessionOptions(contextLength: context, batch: o.batch, kvCache: o.kvCache)
        sessionOptions.maxImagePixels = o.maxImagePixels
        let session = try Session(model: o.model, mmproj: o.mmproj, options: sessionOptions)
        samples.load = [monotonicMilliseconds() - t0]
        let tokenizer = session.tokenizer
        let prompt = promptIds(tokenizer, count: o.promptTokens)
        let conversation = Conversation(session: session, template: nil)

        var last: EncodedImage?
        for rep in 0 ..< o.warmupRuns + o.repetitions {
            let timed = rep >= o.warmupRuns
            progress?.step("\(label): " + (timed ? "repetition \(rep - o.warmupRuns + 1)/\(o.repetitions)" : "warm-up"))
            conversation.reset()
            let start = monotonicMilliseconds()
            var pieces: [PromptPiece] = []
            var imageMs = 0.0
            if let picture, let vision = session.vision, let budget {
                var image = picture
                if let path = o.image {
                    let d0 = monotonicMilliseconds()
                    image = try ImageDecoder.decode(file: path)
                    imageMs += monotonicMilliseconds() - d0
                }
                let encoded = try vision.encode(image, visualTokens: budget, merge: o.merge,
                                                reducer: reducer ?? VisionZipReducer())
                imageMs += encoded.timings.preprocessMs
                if timed {
                    samples.image.append(imageMs)
                    samples.vision.append(encoded.timings.visionMs)
                    samples.visionZip.append(encoded.timings.visionZipMs)
                    samples.projector.append(encoded.timings.projectorMs)
                }
                // BOS (if any), the image, then the text: where LLaVA-style prompts put it.
                let bos = prompt.first.map { tokenizer.addBOS && $0 == tokenizer.bos } ?? false
                pieces = bos ? [.tokens([prompt[0]]), .image(encoded), .tokens(Array(prompt.dropFirst()))]
                             : [.image(encoded), .tokens(prompt)]
                last = encoded
            } else {
                pieces = [.tokens(prompt)]
            }
            let prefill = try conversation.add(pieces: pieces).report
            var ttft: Double?
            let gen = try conversation.generate(
                maxTokens: max(o.genTokens, 1), stopTokens: [], keepInCache: false,
                sample: { logits, _ in
                    let token = greedy(logits)
                    if ttft == nil { ttft = monotonicMilliseconds() - start }
                    return token
                }).report
            if timed {
                samples.prefill.append(prefill.milliseconds)
                samples.ttft.append(ttft ?? 0)
                if o.genTokens > 1 { samples.decode.append(gen.decodeMs) }
            }
        }

        let model = session.model
        let visionWeights = (session.vision?.encoder.weightBytes ?? 0) + (session.vision?.projector.weightBytes ?? 0)
        let visionScratch = (session.vision?.encoder.scratchBytes ?? 0) + (session.vision?.projector.scratchBytes ?? 0)
        let memory = BenchMemory(weightBytes: model.weightBytes + visionWeights, kvBytes: model.kvCacheBytes,
                                 scratchBytes: model.arenaBytes - model.kvCacheBytes + visionScratch,
                                 peakRSSBytes: MemoryProbe.peakRSSBytes(), rssBeforeLoadBytes: rssBefore)
        let mainType = model.weightTypes.max { $0.value < $1.value }?.key.description ?? "?"
        var split: VisionZip.Budget?
        if case let .budget(b)? = budget { split = reducer?.keptSplit(for: b) ?? b }
        let cropCount = last?.crops.count ?? 0
        return try ModelBenchRow(
            setting: o.setting, visualTokens: budget.flatMap { BenchVisualTokens($0.description) },
            type: mainType, kernel: Kernel.current.description, threads: Threads.count,
            weightsMapping: "repacked", promptTokens: o.promptTokens, prefillTokens: o.promptTokens + (last?.tokens ?? 0),
            genTokens: o.genTokens, decodeTokens: max(o.genTokens - 1, 0), images: last == nil ? 0 : 1, crops: cropCount,
            tokensBefore: last.map { $0.crops.map(\.tokensBefore).reduce(0, +) },
            dominantTokens: split.map { $0.dominant }, contextualTokens: split.map { $0.contextual },
            tokenReducer: reducer?.name,
            samples: samples, memory: memory)
    }

    /// Argmax, ties to the lowest id.
    static func greedy(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        for i in 1 ..< logits.count where logits[i] > logits[best] { best = i }
        return Int32(best)
    }
}

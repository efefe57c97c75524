// gguf: a GGUF file as `vzquant run/chat/bench` opens it (model or mmproj).
//
// The input is parsed from an exact-size heap copy (AddressSanitizer sees any read past the end); every tensor's
// bytes are touched and converted to fp32, every metadata key read through each typed getter. Then what the
// model constructors read: LlamaConfig, VisionConfig, the tokenizer (encode/decode with special tokens, text
// stream) and the chat template. A small file is then built into the model itself: LlamaModel (context 8,
// batch 2; prefill, decode, sampling) or VisionPipeline (a tiny synthetic image encoded, with and without
// VisionZip). The size gates keep one execution in the milliseconds: compute grows with the tensors present.
import Foundation

func fuzzGGUF(_ bytes: UnsafeBufferPointer<UInt8>) {
    guard let f = try? GGUFFile(mapping: MappedFile(copying: bytes, name: "fuzz.gguf")) else { return }
    trace("gguf: \(f.tensors.count) tensors, \(f.metadata.count) keys")
    let salt = inputSalt(bytes)
    var tensorBytes = 0, elements = 0
    for t in f.tensors {
        let b = f.bytes(of: t)
        if let first = b.first, let last = b.last { blackHole(first &+ last) }
        // Conversion allocates elementCount floats: keep it to what a small input can hold.
        if t.elementCount <= 1 << 18 { _ = try? f.floats(of: t.name) }
        tensorBytes = tensorBytes.addingReportingOverflow(t.byteCount).overflow ? .max : tensorBytes + t.byteCount
        elements = elements.addingReportingOverflow(t.elementCount).overflow ? .max : elements + t.elementCount
        blackHole(t.description)
    }
    let m = f.metadata
    // Every getter on every key for one input in four (type-mismatch errors are cheap paths but costly strings).
    for key in m.keys where salt & 3 == 0 {
        _ = try? m.string(key)
        _ = try? m.int(key)
        _ = try? m.float(key)
        _ = try? m.double(key)
        _ = try? m.bool(key)
        _ = try? m.ints(key)
        _ = try? m.floats(key)
        _ = try? m.floats(key, finiteOnly: false)
        _ = try? m.strings(key)
        _ = try? m.int(key, in: Limits.width)
        _ = try? m.float(key, in: Limits.epsilon)
        _ = try? m.ints(key, in: Limits.heads)
        blackHole(m[key]?.description.count ?? 0)
        blackHole(m[key]?.intValue ?? 0)
        blackHole(m[key]?.doubleValue ?? 0)
    }

    // What Session / VisionPipeline read before anything is sized.
    let llama = try? LlamaConfig(metadata: m)
    let vision = try? VisionConfig(metadata: m)
    let tokenizer = try? Tokenizer(gguf: f)
    let template = try? ChatTemplate.detect(metadata: m)
    trace("llama config \(llama != nil), vision config \(vision != nil), tokenizer \(tokenizer?.count ?? -1), template \(template?.name ?? "-")")
    var prompt = "Hello, wörld! <image>\n  12 345 don't\t😀"
    if let template {
        let turn: [ChatMessage] = [.system("Be brief."), .user("<image>\nWhat is this?"), .assistant("A cat."), .user("And?")]
        if let text = try? template.render(turn, addGenerationPrompt: true) { prompt = text }
        blackHole(template.stopStrings)
    }
    var ids: [Int32] = []
    if let tokenizer {
        var text = prompt
        // The vocabulary's own special tokens written into the text (parseSpecial matches them).
        var added = 0
        for (i, type) in tokenizer.types.enumerated() where type == .control || type == .userDefined {
            text += tokenizer.tokens[i]
            added += 1
            if added == 8 { break }
        }
        ids = tokenizer.encode(text, addSpecial: true, parseSpecial: true)
        let plain = tokenizer.encode(text, addSpecial: false, parseSpecial: false)
        blackHole(tokenizer.decode(ids))
        blackHole(tokenizer.decode(plain, skipSpecial: true))
        var stream = TextStream(tokenizer: tokenizer, stopStrings: template?.stopStrings ?? [], skipSpecial: salt & 1 == 0)
        for id in ids.prefix(24) { blackHole(stream.push(id)) }
        blackHole(stream.push(Int32(tokenizer.count)))  // one past the vocabulary: a model may have more rows
        blackHole(stream.finish())
        _ = try? PromptPiece.splice(text, images: [])
        trace("encoded \(ids.count) ids")
    }

    // Build the model only when its compute stays small.
    guard bytes.count <= 1 << 20, tensorBytes <= 4 << 20, elements <= 2 << 20 else {
        trace("too large to build (\(tensorBytes) tensor bytes, \(elements) elements)")
        return
    }
    if llama != nil { runLlama(f, ids: ids, salt: salt) }
    if let vision { runVision(f, vision, salt: salt) }
}

private func runLlama(_ f: GGUFFile, ids: [Int32], salt: Int) {
    let built = Result { try LlamaModel(file: f, maxContext: 8, maxBatch: 2, widenToF32: salt & 2 != 0, kvCache: salt & 4 != 0 ? .f16 : .f32) }
    if case let .failure(e) = built { trace("llama model: \(e)") }
    guard let model = try? built.get() else { return }
    trace("llama model: vocab \(model.vocab), \(model.weightTypes)")
    blackHole(model.arenaBytes &+ model.kvCacheBytes &+ model.weightBytes &+ model.weightTypes.count)
    let vocab = model.vocab
    guard vocab > 0 else {
        _ = try? model.prefill(tokens: [0])
        return
    }
    let prompt = (ids.isEmpty ? [1, 2] : Array(ids.prefix(2))).map { Int32(Int(UInt32(bitPattern: $0)) % vocab) }
    guard let logits = try? model.prefill(tokens: prompt), logits.count >= vocab else { return }
    var greedy = try! Sampler(.greedy)
    let next = logits.withUnsafeBufferPointer { greedy.sample(logits: UnsafeBufferPointer(rebasing: $0.suffix(vocab)), history: prompt) }
    guard let step = try? model.decode(token: next) else { return }
    trace("prefill + decode ok")
    var sampler = try! Sampler(SamplingParameters(temperature: 0.8, topK: 5, topP: 0.9, minP: 0.05, repeatPenalty: 1.1,
                                                  repeatLastN: 8, seed: UInt64(salt)))
    blackHole(sampler.sample(logits: step, history: prompt + [next]))
    // Out of the vocabulary, then a prompt prefilled by embeddings (last row only), then past the context.
    _ = try? model.decode(token: Int32(clamping: vocab))
    model.reset()
    if let rows = try? model.embeddings([next]) { _ = try? model.prefill(embeddings: rows, lastOnly: true) }
    _ = try? model.prefill(tokens: [Int32](repeating: 0, count: 8))
}

private func runVision(_ f: GGUFFile, _ c: VisionConfig, salt: Int) {
    let built = Result { try VisionPipeline(file: f) }
    if case let .failure(e) = built { trace("vision pipeline: \(e)") }
    guard let pipe = try? built.get() else { return }
    let sizes = [(12, 9), (9, 12), (8, 8), (33, 5)]
    let (w, h) = sizes[salt % sizes.count]
    var pixels = [UInt8](repeating: 0, count: w * h * 3)
    for i in pixels.indices { pixels[i] = UInt8(truncatingIfNeeded: i &* 37 &+ salt) }
    let image = RGBImage(width: w, height: h, pixels: pixels)
    let budget = try? VisionZip.Budget.split(visualTokens: 1 + salt % 7)
    let visual: VisualTokens = salt & 8 != 0 || budget == nil ? .all : .budget(budget!)
    let merge: VisionZip.Merge = salt & 16 != 0 ? .mean : .sum
    blackHole(pipe.tokensPerCrop &+ pipe.outputWidth &+ pipe.tokens(for: image, visualTokens: visual))

    // Cost of one crop: blocks × (per-token GEMMs + attention) + the patch embedding, for `tokens` tokens.
    func cost(tokens: Int) -> Int? {
        let d = c.hidden, ff = c.feedForward
        let perToken = c.blockCount.multipliedReportingOverflow(by: 4 * d * d + 2 * d * ff + tokens * d)
        guard !perToken.overflow else { return nil }
        let perCrop = tokens.multipliedReportingOverflow(by: perToken.partialValue + c.patchValues * d)
        return perCrop.overflow ? nil : perCrop.partialValue
    }
    let (oh, ow) = pipe.processor.outputSize
    let p = max(c.patchSize, 1)
    if oh * ow <= 64 * 64 {
        // The whole pipeline: crops, preprocessing, tower, VisionZip, projector.
        let crops = pipe.cropCount(width: w, height: h)
        guard crops <= 32, let pc = cost(tokens: (oh / p) * (ow / p) + 1), crops * pc <= 4_000_000 else { return }
        trace("vision pipeline: \(crops) crops, cost \(crops * pc)")
        let encoded = try? pipe.encode(image, visualTokens: visual, merge: merge, keepCrops: salt & 32 != 0)
        trace("encoded image: \(encoded?.tokens ?? -1) tokens (\(visual))")
    } else {
        // A processor of large output (DINOv2's 224 px): resizing alone would dominate, so the tower runs on
        // pixels at its native size (and, for DINOv2, a non-square size that resizes its position grid).
        let side = c.imageSize
        guard side * side <= 64 * 64, let pc = cost(tokens: (side / p) * (side / p) + 1), pc <= 2_000_000 else { return }
        var shapes = [(side, side)]
        if c.family == .dinov2 { shapes.append((side + p, max(p, side - p))) }
        for (ih, iw) in shapes {
            let values = (0 ..< 3 * ih * iw).map { Float(($0 &* 31 &+ salt) % 255) / 127 - 1 }
            let out = try? pipe.encoder(pixels: values, height: ih, width: iw)
            if let out { _ = try? pipe.projector(features: out.features) }
            trace("tower on \(ih)×\(iw) pixels: \(out?.features.count ?? -1) values")
        }
    }
}

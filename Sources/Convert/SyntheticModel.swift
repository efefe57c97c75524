#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CQuant
import Dispatch
import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport

/// One tensor of a synthetic file: its GGUF name, dims (innermost first), type and how its values are drawn.
public struct SyntheticTensor: Sendable, Equatable {
    public enum Fill: Sendable, Equatable {
        /// Norm weights.
        case ones
        /// Random values of about this standard deviation (uniform codes; quantized types get a per-block scale).
        case random(std: Float)
    }

    public var name: String
    public var dims: [Int]
    public var type: QuantType
    public var fill: Fill

    public var elements: Int { dims.reduce(1, *) }
    public var rowLength: Int { dims.first ?? 1 }
    public var rows: Int { rowLength == 0 ? 0 : elements / rowLength }
    /// Bytes of one row in `type` (the planner only picks types whose block divides the row).
    public var rowBytes: Int { type.rowBytes(rowLength) ?? 0 }
    public var byteCount: Int { rowBytes * rows }
}

/// One output file: its metadata (the converter's keys) and tensors, in writing order.
public struct SyntheticFile: Sendable {
    public enum Role: String, Sendable { case text, mmproj }
    public var role: Role
    public var metadata: [(key: String, value: GGUFValue)]
    public var tensors: [SyntheticTensor]

    public var parameters: Int { tensors.map(\.elements).reduce(0, +) }
    public var tensorBytes: Int { tensors.map(\.byteCount).reduce(0, +) }
}

/// Everything `SyntheticModel.write` would write, computed without writing (sizes, counts, metadata).
public struct SyntheticPlan: Sendable {
    public var preset: ModelPreset
    public var policy: TypePolicy
    public var text: SyntheticFile
    public var mmproj: SyntheticFile

    public var parameters: Int { text.parameters + mmproj.parameters }
    public var tensorBytes: Int { text.tensorBytes + mmproj.tensorBytes }
}

public struct SyntheticSummary: Sendable {
    public var files: [ConvertFileSummary]
    public var parameters: Int
    public var seconds: Double
    public var peakRSSBytes: Int

    public var lines: [String] {
        var out: [String] = []
        for f in files {
            out.append(String(format: "wrote %@: %d tensors, %lld parameters, %.2f MB tensor data (%.2f MB file), %.2f bits per weight",
                              f.path, f.tensors, Int64(f.elements), Double(f.tensorBytes) / 1e6, Double(f.fileBytes) / 1e6,
                              f.bitsPerWeight))
        }
        let bytes = files.map(\.fileBytes).reduce(0, +)
        out.append(String(format: "%lld parameters, %.2f MB in %.2f s (%.0f MB/s), peak RSS %.2f MB", Int64(parameters),
                          Double(bytes) / 1e6, seconds, seconds > 0 ? Double(bytes) / 1e6 / seconds : 0,
                          Double(peakRSSBytes) / 1e6))
        return out
    }
}

/// Models of a preset's exact architecture and size with seeded random weights, written as llama.cpp GGUF files
/// (a text model and an mmproj) carrying the same metadata keys as `vzquant convert`'s, so every loader reads
/// them unchanged. Each weight is generated row by row directly in its output encoding (random Q4_0 nibbles or
/// Q8_0 codes with an fp16 block scale, fp16/fp32 values), never through an F32 copy of the model: memory stays
/// at one chunk of rows however big the model is. Values are scaled by 1/√(row length) so activations keep
/// about unit size through every layer and the logits stay finite.
///
/// Reproducible: every row has its own generator seeded from (seed, file, tensor, row), so the bytes depend only
/// on the seed, not on threads or chunking.
public enum SyntheticModel {
    /// The two files of `preset` in `type` (token embedding and fallbacks as the converter's `TypePolicy`).
    /// The types whose blocks `generate` writes directly (seeded codes and scales, no fp32 detour).
    static let generatedTypes: [QuantType] = [.f32, .f16, .q8_0, .q4_0]

    public static func plan(preset: ModelPreset, type: QuantType, tokenEmbeddingType: QuantType? = nil) throws -> SyntheticPlan {
        for t in [type] + (tokenEmbeddingType.map { [$0] } ?? []) where !generatedTypes.contains(t) {
            throw ConvertError("synthetic \(t) weights are not supported (\(generatedTypes.map(\.description).joined(separator: ", ")))")
        }
        let policy = try TypePolicy(type: type, tokenEmbeddingType: tokenEmbeddingType)
        try validate(preset)
        return SyntheticPlan(preset: preset, policy: policy, text: textFile(preset, policy), mmproj: mmprojFile(preset, policy))
    }

    /// Writes the text model to `textPath` and, when given, the vision tower + projector to `mmprojPath`. Both go
    /// to temporary files first and are renamed into place only when both are complete; on error nothing is left.
    /// `progress(done, total)` is called with tensor bytes after each chunk.
    @discardableResult
    public static func write(preset: ModelPreset, type: QuantType, tokenEmbeddingType: QuantType? = nil,
                             textPath: String, mmprojPath: String?, seed: UInt64 = 0, threads: Int = Threads.count,
                             progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> SyntheticSummary {
        let started = Date()
        let p = try plan(preset: preset, type: type, tokenEmbeddingType: tokenEmbeddingType)
        var jobs: [(SyntheticFile, String, UInt64)] = [(p.text, textPath, 1)]
        if let mmprojPath { jobs.append((p.mmproj, mmprojPath, 2)) }
        let total = jobs.map(\.0.tensorBytes).reduce(0, +)
        var done = 0
        let files = try Converter.writeAllOrNothing(jobs.map(\.1)) { i, temp in
            let (file, _, salt) = jobs[i]
            try write(file, to: temp, seed: mix(seed ^ mix(salt)), threads: max(1, threads)) { bytes in
                done += bytes
                progress(done, total)
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: temp)[.size] as? Int) ?? 0
            return ConvertFileSummary(path: jobs[i].1, tensors: file.tensors.count, tensorBytes: file.tensorBytes,
                                      fileBytes: size, elements: file.parameters)
        }
        return SyntheticSummary(files: files, parameters: files.map(\.elements).reduce(0, +),
                                seconds: Date().timeIntervalSince(started), peakRSSBytes: peakResidentBytes())
    }

    // MARK: checks

    static func validate(_ p: ModelPreset) throws {
        let t = p.text, v = p.vision
        func bad(_ what: String) -> ConvertError { ConvertError("preset \(p.name): \(what)") }
        guard t.hidden > 0, t.layers > 0, t.heads > 0, t.kvHeads > 0, t.feedForward > 0, t.context > 0,
              t.heads % t.kvHeads == 0, t.hidden % t.heads == 0, t.headDim % 2 == 0 else {
            throw bad("bad text shape (hidden \(t.hidden), heads \(t.heads), kv heads \(t.kvHeads), layers \(t.layers))")
        }
        guard let vocab = t.vocab, vocab >= SyntheticVocabulary.minimumSize(p.chat) else {
            throw bad("vocabulary \(t.vocab ?? 0) is smaller than the \(SyntheticVocabulary.minimumSize(p.chat)) fixed tokens")
        }
        guard v.hidden > 0, v.heads > 0, v.hidden % v.heads == 0, v.patchSize > 0, v.imageSize >= v.patchSize,
              v.imageSize % v.patchSize == 0, v.keptLayers >= 1, v.keptLayers <= v.sourceLayers else {
            throw bad("bad vision shape (hidden \(v.hidden), heads \(v.heads), image \(v.imageSize), patch \(v.patchSize), layers \(v.keptLayers)/\(v.sourceLayers))")
        }
        if case let .idefics3(s) = p.projector, s < 1 || v.patchesPerSide % s != 0 {
            throw bad("pixel shuffle by \(s) does not divide the \(v.patchesPerSide)×\(v.patchesPerSide) patch grid")
        }
    }

    // MARK: plans

    static func textFile(_ p: ModelPreset, _ policy: TypePolicy) -> SyntheticFile {
        let t = p.text
        let vocab = t.vocab ?? 0  // validate() checked it
        var tensors: [SyntheticTensor] = []
        func add(_ name: String, _ dims: [Int], _ role: TensorRole) {
            tensors.append(tensor(name, dims, role, policy))
        }
        add("token_embd.weight", [t.hidden, vocab], .tokenEmbedding)
        // Names and order from the converter's table (gguf-py's); dims here in ggml order (row length first).
        for i in 0..<t.layers {
            for (suffix, _, shape, role, _) in TextTable.block {
                let dims: [Int] = shape.reversed().map {
                    switch $0 {
                    case .hidden: t.hidden
                    case .ff: t.feedForward
                    case .qOut: t.heads * t.headDim
                    case .kvOut: t.kvDim
                    case .vocab: vocab
                    }
                }
                add("blk.\(i).\(suffix)", dims, role)
            }
            if t.qkvBias {
                add("blk.\(i).attn_q.bias", [t.heads * t.headDim], .vector)
                add("blk.\(i).attn_k.bias", [t.kvDim], .vector)
                add("blk.\(i).attn_v.bias", [t.kvDim], .vector)
            }
        }
        add("output_norm.weight", [t.hidden], .vector)
        if !t.tiedEmbeddings { add("output.weight", [t.hidden, vocab], .matrix) }

        var meta: [(key: String, value: GGUFValue)] = common(p, policy)
        meta.append((GGUFKey.General.architecture, .string(t.arch)))
        meta += t.metadata(vocab: vocab).map { (key: $0.0, value: $0.1) }
        meta += SyntheticVocabulary(chat: p.chat, size: vocab).metadata
        return SyntheticFile(role: .text, metadata: meta, tensors: tensors)
    }

    static func mmprojFile(_ p: ModelPreset, _ policy: TypePolicy) -> SyntheticFile {
        if case let .qwenMerger(minPixels, maxPixels) = p.projector {
            return qwenMmprojFile(p, policy, minPixels: minPixels, maxPixels: maxPixels)
        }
        let v = p.vision, textHidden = p.text.hidden
        var tensors: [SyntheticTensor] = []
        func add(_ name: String, _ dims: [Int], _ role: TensorRole) {
            tensors.append(tensor(name, dims, role, policy))
        }
        // As the converter's VisionTable: CLIP has a class token and a pre-norm but no patch bias, SigLIP the reverse.
        let names = VisionTable.names(v.family)
        add("v.patch_embd.weight", [v.patchSize, v.patchSize, v.channels, v.hidden], .patchEmbedding)
        if names.patchBiasRequired { add("v.patch_embd.bias", [v.hidden], .vector) }
        if names.classEmbedding != nil { add("v.class_embd", [v.hidden], .classEmbedding) }
        add("v.position_embd.weight", [v.hidden, v.positions], .positionEmbedding)
        if names.preNorm != nil {
            add("v.pre_ln.weight", [v.hidden], .vector)
            add("v.pre_ln.bias", [v.hidden], .vector)
        }
        for i in 0..<v.keptLayers {
            for (suffix, _, shape, role) in VisionTable.clipBlock {
                let dims: [Int] = shape.reversed().map { $0 == .ff ? v.feedForward : v.hidden }
                add("v.blk.\(i).\(suffix).weight", dims, role)
                add("v.blk.\(i).\(suffix).bias", [dims.last!], .vector)
            }
        }
        if v.hasPostNorm {
            add("v.post_ln.weight", [v.hidden], .vector)
            add("v.post_ln.bias", [v.hidden], .vector)
        }
        switch p.projector {
        case let .mlp(bias):
            add("mm.0.weight", [v.hidden, textHidden], .matrix)
            if bias { add("mm.0.bias", [textHidden], .vector) }
            add("mm.2.weight", [textHidden, textHidden], .matrix)
            if bias { add("mm.2.bias", [textHidden], .vector) }
        case let .idefics3(s):
            add("mm.model.fc.weight", [v.hidden * s * s, textHidden], .matrix)
        case .qwenMerger:
            break  // qwenMmprojFile
        }
        if p.anyRes != nil {
            // Appended after each row of crop features (LLaVA-NeXT); an embedding-like row, kept f32 as llama.cpp does.
            tensors.append(SyntheticTensor(name: "v.image_newline", dims: [textHidden], type: .f32, fill: .random(std: 0.02)))
        }

        var meta: [(key: String, value: GGUFValue)] = common(p, policy)
        meta += [
            (GGUFKey.General.architecture, .string("clip")),
            (GGUFKey.Vision.hasTextEncoder, .bool(false)),
            (GGUFKey.Vision.hasVisionEncoder, .bool(true)),
        ]
        switch p.projector {
        case .mlp:
            meta += [(GGUFKey.Vision.hasLlavaProjector, .bool(true)), (GGUFKey.Vision.projectorType, .string("mlp"))]
        case let .idefics3(s):
            // SmolVLM's processor: longest edge 4 × the tile, split into tiles (SmolVLM-256M: 2048 and 512).
            meta += [(GGUFKey.Vision.hasLlavaProjector, .bool(false)), (GGUFKey.Vision.projectorType, .string("idefics3")),
                     (GGUFKey.Vision.projectorScaleFactor, .uint32(UInt32(s))),
                     (GGUFKey.Vision.preprocessImageSize, .uint32(UInt32(4 * v.imageSize))),
                     (GGUFKey.VZQ.imageSplitting, .bool(true))]
        case .qwenMerger:
            break
        }
        meta += v.metadata().map { (key: $0.0, value: $0.1) }
        if let a = p.anyRes {
            // llama.cpp's LLaVA-1.6 mmproj: the pinpoints flattened into one INT32 array, as gguf-py writes a list of ints.
            meta += [
                (GGUFKey.Vision.gridPinpoints, .int32s(a.gridPinpoints.flatMap { $0.map { Int32($0) } })),
                (GGUFKey.Vision.cropResolution, .uint32(UInt32(a.cropResolution))),
                (GGUFKey.Vision.aspectRatio, .string("anyres")),
                (GGUFKey.Vision.patchMergeType, .string(a.mergeType)),
            ]
        }
        if let f = v.featureLayer { meta.append((GGUFKey.VZQ.featureLayer, .int32(Int32(f)))) }
        meta += [
            (GGUFKey.VZQ.featureSelect, .string(v.featureSelect)),
            (GGUFKey.VZQ.sourceBlockCount, .uint32(UInt32(v.sourceLayers))),
            (GGUFKey.VZQ.visionFamily, .string(v.family.rawValue)),
            (GGUFKey.VZQ.visionHiddenAct, .string(v.hiddenAct)),
        ]
        return SyntheticFile(role: .mmproj, metadata: meta, tensors: tensors)
    }

    /// Qwen2-VL / Qwen2.5-VL's mmproj, as the converter writes it (`QwenVisionTable`): two per-frame patch
    /// kernels, the blocks, ln_q as v.post_ln and the merger's mm.0 / mm.2.
    static func qwenMmprojFile(_ p: ModelPreset, _ policy: TypePolicy, minPixels: Int, maxPixels: Int) -> SyntheticFile {
        let v = p.vision
        var tensors: [SyntheticTensor] = []
        // Two frames of one image: each kernel sees the same pixels, so each gets half the variance.
        for name in ["v.patch_embd.weight", "v.patch_embd.weight.1"] {
            tensors.append(SyntheticTensor(name: name, dims: [v.patchSize, v.patchSize, v.channels, v.hidden], type: .f32,
                                           fill: .random(std: 1 / Float(2 * v.channels * v.patchSize * v.patchSize).squareRoot())))
        }
        for spec in QwenVisionTable.plan(v, textHidden: p.text.hidden) {
            tensors.append(tensor(spec.gguf, spec.ggmlDims, spec.role, policy))
        }
        var meta: [(key: String, value: GGUFValue)] = common(p, policy)
        meta += [
            (GGUFKey.General.architecture, .string("clip")),
            (GGUFKey.Vision.hasTextEncoder, .bool(false)),
            (GGUFKey.Vision.hasVisionEncoder, .bool(true)),
            (GGUFKey.Vision.projectorType, .string(v.family == .qwen25vl ? "qwen2.5vl_merger" : "qwen2vl_merger")),
        ]
        meta += v.metadata().map { (key: $0.0, value: $0.1) }
        meta += [
            (GGUFKey.VZQ.featureSelect, .string(v.featureSelect)),
            (GGUFKey.VZQ.sourceBlockCount, .uint32(UInt32(v.sourceLayers))),
            (GGUFKey.VZQ.visionFamily, .string(v.family.rawValue)),
            (GGUFKey.VZQ.visionHiddenAct, .string(v.hiddenAct)),
            (GGUFKey.VZQ.minPixels, .uint32(UInt32(minPixels))),
            (GGUFKey.VZQ.maxPixels, .uint32(UInt32(maxPixels))),
        ]
        return SyntheticFile(role: .mmproj, metadata: meta, tensors: tensors)
    }

    private static func common(_ p: ModelPreset, _ policy: TypePolicy) -> [(key: String, value: GGUFValue)] {
        [(GGUFKey.General.name, .string(p.name)),
         (GGUFKey.General.fileType, .uint32(policy.fileType)),
         (GGUFKey.General.quantizationVersion, .uint32(2)),
         (GGUFKey.VZQ.synthetic, .bool(true))]
    }

    /// A tensor with the converter's type policy and a fill that suits its role.
    private static func tensor(_ name: String, _ dims: [Int], _ role: TensorRole, _ policy: TypePolicy) -> SyntheticTensor {
        let (type, _) = policy.choose(role: role, dims: dims)
        let fill: SyntheticTensor.Fill
        switch role {
        case .vector:
            // LayerNorm/RMSNorm weights are 1; biases small.
            fill = name.hasSuffix(".bias") ? .random(std: 0.01) : .ones
        case .positionEmbedding, .classEmbedding:
            fill = .random(std: 0.02)
        case .layerScale:
            fill = .random(std: 0.1)
        case .patchEmbedding, .matrix, .tokenEmbedding:
            // Unit-variance inputs give unit-variance outputs: std 1/√(inputs) (patch: channels·p·p inputs).
            let inputs = role == .patchEmbedding ? dims.dropLast().reduce(1, *) : dims[0]
            fill = .random(std: 1 / Float(max(1, inputs)).squareRoot())
        }
        return SyntheticTensor(name: name, dims: dims, type: type, fill: fill)
    }

    // MARK: writing

    /// Rows are generated a chunk at a time (~8 MB, at least one row), in parallel.
    static let chunkBytes = 8 << 20
    /// Chunks in flight: one being written while the next ones are generated.
    static let chunkBuffers = 3

    /// A background producer generates the chunks of every tensor, in file order, into a ring of buffers while
    /// the writer streams the filled ones: generating and writing overlap, so a big file goes at disk speed.
    private static func write(_ file: SyntheticFile, to path: String, seed: UInt64, threads: Int,
                              wrote: (Int) -> Void) throws {
        let writer = GGUFWriter()
        for (k, v) in file.metadata where k != GGUF.alignmentKey { writer.metadata.set(k, v) }
        for t in file.tensors { try writer.addTensor(name: t.name, dims: t.dims, type: t.type) }
        let index = Dictionary(uniqueKeysWithValues: file.tensors.enumerated().map { ($1.name, $0) })
        let largestRow = file.tensors.map(\.rowBytes).max() ?? 0
        let chunkSize = max(chunkBytes, largestRow, 1)
        let (chunks, chunksOfTensor) = chunkPlan(file, chunkSize: chunkSize)
        let ring = ChunkRing(count: chunkBuffers, bytes: chunkSize)
        let producer = DispatchGroup()
        DispatchQueue.global().async(group: producer) {
            for (k, chunk) in chunks.enumerated() {
                guard ring.acquireFree() else { return }
                let t = file.tensors[chunk.tensor]
                let tensorSeed = mix(seed ^ mix(UInt64(chunk.tensor) &+ 0x1234_5678))
                do {
                    try generate(t, rows: chunk.rows, seed: tensorSeed, into: ring.buffer(k).baseAddress!, threads: threads)
                } catch {
                    ring.fail(error)
                    return
                }
                ring.publish()
            }
        }
        defer {
            // On a write error the producer may wait for a free buffer: stop it before the ring goes away.
            ring.cancel()
            producer.wait()
        }
        try writer.write(to: path) { info, sink in
            let i = index[info.name]!
            let t = file.tensors[i]
            for k in chunksOfTensor[i] {
                try ring.acquireFilled()
                let bytes = chunks[k].rows.count * t.rowBytes
                try sink.write(UnsafeRawBufferPointer(start: ring.buffer(k).baseAddress, count: bytes))
                ring.release()
                wrote(bytes)
            }
        }
    }

    /// Every chunk in writing order, and which of them belong to each tensor.
    static func chunkPlan(_ file: SyntheticFile, chunkSize: Int) -> (chunks: [(tensor: Int, rows: Range<Int>)], ofTensor: [Range<Int>]) {
        var chunks: [(tensor: Int, rows: Range<Int>)] = []
        var ofTensor: [Range<Int>] = []
        for (i, t) in file.tensors.enumerated() {
            let first = chunks.count
            let rowsPerChunk = max(1, chunkSize / max(1, t.rowBytes))
            for row in stride(from: 0, to: t.rows, by: rowsPerChunk) {
                chunks.append((i, row..<min(t.rows, row + rowsPerChunk)))
            }
            ofTensor.append(first..<chunks.count)
        }
        return (chunks, ofTensor)
    }

    /// Rows `rows` of `t` into `out` (row `rows.lowerBound` at offset 0).
    static func generate(_ t: SyntheticTensor, rows: Range<Int>, seed: UInt64, into out: UnsafeMutableRawPointer,
                         threads: Int) throws {
        guard generatedTypes.contains(t.type) else {
            throw ConvertError("tensor '\(t.name)': synthetic \(t.type) weights are not supported (\(generatedTypes.map(\.description).joined(separator: ", ")))")
        }
        let job = RowFill(tensor: t, seed: seed, out: out, first: rows.lowerBound)
        let workers = min(threads, rows.count, max(1, rows.count * t.rowLength / 65536))
        if workers <= 1 {
            for r in rows { job.fill(row: r) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var r = rows.lowerBound + w
            while r < rows.upperBound {
                job.fill(row: r)
                r += workers
            }
        }
    }
}

/// A ring of chunk buffers between one producer and one consumer; chunk k lives in buffer k mod count.
private final class ChunkRing: @unchecked Sendable {
    private let buffers: [UnsafeMutableRawBufferPointer]
    private let free = DispatchSemaphore(value: 0)
    private let filled = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var cancelled = false
    private var error: Error?

    init(count: Int, bytes: Int) {
        buffers = (0..<count).map { _ in .allocate(byteCount: bytes, alignment: 64) }
        // Signalled rather than created with `count`: libdispatch traps when a semaphore is destroyed below its
        // initial value, which happens when the writer stops early.
        for _ in 0..<count { free.signal() }
    }

    deinit { for b in buffers { b.deallocate() } }

    func buffer(_ chunk: Int) -> UnsafeMutableRawBufferPointer { buffers[chunk % buffers.count] }

    /// Producer: waits for a buffer to fill; false when the consumer has stopped.
    func acquireFree() -> Bool {
        free.wait()
        lock.lock(); defer { lock.unlock() }
        return !cancelled
    }

    func publish() { filled.signal() }

    func fail(_ e: Error) {
        lock.lock(); error = e; lock.unlock()
        filled.signal()
    }

    /// Consumer: waits for the next filled chunk; throws the producer's error.
    func acquireFilled() throws {
        filled.wait()
        lock.lock(); defer { lock.unlock() }
        if let error { throw error }
    }

    func release() { free.signal() }

    func cancel() {
        lock.lock(); cancelled = true; lock.unlock()
        free.signal()
    }
}

/// splitmix64's finalizer: spreads a seed's bits so neighbouring seeds give unrelated streams.
@inline(__always) private func mix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Fills one row of a tensor in its own encoding; rows are independent, so threads may fill any of them.
private struct RowFill: @unchecked Sendable {
    let tensor: SyntheticTensor
    let seed: UInt64
    let out: UnsafeMutableRawPointer
    let first: Int

    /// Uniform codes' standard deviations: Q8_0 int8 over [−128, 127] ≈ 73.9; Q4_0 nibble − 8 over [−8, 7] ≈ 4.61.
    static let q8CodeStd: Float = 73.9
    static let q4CodeStd: Float = 4.61

    func fill(row r: Int) {
        let n = tensor.rowLength
        let p = out + (r - first) * tensor.rowBytes
        var rng = SeededRandom(seed: mix(seed ^ UInt64(r)))
        guard case let .random(std) = tensor.fill else {
            // Norm weights: 1 (f32 under the type policy; an f16 row is filled the same way).
            for i in 0..<n {
                if tensor.type == .f16 { p.storeBytes(of: cq_fp32_to_fp16(1), toByteOffset: 2 * i, as: UInt16.self) }
                else { p.storeBytes(of: Float(1), toByteOffset: 4 * i, as: Float.self) }
            }
            return
        }
        // A block scale varies ±25% around the value that gives `std`, as trained weights' blocks do.
        func scale(_ codeStd: Float, _ bits: UInt64) -> UInt16 {
            let jitter = 0.75 + Float(bits & 0xFF) / 512
            return cq_fp32_to_fp16(std / codeStd * jitter)
        }
        switch tensor.type {
        case .q8_0:
            // 34-byte blocks: fp16 d, 32 int8 codes.
            for b in 0..<(n / 32) {
                let block = p + 34 * b
                block.storeBytes(of: scale(Self.q8CodeStd, rng.next()), as: UInt16.self)
                for w in 0..<4 { block.storeBytes(of: rng.next(), toByteOffset: 2 + 8 * w, as: UInt64.self) }
            }
        case .q4_0:
            // 18-byte blocks: fp16 d, 16 bytes of two nibbles each.
            for b in 0..<(n / 32) {
                let block = p + 18 * b
                block.storeBytes(of: scale(Self.q4CodeStd, rng.next()), as: UInt16.self)
                block.storeBytes(of: rng.next(), toByteOffset: 2, as: UInt64.self)
                block.storeBytes(of: rng.next(), toByteOffset: 10, as: UInt64.self)
            }
        case .f16:
            let a = std * Float(3).squareRoot()  // uniform on [−a, a] has this std
            for i in 0..<n { p.storeBytes(of: cq_fp32_to_fp16(uniform(&rng) * a), toByteOffset: 2 * i, as: UInt16.self) }
        default:
            let a = std * Float(3).squareRoot()
            for i in 0..<n { p.storeBytes(of: uniform(&rng) * a, toByteOffset: 4 * i, as: Float.self) }
        }
    }

    /// Uniform in [−1, 1) from the top 24 bits.
    @inline(__always) private func uniform(_ rng: inout SeededRandom) -> Float {
        Float(rng.next() >> 40) * 0x1p-23 - 1
    }
}

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

/// What `vzquant convert` was asked to do.
public struct ConvertOptions: Sendable {
    /// A Hugging Face model directory, or a GGUF file to re-quantize.
    public var source: String
    public var output: String
    /// The vision tower + projector of a VLM, or the whole of a vision encoder (then `output` is not written).
    public var mmprojOutput: String?
    public var policy: TypePolicy
    public var threads: Int

    public init(source: String, output: String, mmprojOutput: String? = nil, policy: TypePolicy, threads: Int = Threads.count) {
        self.source = source
        self.output = output
        self.mmprojOutput = mmprojOutput
        self.policy = policy
        self.threads = max(1, threads)
    }
}

/// HF checkpoint or GGUF → GGUF files in llama.cpp's layout, one tensor at a time.
///
/// All tensor infos are declared first (shapes and types come from the safetensors/GGUF headers), then each
/// tensor is read from the source mapping, converted (rotary permutation, quantization) into one buffer of its
/// output size, and streamed to the writer. Every output goes to a temporary file next to its destination; only
/// when all of them are complete are they renamed into place, so a failure leaves no file (old or partial)
/// changed at any destination.
public enum Converter {
    public static func run(_ options: ConvertOptions, progress: ConvertProgress = ConvertProgress(live: false),
                           note: (String) -> Void = { _ in }) throws -> ConvertSummary {
        let started = Date()
        var notes: [String] = []
        let noteOnce: (String) -> Void = { notes.append($0); note($0) }

        let plans: [FilePlan]
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: options.source, isDirectory: &isDir) else {
            throw ConvertError("\(options.source): no such file or directory")
        }
        if isDir.boolValue {
            plans = try HFPlanner.plan(directory: options.source, options: options, note: noteOnce)
        } else {
            guard options.mmprojOutput == nil else {
                throw ConvertError("a separate mmproj output applies to Hugging Face directories; re-quantize each GGUF file (text or mmproj) on its own")
            }
            plans = [try GGUFPlanner.plan(file: options.source, options: options, note: noteOnce)]
        }

        let sourceBytes = plans.flatMap(\.tensors).map(\.source.byteCount).reduce(0, +)
        progress.begin(tensors: plans.map(\.tensors.count).reduce(0, +), sourceBytes: sourceBytes)
        defer { progress.finish() }

        let files = try writeAllOrNothing(plans.map(\.path)) { i, temp in
            try write(plans[i], to: temp, threads: options.threads, progress: progress)
        }
        return ConvertSummary(files: files, sourceBytes: sourceBytes, seconds: Date().timeIntervalSince(started),
                              peakRSSBytes: peakResidentBytes(), notes: notes)
    }

    /// Writes every file of `paths` under a temporary name (`write(index, temporaryPath)`), then renames them all
    /// into place: a run leaves either all its files, complete, or none, and no existing file changes otherwise.
    /// Before anything is written every destination must be a regular file or a new name in an existing
    /// directory, and no two may be the same file. While renaming, each file being replaced keeps a hard link,
    /// so a rename that fails halfway puts the earlier files back as they were.
    public static func writeAllOrNothing<T>(_ paths: [String], _ write: (Int, String) throws -> T) throws -> [T] {
        for path in paths { try OutputPath.validate(path) }
        try OutputPath.validateDistinct(paths)
        var temps: [(temp: String, final: String)] = []
        var results: [T] = []
        do {
            for (i, path) in paths.enumerated() {
                let temp = temporaryPath(for: path)
                temps.append((temp, path))
                results.append(try write(i, temp))
            }
        } catch {
            for (temp, _) in temps { unlink(temp) }
            throw error
        }
        try commit(temps)
        return results
    }

    /// Renames each temporary onto its destination, undoing the earlier renames when one fails.
    private static func commit(_ files: [(temp: String, final: String)]) throws {
        // Hard links to the files about to be replaced (nil: the destination did not exist).
        var backups: [String?] = []
        defer { for case let b? in backups { unlink(b) } }
        for (_, final) in files {
            let backup = final.replacingLastComponent { ".\($0).previous-\(getpid())" }
            unlink(backup)
            backups.append(link(final, backup) == 0 ? backup : nil)
        }
        for (i, (temp, final)) in files.enumerated() {
            guard rename(temp, final) != 0 else { continue }
            let reason = String(cString: strerror(errno))
            for j in 0..<i {
                if let b = backups[j] { rename(b, files[j].final); backups[j] = nil } else { unlink(files[j].final) }
            }
            for (t, _) in files[i...] { unlink(t) }
            throw ConvertError("\(final): cannot rename \(temp) into place: \(reason)")
        }
    }

    static func temporaryPath(for path: String) -> String {
        path.replacingLastComponent { ".\($0).convert-\(getpid())" }
    }

    // MARK: writing

    private static func write(_ plan: FilePlan, to path: String, threads: Int, progress: ConvertProgress) throws -> ConvertFileSummary {
        let writer = GGUFWriter()
        for (k, v) in plan.metadata where k != GGUF.alignmentKey { writer.metadata.set(k, v) }
        for t in plan.tensors { try writer.addTensor(name: t.name, dims: t.dims, type: t.type) }
        let byName = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.name, $0) })
        // One output buffer, sized for the largest tensor and reused: malloc'ing a fresh one per tensor let
        // glibc keep the freed blocks in its heap (RSS grew by hundreds of MB on a 1B model).
        let buffer = try OutputBuffer(bytes: writer.tensors.map(\.byteCount).max() ?? 0, file: plan.path)
        try writer.write(to: path) { info, sink in
            let t = byName[info.name]!
            progress.tensorStarting(t.name, type: t.type, file: plan.path)
            let out = UnsafeMutableRawBufferPointer(rebasing: buffer.memory[0..<info.byteCount])
            try convert(t, into: out, threads: threads, file: plan.path)
            try sink.write(UnsafeRawBufferPointer(out))
            // The source pages are not needed again: drop them from this process (they stay in the page cache),
            // so resident memory is about one tensor's source + output, not the whole mapped checkpoint.
            releasePages(t.source.bytes)
            progress.tensorDone(sourceBytes: t.source.byteCount)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return ConvertFileSummary(path: plan.path, tensors: writer.tensors.count,
                                  tensorBytes: writer.tensors.map(\.byteCount).reduce(0, +), fileBytes: size,
                                  elements: writer.tensors.map(\.elementCount).reduce(0, +))
    }

    /// Source rows → fp32 → (permuted) output rows, in parallel over chunks of rows.
    static func convert(_ t: PlannedTensor, into out: UnsafeMutableRawBufferPointer, threads: Int, file: String) throws {
        // A permuted 1-D bias is handled as `n` rows of one value.
        let rowLength = t.permuteHeads != nil && t.dims.count == 1 ? 1 : (t.dims.first ?? 1)
        let rows = rowLength == 0 ? 0 : t.elementCount / rowLength
        guard rows > 0 else { return }
        guard let outRow = t.type.rowBytes(rowLength), let srcRow = t.source.type.rowBytes(rowLength),
              outRow * rows == out.count, srcRow * rows == t.source.byteCount else {
            throw ConvertError("\(file): tensor '\(t.name)': internal size mismatch (\(t.source.type) → \(t.type), rows \(rows) × \(rowLength))")
        }
        let headDim = t.permuteHeads.map { rows / $0 } ?? 0
        if let h = t.permuteHeads, h * headDim != rows || headDim % 2 != 0 {
            throw ConvertError("\(file): tensor '\(t.name)': \(rows) rows do not split into \(h) heads of an even size")
        }
        let half = headDim / 2
        let job = RowJob(src: t.source.bytes.baseAddress!, dst: out.baseAddress!, srcType: t.source.type.rawValue,
                         dstType: t.type.rawValue, srcRow: srcRow, dstRow: outRow, rowLength: rowLength,
                         permuted: t.permuteHeads != nil, headDim: headDim, half: half)
        // Chunks of ~64K values; each worker takes chunks round-robin and converts with its own fp32 scratch.
        let rowsPerChunk = max(1, (1 << 16) / max(1, rowLength))
        let chunks = (rows + rowsPerChunk - 1) / rowsPerChunk
        let workers = min(threads, chunks)
        let failures = StatusBox(count: workers)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: rowLength)
            defer { scratch.deallocate() }
            var chunk = w
            while chunk < chunks {
                let end = min(rows, (chunk + 1) * rowsPerChunk)
                for r in (chunk * rowsPerChunk)..<end {
                    let status = job.row(r, scratch: scratch)
                    if status != CQ_OK { failures.set(w, status); return }
                }
                chunk += workers
            }
        }
        if let bad = failures.first {
            throw ConvertError("\(file): tensor '\(t.name)' (\(t.source.type) → \(t.type)): \(String(cString: cq_status_string(bad)))")
        }
    }
}

/// Anonymous memory from mmap, returned to the system at deinit (never parked in malloc's heap).
private final class OutputBuffer {
    let memory: UnsafeMutableRawBufferPointer

    init(bytes: Int, file: String) throws {
        let n = max(bytes, 1)
        let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else {
            throw ConvertError("\(file): cannot allocate \(n) bytes for a tensor: \(String(cString: strerror(errno)))")
        }
        memory = UnsafeMutableRawBufferPointer(start: p, count: n)
    }

    deinit { munmap(memory.baseAddress, memory.count) }
}

/// madvise(MADV_DONTNEED) on the whole pages inside `bytes` (a read-only file mapping: pages fault back in from
/// the file if read again, so this only lowers resident memory).
private func releasePages(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (Int(bitPattern: base) + page - 1) / page * page
    let end = (Int(bitPattern: base) + bytes.count) / page * page
    guard end > start, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
    _ = madvise(p, end - start, Int32(MADV_DONTNEED))
}

/// One tensor's row conversion, shared read-only by the worker threads (they write disjoint output rows).
private struct RowJob: @unchecked Sendable {
    let src: UnsafeRawPointer
    let dst: UnsafeMutableRawPointer
    let srcType: Int32, dstType: Int32
    let srcRow: Int, dstRow: Int, rowLength: Int
    let permuted: Bool
    let headDim: Int, half: Int

    /// llama.cpp's rotary permutation: view the rows of each head as [2, headDim/2] and transpose, so output
    /// row h·hd + 2i + j comes from source row h·hd + j·hd/2 + i.
    func sourceRow(_ r: Int) -> Int {
        guard permuted else { return r }
        let h = r / headDim, k = r % headDim
        return h * headDim + (k % 2) * half + k / 2
    }

    func row(_ r: Int, scratch: UnsafeMutablePointer<Float>) -> cq_status {
        let n = Int64(rowLength)
        let s = cq_dequantize_row(srcType, src + sourceRow(r) * srcRow, scratch, n)
        if s != CQ_OK { return s }
        return cq_quantize_row(dstType, scratch, dst + r * dstRow, n)
    }
}

private final class StatusBox: @unchecked Sendable {
    private var values: [cq_status?]
    private let lock = NSLock()
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ s: cq_status) { lock.lock(); values[i] = s; lock.unlock() }
    var first: cq_status? { lock.lock(); defer { lock.unlock() }; return values.compactMap { $0 }.first }
}

// MARK: - Plans

/// Where a tensor's bytes come from: a safetensors tensor or a GGUF tensor, both inside a live mapping.
struct TensorSourceRef {
    let type: QuantType
    let bytes: UnsafeRawBufferPointer
    /// Keeps the mapping alive while the plan exists.
    let owner: AnyObject
    var byteCount: Int { bytes.count }
}

struct PlannedTensor {
    let name: String
    let dims: [Int]
    let type: QuantType
    let source: TensorSourceRef
    let permuteHeads: Int?
    var elementCount: Int { dims.reduce(1, *) }

    /// An F32 tensor the converter computes itself (llama3's rope_freqs, Qwen's per-frame patch kernels), stored
    /// as F32; `dims` innermost first (default: 1-D).
    static func generated(name: String, dims: [Int]? = nil, values: [Float]) -> PlannedTensor {
        let storage = GeneratedStorage(values)
        return PlannedTensor(name: name, dims: dims ?? [values.count], type: .f32,
                             source: TensorSourceRef(type: .f32, bytes: UnsafeRawBufferPointer(rebasing: storage.memory[0..<(values.count * 4)]),
                                                     owner: storage),
                             permuteHeads: nil)
    }
}

/// Owns the bytes of a generated tensor for as long as a plan points at them.
private final class GeneratedStorage {
    let memory: UnsafeMutableRawBufferPointer

    init(_ values: [Float]) {
        memory = .allocate(byteCount: max(1, values.count * MemoryLayout<Float>.size), alignment: 64)
        values.withUnsafeBytes { memory.copyMemory(from: $0) }
    }

    deinit { memory.deallocate() }
}

struct FilePlan {
    let path: String
    var metadata: [(String, GGUFValue)]
    var tensors: [PlannedTensor]
}

private extension String {
    /// The path with its last component replaced by `f(last)`, in the same directory.
    func replacingLastComponent(_ f: (String) -> String) -> String {
        let url = URL(fileURLWithPath: self)
        return url.deletingLastPathComponent().path + "/" + f(url.lastPathComponent)
    }
}

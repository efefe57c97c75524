import CQuant
import Foundation
import VZQFormats
import VZQKernels
import VZQSupport

public struct ModelError: Error, CustomStringConvertible {
    public let description: String
    package init(_ message: String) { description = message }
}

/// Reads a model's tensors from an opened GGUF file: matrices are packed once (the file's bytes are read, not
/// kept), F32 vectors are used in place in the mapping (other types are converted once and owned here).
/// Matrices of types with GEMM kernels (every type CQuant's table marks can_gemm: F32, F16, BF16, Q8_0, Q4_0, Q4_1,
/// Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) are packed at their own size; a type without kernels would be repacked once to
/// Q8_0 (~1.06 bytes a weight). With `widenToF32` (or
/// `VZQ_WIDEN_F32=1`) every quantized matrix is widened to F32 instead, the numerically exact reference. Rows whose
/// length is not a multiple of 32 are always widened.
final class GGUFWeights {
    let file: GGUFFile
    let widenToF32: Bool
    private var owned: [UnsafeMutablePointer<Float>] = []

    init(_ file: GGUFFile, widenToF32: Bool = GGUFWeights.widenFromEnvironment) {
        self.file = file
        self.widenToF32 = widenToF32
    }

    /// `VZQ_WIDEN_F32=1`: the default for `widenToF32`.
    static var widenFromEnvironment: Bool {
        guard let v = getenv("VZQ_WIDEN_F32") else { return false }
        return String(cString: v) == "1"
    }

    /// Whether `matrix` gives the file's pages of a tensor back after packing it (tests turn it off to measure
    /// the difference).
    nonisolated(unsafe) static var releasesFilePages = true

    deinit { for p in owned { p.deallocate() } }

    func has(_ name: String) -> Bool { file.tensorInfo(name) != nil }

    /// Checks that the file holds a block of tensors for each of the `count` blocks the metadata key `key` claims
    /// (probing the tensor `probe(i)`), before anything is packed or sized for them.
    func requireBlocks(_ count: Int, key: String, probe: (Int) -> String) throws {
        if let missing = (0..<count).first(where: { !has(probe($0)) }) {
            throw ModelError("\(file.path): \(key) is \(count), but the file has tensors for \(missing) block(s) ('\(probe(missing))' is missing)")
        }
    }

    func info(_ name: String) throws -> GGUFTensorInfo {
        guard let t = file.tensorInfo(name) else { throw ModelError("\(file.path): no tensor named '\(name)'") }
        return t
    }

    /// A weight of N rows (the outermost dim) × K values (all inner dims), packed for the current kernel.
    func matrix(_ name: String, rows: Int? = nil, cols: Int? = nil) throws -> PackedMatrix {
        let t = try info(name)
        let n = t.dims.last ?? 1, k = t.elementCount / max(n, 1)
        if let rows, rows != n { throw ModelError("\(file.path): '\(name)' has \(n) rows, expected \(rows)") }
        if let cols, cols != k { throw ModelError("\(file.path): '\(name)' has rows of \(k), expected \(cols)") }
        let bytes = file.bytes(of: t)
        // The packed copy is all the model keeps: the file's pages of this tensor go back once it is built, so
        // the peak stays near the packed weights plus one tensor, not twice the file.
        defer { if Self.releasesFilePages { file.mapping.release(at: file.dataOffset + t.offset, count: t.byteCount) } }
        if t.type.hasKernels, !(widenToF32 && t.type.blockElements > 1) {
            return try PackedMatrix(type: t.type, bytes: bytes.baseAddress!, rows: n, cols: k)
        }
        let q8 = QuantType.q8_0
        if !widenToF32, k % q8.blockElements == 0, let srcRow = t.type.rowBytes(k), let dstRow = q8.rowBytes(k) {
            // Types without GEMM kernels are repacked to Q8_0 once: each row is dequantized into one reusable
            // fp32 buffer and requantized into the Q8_0 image the packer reads.
            let row = UnsafeMutablePointer<Float>.allocate(capacity: k)
            defer { row.deallocate() }
            // The image is mapped, not malloc-ed: unmapping returns it to the system at once, where a freed heap
            // block of this size would raise glibc's mmap threshold and stay in the process as free heap.
            let imageBytes = max(n * dstRow, 1)
            guard let image = mmap(nil, imageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  image != MAP_FAILED else {
                throw ModelError("\(file.path): cannot map \(imageBytes) bytes to repack '\(name)'")
            }
            defer { munmap(image, imageBytes) }
            for r in 0..<n {
                try KernelError.check(cq_dequantize_row(t.type.rawValue, bytes.baseAddress! + r * srcRow, row, Int64(k)))
                try KernelError.check(cq_quantize_row(q8.rawValue, row, image + r * dstRow, Int64(k)))
            }
            return try PackedMatrix(type: q8, bytes: image, rows: n, cols: k)
        }
        // Otherwise (reference path, or rows Q8_0 cannot cut) widened to F32 once.
        let values = try t.type.dequantize(bytes, count: t.elementCount)
        return try values.withUnsafeBytes { try PackedMatrix(type: .f32, bytes: $0.baseAddress!, rows: n, cols: k) }
    }

    /// A tensor as `count` fp32 values: in place when the file stores F32, else converted once.
    func vector(_ name: String, count: Int? = nil) throws -> UnsafePointer<Float> {
        let t = try info(name)
        if let count, count != t.elementCount {
            throw ModelError("\(file.path): '\(name)' has \(t.elementCount) values, expected \(count)")
        }
        let bytes = file.bytes(of: t)
        if t.type == .f32, Int(bitPattern: bytes.baseAddress!) % MemoryLayout<Float>.alignment == 0 {
            return bytes.baseAddress!.assumingMemoryBound(to: Float.self)
        }
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(t.elementCount, 1))
        owned.append(p)
        try KernelError.check(cq_dequantize_row(t.type.rawValue, bytes.baseAddress, p, Int64(t.elementCount)))
        return UnsafePointer(p)
    }

    func optionalVector(_ name: String, count: Int? = nil) throws -> UnsafePointer<Float>? {
        has(name) ? try vector(name, count: count) : nil
    }
}

/// A linear layer y = x·Wᵀ + b on packed weights.
struct Linear {
    let weight: PackedMatrix
    let bias: UnsafePointer<Float>?

    init(_ w: GGUFWeights, _ name: String, rows: Int? = nil, cols: Int? = nil, bias: Bool = true) throws {
        weight = try w.matrix("\(name).weight", rows: rows, cols: cols)
        self.bias = bias ? try w.optionalVector("\(name).bias", count: weight.rows) : nil
    }

    var outputs: Int { weight.rows }
    var inputs: Int { weight.cols }

    func workspaceBytes(rows m: Int) -> Int { weight.workspaceBytes(rows: m) }

    func callAsFunction(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>,
                        ldy: Int? = nil, workspace: UnsafeMutableRawPointer) throws {
        try weight.multiply(x, rows: m, bias: bias, into: y, ldy: ldy, workspace: workspace)
    }
}

import CQuant

/// A tensor element type, numbered as ggml/GGUF number them (so a GGUF tensor's type field converts directly).
/// Block sizes, byte counts and kernels live in CQuant's type table; this enum only names the types.
public enum QuantType: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    private var info: cq_type_info { cq_type_get(rawValue)!.pointee }

    /// As GGUF tools print it: "q4_0", "f16", …
    public var description: String { String(cString: info.name) }
    /// Values per block (1 for float types).
    public var blockElements: Int { Int(info.block_elems) }
    /// Bytes per block.
    public var blockBytes: Int { Int(info.block_bytes) }
    /// Whether `quantize(_:)` can produce this type.
    public var canQuantize: Bool { info.can_quantize != 0 }
    /// Whether GEMM kernels take this type directly.
    public var hasKernels: Bool { info.can_gemm != 0 }

    /// Parses the names GGUF tools use ("q4_0", "Q8_0", "f16", "bf16").
    public init?(name: String) {
        let lower = name.lowercased()
        guard let t = QuantType.allCases.first(where: { $0.description.lowercased() == lower }) else { return nil }
        self = t
    }

    /// Bytes of one row of `count` values, or nil when `count` is not a multiple of the block size.
    public func rowBytes(_ count: Int) -> Int? {
        let n = cq_row_bytes(rawValue, Int64(count))
        return n == 0 && count != 0 ? nil : Int(n)
    }

    /// fp32 → this type, bit-identical to ggml's reference quantizer.
    public func quantize(_ values: [Float]) throws -> [UInt8] {
        guard let bytes = rowBytes(values.count) else { throw KernelError.badShape(type: self, count: values.count) }
        var out = [UInt8](repeating: 0, count: bytes)
        let status = values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { dst in cq_quantize_row(rawValue, src.baseAddress, dst.baseAddress, Int64(values.count)) }
        }
        try KernelError.check(status)
        return out
    }

    /// This type → fp32 for `count` values stored in `bytes`.
    public func dequantize(_ bytes: UnsafeRawBufferPointer, count: Int) throws -> [Float] {
        guard let need = rowBytes(count), bytes.count >= need else { throw KernelError.badShape(type: self, count: count) }
        var out = [Float](repeating: 0, count: count)
        let status = out.withUnsafeMutableBufferPointer { dst in
            cq_dequantize_row(rawValue, bytes.baseAddress, dst.baseAddress, Int64(count))
        }
        try KernelError.check(status)
        return out
    }
}

public enum KernelError: Error, CustomStringConvertible, Equatable {
    case badShape(type: QuantType, count: Int)
    case status(String)
    case unknownKernel(String)
    /// A kernel this CPU cannot run.
    case unsupportedKernel(String)
    /// A VZQ_* environment setting that cannot be used (the message names it).
    case badEnvironment(String)

    package static func check(_ status: cq_status) throws {
        if status != CQ_OK { throw KernelError.status(String(cString: cq_status_string(status))) }
    }

    public var description: String {
        switch self {
        case let .badShape(type, count):
            return "\(count) values is not a whole number of \(type) blocks of \(type.blockElements)"
        case let .status(message): return message
        case let .unknownKernel(name): return "unknown kernel '\(name)' (scalar, avx2, vnni, neon, dotprod, i8mm)"
        case let .unsupportedKernel(name): return "this CPU cannot run the \(name) kernel (best: \(Kernel.best))"
        case let .badEnvironment(message): return message
        }
    }
}

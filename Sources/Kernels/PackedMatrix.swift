import CQuant

/// A weight matrix W (N rows × K values) repacked once into the column panels CQuant's micro-kernels stream.
/// Packing reads the file-layout bytes (e.g. a memory-mapped GGUF tensor) and keeps no reference to them.
public final class PackedMatrix: @unchecked Sendable {
    let raw: OpaquePointer
    public let type: QuantType
    public let rows: Int
    public let cols: Int

    /// - Parameters:
    ///   - bytes: N rows of K values of `type` in file layout, `rowStride` bytes apart (nil: dense).
    public init(type: QuantType, bytes: UnsafeRawPointer, rows: Int, cols: Int, rowStride: Int? = nil,
                kernel: Kernel = .current) throws {
        var out: OpaquePointer?
        let status = cq_matrix_pack(type.rawValue, bytes, Int64(rows), Int64(cols), rowStride ?? 0, kernel.c, &out)
        try KernelError.check(status)
        raw = out!
        self.type = type
        self.rows = rows
        self.cols = cols
    }

    /// Quantizes fp32 weights (row-major N × K) to `type`, then packs them.
    public static func quantizing(_ weights: [Float], rows: Int, cols: Int, to type: QuantType,
                                  kernel: Kernel = .current) throws -> PackedMatrix {
        precondition(weights.count == rows * cols, "weights must hold rows × cols values")
        let bytes = try type.quantize(weights)
        return try bytes.withUnsafeBytes {
            try PackedMatrix(type: type, bytes: $0.baseAddress!, rows: rows, cols: cols, kernel: kernel)
        }
    }

    deinit { cq_matrix_free(raw) }

    public var kernel: Kernel { Kernel(rawValue: Int32(cq_matrix_kernel(raw).rawValue))! }
    /// Bytes of packed weight data (equal to the file's bytes for Q8_0/Q4_0/F16/F32).
    public var packedBytes: Int { cq_matrix_bytes(raw) }

    /// Scratch bytes `multiply` needs for `m` activation rows; the runtime plans these once.
    public func workspaceBytes(rows m: Int) -> Int { cq_gemm_workspace_bytes(raw, Int64(m)) }

    /// Y[m×N] = X[m×K] · Wᵀ (+ bias). Pointers must cover m rows of `ldx`/`ldy` floats.
    public func multiply(_ x: UnsafePointer<Float>, rows m: Int, ldx: Int? = nil, bias: UnsafePointer<Float>? = nil,
                         into y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
                         workspace: UnsafeMutableRawPointer? = nil) throws {
        let status = cq_gemm(raw, x, Int64(m), Int64(ldx ?? cols), bias, y, Int64(ldy ?? rows), workspace)
        try KernelError.check(status)
    }

    /// Convenience for tests and tools: allocates the output.
    public func multiply(_ x: [Float], rows m: Int, bias: [Float]? = nil) throws -> [Float] {
        precondition(x.count == m * cols, "x must hold rows × K values")
        var y = [Float](repeating: 0, count: m * rows)
        try x.withUnsafeBufferPointer { xp in
            try y.withUnsafeMutableBufferPointer { yp in
                if let bias {
                    try bias.withUnsafeBufferPointer { try multiply(xp.baseAddress!, rows: m, bias: $0.baseAddress, into: yp.baseAddress!) }
                } else {
                    try multiply(xp.baseAddress!, rows: m, into: yp.baseAddress!)
                }
            }
        }
        return y
    }
}

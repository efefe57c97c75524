import CQuant
import Foundation
import VZQFormats
import VZQKernels
import VZQSupport

/// The element-wise and row operations every model family shares, on row-major fp32 buffers. The heavy ones (norms,
/// activations, softmax) run in CQuant's vectorized, thread-parallel kernels (cquant.h, elementwise.c); the
/// arguments here are always valid, so their status is only asserted.
/// `rows × dim` buffers are dense unless a leading dimension is given. Nothing here allocates.
enum Ops {
    /// out[r] = (x[r] − mean) / sqrt(var + eps) · weight + bias, statistics over `dim` values in double (in place allowed).
    static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, eps: Float, into out: UnsafeMutablePointer<Float>) {
        let status = cq_layer_norm_rows(x, Int64(rows), Int64(dim), weight, bias, eps, out)
        assert(status == CQ_OK, "cq_layer_norm_rows: \(status)")
    }

    /// out[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight (in place allowed).
    static func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, eps: Float,
                        into out: UnsafeMutablePointer<Float>) {
        let status = cq_rms_norm_rows(x, Int64(rows), Int64(dim), weight, eps, out)
        assert(status == CQ_OK, "cq_rms_norm_rows: \(status)")
    }

    /// GELU with the exact erf: x/2 · (1 + erf(x/√2)).
    static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let status = cq_gelu(x, x, Int64(count))
        assert(status == CQ_OK, "cq_gelu: \(status)")
    }

    /// GELU with the tanh approximation (PyTorch's gelu(approximate="tanh"), HF's gelu_pytorch_tanh):
    /// x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))).
    static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let status = cq_gelu_tanh(x, x, Int64(count))
        assert(status == CQ_OK, "cq_gelu_tanh: \(status)")
    }

    /// out[r][i] *= scale[i] for each of `rows` rows (a per-channel scale, e.g. DINOv2's layer scale).
    static func scaleColumns(_ x: UnsafeMutablePointer<Float>, rows: Int, dim: Int, scale: UnsafePointer<Float>) {
        for r in 0..<rows {
            let xr = x + r * dim
            for i in 0..<dim { xr[i] *= scale[i] }
        }
    }

    /// CLIP's quick GELU: x · σ(1.702 x).
    static func quickGelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let status = cq_quick_gelu(x, x, Int64(count))
        assert(status == CQ_OK, "cq_quick_gelu: \(status)")
    }

    /// SiLU: x · σ(x).
    static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let status = cq_silu(x, x, Int64(count))
        assert(status == CQ_OK, "cq_silu: \(status)")
    }

    /// a[i] *= b[i]
    static func mul(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { a[i] *= b[i] }
    }

    /// a[i] += b[i]
    static func add(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { a[i] += b[i] }
    }

    /// Softmax of each of `rows` rows of `cols` values, `ld` floats apart, in fp32 (max subtracted first).
    /// −∞ entries become 0. With `causalOffset`, row i keeps only its first offset + i + 1 values (the keys a query at
    /// position offset + i may see) and the rest become 0, as if they had been masked with −∞.
    static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, causalOffset: Int? = nil) {
        let status = cq_softmax_rows(x, Int64(rows), Int64(cols), Int64(ld), Int64(causalOffset ?? -1))
        assert(status == CQ_OK, "cq_softmax_rows: \(status)")
    }
}

/// Scaled dot-product attention over separate Q, K, V row buffers, one head at a time with cq_sgemm:
///   S_h = scale · Q_h · K_gᵀ  (+ causal mask),  P_h = softmax(S_h),  O_h = P_h · V_g,   g = h / (heads / kvHeads)
/// Shapes: Q and O are [T, heads·headDim], K and V are [S, kvHeads·headDim] (rows `ld*` floats apart).
struct Attention {
    var heads: Int
    var kvHeads: Int
    var headDim: Int

    var scale: Float { 1 / Float(headDim).squareRoot() }

    /// Floats of score scratch for T queries over at most S keys (one head at a time).
    static func scoreFloats(queries t: Int, keys s: Int) -> Int { t * s }

    /// Bytes of sgemm workspace for up to S keys.
    func workspaceBytes(keys s: Int) -> Int {
        max(cq_sgemm_workspace_bytes(Int64(s), Int64(headDim)), cq_sgemm_workspace_bytes(Int64(headDim), Int64(s)))
    }

    /// - Parameters:
    ///   - causalOffset: when set, query i sits at position offset + i and sees keys 0…offset + i only.
    ///   - probabilities: when set, receives P as [heads, T, S].
    ///   - firstRows: when set, receives each head's first query row P[h, 0, :] as [heads, S].
    ///   - columnSums: when set, receives Σ_h Σ_i P[h, i, j] [S], summed in Double in (h, i) order (the attention
    ///     each key receives, without keeping the [heads, T, S] maps).
    func callAsFunction(q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int,
                        v: UnsafePointer<Float>, ldv: Int, queries t: Int, keys s: Int, causalOffset: Int?,
                        scores: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawPointer?,
                        into out: UnsafeMutablePointer<Float>, ldo: Int,
                        probabilities: UnsafeMutablePointer<Float>? = nil, firstRows: UnsafeMutablePointer<Float>? = nil,
                        columnSums: UnsafeMutablePointer<Double>? = nil) throws {
        let group = heads / kvHeads
        columnSums?.update(repeating: 0, count: s)
        for h in 0..<heads {
            let g = h / group
            try KernelError.check(cq_sgemm(Int64(t), Int64(s), Int64(headDim), scale, q + h * headDim, Int64(ldq),
                                           k + g * headDim, Int64(ldk), 1, 0, scores, Int64(s), workspace))
            Ops.softmaxRows(scores, rows: t, cols: s, ld: s, causalOffset: causalOffset)
            if let probabilities { (probabilities + h * t * s).update(from: scores, count: t * s) }
            if let firstRows { (firstRows + h * s).update(from: scores, count: s) }
            if let columnSums {
                for i in 0..<t {
                    let row = scores + i * s
                    for j in 0..<s { columnSums[j] += Double(row[j]) }
                }
            }
            try KernelError.check(cq_sgemm(Int64(t), Int64(headDim), Int64(s), 1, scores, Int64(s),
                                           v + g * headDim, Int64(ldv), 0, 0, out + h * headDim, Int64(ldo), workspace))
        }
    }
}

extension Attention {
    /// The same attention over a KV cache kept in `type` (F32 or F16), read as stored: one pass over each KV
    /// group's rows shared by the group's heads (cq_attention_cached). `scores`: queries · heads · keys floats.
    func cached(q: UnsafePointer<Float>, ldq: Int, k: UnsafeRawPointer, v: UnsafeRawPointer, type: QuantType, ld: Int,
                queries t: Int, keys s: Int, causalOffset: Int?, scores: UnsafeMutablePointer<Float>,
                into out: UnsafeMutablePointer<Float>, ldo: Int) throws {
        try KernelError.check(cq_attention_cached(Int64(t), Int64(s), Int64(heads), Int64(kvHeads), Int64(headDim), scale,
                                                  q, Int64(ldq), type.rawValue, k, Int64(ld), v, Int64(ld),
                                                  Int64(causalOffset ?? -1), scores, out, Int64(ldo)))
    }
}

/// One planned block of scratch memory: every buffer a forward pass needs is reserved up front in a plan, then
/// allocated once; layers reuse the same buffers.
struct ArenaPlan {
    /// nil once a size overflowed (sizes come from files and user requests; they are checked, not trusted).
    private(set) var bytes: Int? = 0

    /// Offset of a new region of `count` floats (64-byte aligned).
    mutating func floats(_ count: Int) -> Int {
        guard let n = Checked.mul(count, MemoryLayout<Float>.size) else { bytes = nil; return 0 }
        return raw(n)
    }

    mutating func raw(_ count: Int) -> Int {
        guard let at = bytes else { return 0 }
        bytes = Checked.alignUp(max(count, 1), 64).flatMap { Checked.add(at, $0) }
        return at
    }
}

/// The memory of a plan: one anonymous mapping. Its pages are zero and cost nothing until first written, so a KV
/// cache planned for many positions commits memory only as positions are filled (and the logits of rows never
/// computed, or scratch for batches never run, are never committed).
final class Arena {
    let base: UnsafeMutableRawPointer
    let bytes: Int

    /// Maps the plan after checking it against the memory the process can get; `what` names the arena's
    /// contents in the error, e.g. "the decoder's KV cache (2048 positions) and scratch".
    init(_ plan: ArenaPlan, for what: @autoclosure () -> String) throws {
        try Memory.check(plan.bytes, for: what())
        bytes = max(plan.bytes ?? 0, 64)
        // MAP_NORESERVE: the address range is reserved, not the memory (pages are committed as they are touched).
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else {
            throw MemoryError(message: "\(what()): cannot map \(Memory.formatBytes(bytes)): \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit { munmap(base, bytes) }

    func floats(_ offset: Int) -> UnsafeMutablePointer<Float> { (base + offset).assumingMemoryBound(to: Float.self) }
    func raw(_ offset: Int) -> UnsafeMutableRawPointer { base + offset }
}

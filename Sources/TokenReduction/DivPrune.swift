import CQuant
import VZQModels

/// DivPrune (Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models", CVPR 2025,
/// arXiv 2503.02175): keep the k tokens whose features are most spread out — a greedy answer to the Max-Min
/// Diversity Problem over cosine distances. Text-agnostic and attention-free: it reads only the features.
///
///   d(i, j) = 1 − cos(x_i, x_j)
///   first:  s₁ = argmax_j min_{i ≠ j} d(i, j)          (the token farthest from its nearest neighbour)
///   then:   s_m = argmax_{j ∉ S} min_{i ∈ S} d(i, j)   (the token farthest from everything kept so far)
///   ties → lower index; the kept tokens are emitted in ascending index order (their positions are kept).
///
/// The paper prunes the visual tokens the language model would receive (after the projector); the pipeline hands
/// this reducer projected rows (`featureSpace == .projected`). Cost: one T×T Gram matrix (fp32 GEMM,
/// T²·width MACs) and O(k·T) for the greedy steps; T² floats of memory.
public enum DivPrune {
    /// Indices (ascending) of the `count` most diverse rows of `features` [tokens, width]. count ≥ tokens keeps all.
    public static func select(features: UnsafeBufferPointer<Float>, width: Int, count: Int) throws -> [Int] {
        guard width > 0, features.count % width == 0 else {
            throw VisionZipError("DivPrune: \(features.count) feature values are not rows of width \(width)")
        }
        let t = features.count / width
        let k = min(max(count, 0), t)
        if k == t { return Array(0..<t) }
        if k == 0 { return [] }
        let distance = try cosineDistances(features, tokens: t, width: width)

        // Greedy max-min: nearest[j] is j's distance to the closest kept token (to its nearest other token before
        // the first pick); a kept token is never picked again.
        var kept = [Bool](repeating: false, count: t)
        var nearest = [Float](repeating: .infinity, count: t)
        for i in 0..<t {
            for j in 0..<t where j != i { nearest[j] = min(nearest[j], distance[i * t + j]) }
        }
        var order: [Int] = []
        order.reserveCapacity(k)
        for _ in 0..<k {
            var best = -1
            for j in 0..<t where !kept[j] && (best < 0 || nearest[j] > nearest[best]) { best = j }
            kept[best] = true
            order.append(best)
            // From now on the score is the distance to the kept set only.
            if order.count == 1 {
                for j in 0..<t { nearest[j] = distance[best * t + j] }
            } else {
                for j in 0..<t { nearest[j] = min(nearest[j], distance[best * t + j]) }
            }
        }
        return order.sorted()
    }

    /// 1 − cos between every pair of rows [t, t]; a zero row is at distance 1 from everything (cosine 0).
    static func cosineDistances(_ x: UnsafeBufferPointer<Float>, tokens t: Int, width w: Int) throws -> [Float] {
        var unit = [Float](repeating: 0, count: t * w)
        for i in 0..<t {
            var sq = 0.0
            for j in 0..<w { sq += Double(x[i * w + j]) * Double(x[i * w + j]) }
            guard sq.isFinite else { throw VisionZipError("DivPrune: feature row \(i) is not finite") }
            let scale = sq > 0 ? Float(1 / sq.squareRoot()) : 0
            for j in 0..<w { unit[i * w + j] = x[i * w + j] * scale }
        }
        var gram = [Float](repeating: 0, count: t * t)
        let status = unit.withUnsafeBufferPointer { u in
            gram.withUnsafeMutableBufferPointer { g in
                cq_sgemm(Int64(t), Int64(t), Int64(w), 1, u.baseAddress, Int64(w), u.baseAddress, Int64(w), 1, 0,
                         g.baseAddress, Int64(t), nil)
            }
        }
        guard status == CQ_OK else { throw VisionZipError("DivPrune: similarity GEMM failed (status \(status.rawValue))") }
        for i in 0..<gram.count { gram[i] = 1 - gram[i] }
        return gram
    }
}

/// DivPrune as a token reducer: keeps `budget.total` rows chosen by feature diversity (no contextual merging, no
/// attention maps), so it works with encoders that never materialise attention.
public struct DivPruneReducer: TokenReducer {
    public init() {}

    public var name: String { "divprune" }

    /// Features only.
    public var probe: AttentionProbe { [] }

    /// The language model's input space, as the paper prunes.
    public var featureSpace: ReducerFeatureSpace { .projected }

    /// Every kept row is kept as it is: the whole budget, nothing merged.
    public func keptSplit(for budget: VisionZip.Budget) -> VisionZip.Budget {
        VisionZip.Budget(dominant: budget.total, contextual: 0)
    }

    public func reduce(_ input: ReducerInput, budget: VisionZip.Budget, merge: VisionZip.Merge) throws -> VisionZip.Output {
        let t = input.tokens
        let keep = try input.hidden.withUnsafeBufferPointer {
            try DivPrune.select(features: $0, width: input.width, count: budget.total)
        }
        var rows = [Float]()
        rows.reserveCapacity(keep.count * input.width)
        for i in keep { rows += input.hidden[i * input.width ..< (i + 1) * input.width] }
        var isKept = [Bool](repeating: false, count: t)
        for i in keep { isKept[i] = true }
        let selection = VisionZip.Selection(
            dominant: keep, remaining: (0..<t).filter { !isKept[$0] }, contextual: [], step: 0, rule: .diversity,
            requested: budget, applied: VisionZip.Budget(dominant: keep.count, contextual: 0), tokensBefore: t)
        return VisionZip.Output(rows: rows, selection: selection)
    }
}

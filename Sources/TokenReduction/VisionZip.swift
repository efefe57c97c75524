import VZQModels

/// VisionZip (Yang et al., arXiv 2412.04467), as restated in /work/shared/visionzip.md: keep the D tokens the
/// encoder attends to most ("dominant", CLS included) and merge the rest into C "contextual" tokens.
///
/// Inputs, all from the vision tower's feature layer (see `AttentionProbe`), row-major float32:
///   A  attention probabilities [heads, T, T] — or only the CLS query rows [heads, T] (CLS rule only)
///   K  keys after bias, averaged over heads [T, headDim] — the merging metric
///   H  output hidden states [T, width], CLS first when the encoder has one
///
/// Step 1 (dominant). With CLS: s[j] = Σ_h A[h, 0, j] over patches j ≥ 1; keep 0 and the D − 1 best patches.
///   Without CLS (SigLIP): s[j] = mean_{h,i} A[h, i, j] over all tokens; keep the D best.
///   Ties → lower index. Kept tokens are emitted in ascending index order (CLS first).
/// Step 2 (contextual). The R = T − D other tokens, ascending; unit-normalised K rows. Targets sit at remaining
///   positions 0, step, 2·step, … with step = max(1, R / C), the first C of them. Every other remaining token
///   joins the target of highest cosine (ties → lowest target). Row c = H[target] + mean(H[members]) (`.sum`,
///   the reference; 0 mean without members) or mean(H[target] ∪ H[members]) (`.mean`).
///
/// Scores, cosines and means are accumulated in Double and each output row is rounded to Float once, as the
/// reference does. Cost: O(heads·T) (CLS rule) or O(heads·T²) (SigLIP rule) for scoring, O(R·C·headDim) for
/// assignment, O(T·width) for the rows. A call allocates a fixed handful of buffers sized by T, R·headDim and width;
/// `compress(…, into:)` writes the rows into caller memory.
public enum VisionZip {
    /// How a contextual row combines its target with the tokens assigned to it.
    public enum Merge: String, Sendable, CaseIterable {
        /// H[target] + mean(H[members]) — the reference implementation (default).
        case sum
        /// mean over the target and its members.
        case mean
    }

    /// Which score picked the dominant tokens (for run reports).
    public enum ScoringRule: String, Sendable {
        /// Attention from the CLS query, summed over heads (CLIP; CLS always kept).
        case classAttention = "cls-attention"
        /// Attention received, averaged over queries and heads (SigLIP: no CLS token).
        case receivedAttention = "received-attention"
        /// Scores computed by the caller: received attention summed over the patches a pixel-shuffle connector
        /// (Idefics3/SmolVLM) folds into one token, whose tokens are then what VisionZip keeps or merges.
        case groupedReceivedAttention = "received-attention-grouped"
        /// DivPrune's max-min feature diversity (no attention; nothing merged).
        case diversity = "max-min-diversity"
    }

    /// The attention input: the full probabilities or, for the CLS rule, only what it reads.
    public enum Attention {
        /// [heads, T, T], query-major: element (h, i, j) at (h·T + i)·T + j.
        case full(UnsafeBufferPointer<Float>, heads: Int)
        /// [heads, T]: the CLS query row A[h, 0, :] of each head.
        case classRows(UnsafeBufferPointer<Float>, heads: Int)
        /// [T]: one score per token, already reduced (`groupedReceivedAttention`; no CLS).
        case scores(UnsafeBufferPointer<Double>)
        /// [T]: the received-attention rule's scores, mean_{h,i} A[h, i, j], computed by the encoder
        /// (`VisionOutput.receivedAttention`) so the [heads, T, T] maps need not be kept.
        case received(UnsafeBufferPointer<Double>)
    }

    /// A token budget: D dominant tokens (CLS counted among them when there is one) and C contextual tokens.
    public struct Budget: Sendable, Equatable, CustomStringConvertible {
        public var dominant: Int
        public var contextual: Int
        public init(dominant: Int, contextual: Int) { (self.dominant, self.contextual) = (dominant, contextual) }
        public var total: Int { dominant + contextual }

        /// More tokens than any encoder makes (2²⁴) is a mistake, and would overflow the split's arithmetic.
        public static let maxTokens = 1 << 24

        package static func checkSize(_ n: Int) throws {
            guard n <= maxTokens else {
                throw VisionZipError("visual token budget \(n) is larger than any encoder's tokens (at most \(maxTokens))")
            }
        }
        public var description: String { "\(dominant)+\(contextual)" }

        /// Splits `--visual-tokens N` as the paper does (54:10 = 84.4:15.6):
        ///   C = round(5·N / 32), halves rounded up, i.e. (5·N + 16) / 32 in integers;  D = N − C.
        /// 64 → 54+10, 128 → 108+20, 192 → 162+30 exactly; N ≤ 3 → N+0. D ≥ 1 for every N ≥ 1.
        public static func split(visualTokens n: Int) throws -> Budget {
            guard n >= 1 else { throw VisionZipError("visual token budget must be at least 1, got \(n)") }
            try checkSize(n)
            let c = (5 * n + 16) / 32
            return Budget(dominant: n - c, contextual: c)
        }
    }

    /// One contextual token: the remaining token it is anchored on and the tokens merged into it (ascending).
    public struct Contextual: Sendable, Equatable {
        public var target: Int
        public var members: [Int]
        public init(target: Int, members: [Int]) { (self.target, self.members) = (target, members) }
    }

    /// What VisionZip kept, and why — everything a run report needs.
    public struct Selection: Sendable, Equatable {
        /// Token indices kept as they are, ascending (CLS = 0 first when there is one).
        public var dominant: [Int]
        /// The remaining tokens, ascending (T − D of them).
        public var remaining: [Int]
        /// Contextual tokens in target order (= ascending target index).
        public var contextual: [Contextual]
        /// step between targets within `remaining` (0 when there are no contextual tokens).
        public var step: Int
        public var rule: ScoringRule
        /// The budget asked for, and the one applied after clamping to the token count.
        public var requested: Budget
        public var applied: Budget
        /// T before, D + C after.
        public var tokensBefore: Int
        public var tokensAfter: Int { dominant.count + contextual.count }

        /// Per remaining token, the contextual slot it joined, −1 for targets (the reference's `members` array;
        /// empty when there are no contextual tokens).
        public var memberSlots: [Int] {
            guard !contextual.isEmpty else { return [] }
            var slotOf = [Int: Int]()
            for (slot, c) in contextual.enumerated() { for m in c.members { slotOf[m] = slot } }
            return remaining.map { slotOf[$0] ?? -1 }
        }

        /// The same selection with every index moved by `offset` (rows counted after a dropped CLS token → the
        /// encoder's token indices), over `tokensBefore` tokens.
        public func shifted(by offset: Int, tokensBefore t: Int) -> Selection {
            var s = self
            s.dominant = dominant.map { $0 + offset }
            s.remaining = (0..<offset).map { $0 } + remaining.map { $0 + offset }
            s.contextual = contextual.map { Contextual(target: $0.target + offset, members: $0.members.map { $0 + offset }) }
            s.tokensBefore = t
            return s
        }

        /// One line for logs: "VisionZip cls-attention 577 → 64 tokens (54 dominant + 10 contextual, merge sum)".
        public func summary(merge: Merge) -> String {
            if rule == .diversity { return "DivPrune \(rule.rawValue) \(tokensBefore) → \(tokensAfter) tokens" }
            return "VisionZip \(rule.rawValue) \(tokensBefore) → \(tokensAfter) tokens "
                + "(\(dominant.count) dominant + \(contextual.count) contextual, merge \(merge.rawValue))"
        }
    }

    /// Rows and selection together.
    public struct Output: Sendable {
        /// [D + C, width]: the dominant rows, then the contextual rows.
        public var rows: [Float]
        public var selection: Selection
    }

    // MARK: - Entry points

    /// Selects and merges; returns the D + C rows [D + C, width] and the selection.
    public static func compress(attention: Attention, keysMean: UnsafeBufferPointer<Float>, headDim: Int,
                                hidden: UnsafeBufferPointer<Float>, width: Int, budget: Budget, hasCLS: Bool = true,
                                merge: Merge = .sum) throws -> Output {
        let s = try select(attention: attention, keysMean: keysMean, headDim: headDim, budget: budget, hasCLS: hasCLS)
        var rows = [Float](repeating: 0, count: s.tokensAfter * width)
        try rows.withUnsafeMutableBufferPointer { try gather(s, hidden: hidden, width: width, merge: merge, into: $0) }
        return Output(rows: rows, selection: s)
    }

    /// Array convenience: attention is [heads, T, T], or [heads, T] CLS rows when `classRowsOnly`.
    public static func compress(attention: [Float], heads: Int, classRowsOnly: Bool = false, keysMean: [Float],
                                hidden: [Float], budget: Budget, hasCLS: Bool = true,
                                merge: Merge = .sum) throws -> Output {
        guard heads > 0 else { throw VisionZipError("heads must be positive, got \(heads)") }
        let t = classRowsOnly ? attention.count / heads : Int(Double(attention.count / heads).squareRoot().rounded())
        guard t > 0, keysMean.count % t == 0, hidden.count % t == 0 else {
            throw VisionZipError("cannot infer T: attention \(attention.count) values over \(heads) heads, "
                                 + "keys \(keysMean.count), hidden \(hidden.count)")
        }
        return try attention.withUnsafeBufferPointer { a in
            try keysMean.withUnsafeBufferPointer { k in
                try hidden.withUnsafeBufferPointer { h in
                    try compress(attention: classRowsOnly ? .classRows(a, heads: heads) : .full(a, heads: heads),
                                 keysMean: k, headDim: keysMean.count / t, hidden: h, width: hidden.count / t,
                                 budget: budget, hasCLS: hasCLS, merge: merge)
                }
            }
        }
    }

    /// Steps 1 and 2 without touching H: which tokens are kept, and which are merged into which.
    ///
    /// Budgets: negative D or C, or D < 1 with CLS (CLS is always kept), or D + C = 0, are errors. Budgets larger
    /// than the image are clamped, not rejected (one `--visual-tokens` value serves every encoder and crop):
    /// D → min(D, T); C → min(C, R) with R = T − D (the reference's target list stops at R anyway).
    public static func select(attention: Attention, keysMean: UnsafeBufferPointer<Float>, headDim: Int,
                              budget: Budget, hasCLS: Bool = true) throws -> Selection {
        guard headDim > 0 else { throw VisionZipError("headDim must be positive, got \(headDim)") }
        let t = keysMean.count / headDim
        guard t > 0, keysMean.count == t * headDim else {
            throw VisionZipError("keys mean has \(keysMean.count) values, not a multiple of headDim \(headDim)")
        }
        guard budget.dominant >= 0, budget.contextual >= 0 else { throw VisionZipError("negative budget \(budget)") }
        if hasCLS && budget.dominant < 1 {
            throw VisionZipError("dominant budget must be at least 1 with a CLS token (CLS is always kept), got \(budget)")
        }
        guard budget.total >= 1 else { throw VisionZipError("empty budget \(budget)") }
        let d = min(budget.dominant, t)
        let r = t - d
        let c = min(budget.contextual, r)

        // Step 1.
        var rule: ScoringRule = hasCLS ? .classAttention : .receivedAttention
        if case .scores = attention {
            guard !hasCLS else { throw VisionZipError("precomputed scores are for encoders without a CLS token") }
            rule = .groupedReceivedAttention
        }
        var scores = [Double](repeating: 0, count: t)
        try score(attention, tokens: t, rule: rule, into: &scores)
        var keep = [Bool](repeating: false, count: t)
        let first = hasCLS ? 1 : 0
        if hasCLS { keep[0] = true }
        // Candidates sorted by descending score, ties → lower index; the first D − first win.
        var candidates = Array(first..<t)
        candidates.sort { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        for i in candidates.prefix(d - first) { keep[i] = true }
        var dominant: [Int] = [], remaining: [Int] = []
        dominant.reserveCapacity(d)
        remaining.reserveCapacity(r)
        for i in 0..<t { if keep[i] { dominant.append(i) } else { remaining.append(i) } }

        // Step 2.
        var contextual: [Contextual] = []
        var step = 0
        if c > 0 {
            step = max(1, r / c)
            contextual = assign(remaining: remaining, keysMean: keysMean, headDim: headDim, step: step, count: c)
        }
        return Selection(dominant: dominant, remaining: remaining, contextual: contextual, step: step, rule: rule,
                         requested: budget, applied: Budget(dominant: d, contextual: c), tokensBefore: t)
    }

    /// Writes the D + C output rows for `selection` into `out` [D + C, width].
    public static func gather(_ selection: Selection, hidden: UnsafeBufferPointer<Float>, width: Int, merge: Merge = .sum,
                              into out: UnsafeMutableBufferPointer<Float>) throws {
        let t = selection.tokensBefore
        guard width > 0, hidden.count == t * width else {
            throw VisionZipError("hidden has \(hidden.count) values, expected \(t) tokens × width \(width)")
        }
        guard out.count == selection.tokensAfter * width else {
            throw VisionZipError("output has \(out.count) values, expected \(selection.tokensAfter) rows × \(width)")
        }
        var row = 0
        for i in selection.dominant {
            for j in 0..<width { out[row * width + j] = hidden[i * width + j] }
            row += 1
        }
        var acc = [Double](repeating: 0, count: width)
        for ctx in selection.contextual {
            for j in 0..<width { acc[j] = 0 }
            for m in ctx.members {
                for j in 0..<width { acc[j] += Double(hidden[m * width + j]) }
            }
            let base = ctx.target * width
            switch merge {
            case .sum:
                let n = Double(ctx.members.count)
                for j in 0..<width {
                    let mean = ctx.members.isEmpty ? 0 : acc[j] / n
                    out[row * width + j] = Float(Double(hidden[base + j]) + mean)
                }
            case .mean:
                let n = Double(ctx.members.count + 1)
                for j in 0..<width { out[row * width + j] = Float((acc[j] + Double(hidden[base + j])) / n) }
            }
            row += 1
        }
    }

    // MARK: - Steps

    /// scores[j] for every token j (the CLS rule leaves scores[0] = 0; it is never a candidate).
    static func score(_ attention: Attention, tokens t: Int, rule: ScoringRule, into scores: inout [Double]) throws {
        switch (attention, rule) {
        case let (.full(a, heads), .classAttention):
            guard heads > 0, a.count == heads * t * t else {
                throw VisionZipError("attention has \(a.count) values, expected \(heads) heads × \(t) × \(t)")
            }
            for h in 0..<heads {
                let row = h * t * t  // query 0 of head h
                for j in 1..<max(t, 1) { scores[j] += Double(a[row + j]) }
            }
        case let (.classRows(a, heads), .classAttention):
            guard heads > 0, a.count == heads * t else {
                throw VisionZipError("CLS attention rows have \(a.count) values, expected \(heads) heads × \(t)")
            }
            for h in 0..<heads {
                for j in 1..<max(t, 1) { scores[j] += Double(a[h * t + j]) }
            }
        case let (.full(a, heads), .receivedAttention):
            guard heads > 0, a.count == heads * t * t else {
                throw VisionZipError("attention has \(a.count) values, expected \(heads) heads × \(t) × \(t)")
            }
            for q in 0..<(heads * t) {
                let row = q * t
                for j in 0..<t { scores[j] += Double(a[row + j]) }
            }
            let n = Double(heads * t)
            for j in 0..<t { scores[j] /= n }
        case (.classRows, .receivedAttention):
            throw VisionZipError("the received-attention rule (no CLS token) needs the full attention [heads, T, T]")
        case let (.received(given), .receivedAttention):
            guard given.count == t else { throw VisionZipError("\(given.count) received-attention scores for \(t) tokens") }
            for j in 0..<t { scores[j] = given[j] }
        case (.received, _):
            throw VisionZipError("received-attention scores are for encoders without a CLS token")
        case let (.scores(given), .groupedReceivedAttention):
            guard given.count == t else { throw VisionZipError("\(given.count) scores for \(t) tokens") }
            for j in 0..<t { scores[j] = given[j] }
        case (.scores, _), (_, .groupedReceivedAttention):
            throw VisionZipError("precomputed scores go with the grouped received-attention rule only")
        case (_, .diversity):
            throw VisionZipError("the diversity rule is DivPrune's; VisionZip scores by attention")
        }
    }

    /// The received-attention score of every token, s[j] = mean over heads h and queries i of A[h, i, j]
    /// (attention [heads, T, T]); what `groupedReceivedAttention` sums over each token's patches.
    public static func receivedAttention(_ attention: UnsafeBufferPointer<Float>, heads: Int) throws -> [Double] {
        guard heads > 0 else { throw VisionZipError("heads must be positive, got \(heads)") }
        let t = Int(Double(attention.count / heads).squareRoot().rounded())
        guard t > 0, attention.count == heads * t * t else {
            throw VisionZipError("attention has \(attention.count) values, not \(heads) heads × T × T")
        }
        var s = [Double](repeating: 0, count: t)
        try score(.full(attention, heads: heads), tokens: t, rule: .receivedAttention, into: &s)
        return s
    }

    /// Targets at remaining positions 0, step, … (first `count`); every other remaining token joins the target
    /// whose unit-normalised metric has the largest dot product with its own (ties → lowest target).
    static func assign(remaining: [Int], keysMean k: UnsafeBufferPointer<Float>, headDim hd: Int, step: Int,
                       count c: Int) -> [Contextual] {
        let r = remaining.count
        // Unit metric rows of the remaining tokens, in remaining order.
        var unit = [Double](repeating: 0, count: r * hd)
        for (p, i) in remaining.enumerated() {
            var norm = 0.0
            for j in 0..<hd { let v = Double(k[i * hd + j]); norm += v * v }
            norm = norm.squareRoot()
            guard norm > 0 else { continue }  // a zero metric row has cosine 0 with everything
            for j in 0..<hd { unit[p * hd + j] = Double(k[i * hd + j]) / norm }
        }
        var contextual = (0..<c).map { Contextual(target: remaining[$0 * step], members: []) }
        var p = 0
        while p < r {
            if p % step == 0 && p / step < c { p += 1; continue }  // a target
            var best = 0, bestSim = -Double.infinity
            for slot in 0..<c {
                let tp = slot * step
                var dot = 0.0
                for j in 0..<hd { dot += unit[tp * hd + j] * unit[p * hd + j] }
                if dot > bestSim { best = slot; bestSim = dot }
            }
            contextual[best].members.append(remaining[p])
            p += 1
        }
        return contextual
    }
}

public struct VisionZipError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

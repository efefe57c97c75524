import Foundation

/// How the next token is chosen from the logits. Each filter is off at its neutral value.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// 0: greedy (argmax, lowest id on ties); otherwise logits are divided by it before the softmax.
    public var temperature: Float
    /// Keep only the k most likely tokens (0: off).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches topP (1: off).
    public var topP: Float
    /// Drop tokens less likely than minP × the most likely one (0: off).
    public var minP: Float
    /// Divide positive logits (multiply negative ones) of tokens seen in the last `repeatLastN` of the history
    /// by this, as HF's RepetitionPenaltyLogitsProcessor and llama.cpp do (1: off).
    public var repeatPenalty: Float
    public var repeatLastN: Int
    /// Seeds the generator: the same seed, logits and history give the same tokens.
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repeatPenalty: Float = 1,
                repeatLastN: Int = 64, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatLastN = repeatLastN
        self.seed = seed
    }

    public static let greedy = SamplingParameters()

    /// Throws for values that make no sampling sense (they come from the command line).
    public func validate() throws {
        func fail(_ what: String) -> SamplingError { SamplingError(description: "sampling: \(what)") }
        guard temperature.isFinite, temperature >= 0 else { throw fail("temperature must be ≥ 0 (got \(temperature))") }
        guard topK >= 0 else { throw fail("top-k must be ≥ 0 (got \(topK))") }
        guard topP > 0, topP <= 1 else { throw fail("top-p must be in (0, 1] (got \(topP))") }
        guard minP >= 0, minP <= 1 else { throw fail("min-p must be in [0, 1] (got \(minP))") }
        guard repeatPenalty.isFinite, repeatPenalty > 0 else { throw fail("repeat penalty must be > 0 (got \(repeatPenalty))") }
        guard repeatLastN >= 0 else { throw fail("repeat-last-n must be ≥ 0 (got \(repeatLastN))") }
    }
}

public struct SamplingError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// Picks tokens from logits: repeat penalty → (greedy) or top-k → temperature → softmax → top-p → min-p → draw.
///
/// Randomness: SeededRandom (xorshift64*) seeded with `parameters.seed`; one 53-bit uniform per sampled token.
/// Memory: the buffers (a working copy of the logits, candidate ids, their weights, penalty stamps) are sized on
/// the first call and reused; a token costs no allocation. Top-k and top-p use partial selection (quickselect,
/// then sorting only the selected ids); top-p without top-k selects the best 64 tokens and widens ×4 until
/// their mass reaches p, so a 150k vocabulary is not sorted per token unless its distribution is nearly flat.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: SeededRandom
    private var work: [Float] = []
    private var ids: [Int32] = []
    private var weights: [Double] = []
    private var stamps: [UInt32] = []
    private var stamp: UInt32 = 0

    public init(_ parameters: SamplingParameters) throws {
        try parameters.validate()
        self.parameters = parameters
        random = SeededRandom(seed: parameters.seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x2545_F491)
    }

    /// The next token. `logits` has one value per vocabulary entry (NaN counts as -∞, +∞ as the largest finite value); `history` is the
    /// sequence so far (prompt and generated tokens), used by the repeat penalty.
    public mutating func sample(logits: UnsafeBufferPointer<Float>, history: [Int32]) -> Int32 {
        let n = logits.count
        precondition(n > 0, "Sampler.sample: empty logits")
        prepare(logits, history)
        if parameters.temperature == 0 || parameters.topK == 1 { return argmax(n) }
        let m = candidates(n)
        // draw in [0, total) over the kept weights (zero weights were filtered out)
        var total = 0.0
        for i in 0 ..< m { total += weights[i] }
        guard total > 0, total.isFinite else { return ids[0] }
        let u = Double(random.next() >> 11) * 0x1p-53 * total
        var acc = 0.0
        for i in 0 ..< m where weights[i] > 0 {
            acc += weights[i]
            if u < acc { return ids[i] }
        }
        for i in stride(from: m - 1, through: 0, by: -1) where weights[i] > 0 { return ids[i] }  // rounding
        return ids[0]
    }

    /// The kept tokens and their probabilities (for tests): what `sample` draws from, best first when a top-k
    /// or top-p selection sorted them, else in id order.
    mutating func distribution(logits: UnsafeBufferPointer<Float>, history: [Int32]) -> [(id: Int32, p: Double)] {
        prepare(logits, history)
        if parameters.temperature == 0 || parameters.topK == 1 { return [(argmax(logits.count), 1)] }
        let m = candidates(logits.count)
        let total = (0 ..< m).reduce(0.0) { $0 + weights[$1] }
        return (0 ..< m).filter { weights[$0] > 0 }.map { (ids[$0], weights[$0] / total) }
    }

    // MARK: steps

    /// work = logits with NaN → -∞ and the repeat penalty applied once per distinct recent token.
    private mutating func prepare(_ logits: UnsafeBufferPointer<Float>, _ history: [Int32]) {
        let n = logits.count
        if work.count != n {
            work = [Float](repeating: 0, count: n)
            ids = [Int32](repeating: 0, count: n)
            weights = [Double](repeating: 0, count: n)
            stamps = [UInt32](repeating: 0, count: n)
            stamp = 0
        }
        // NaN never wins; +∞ becomes the largest finite value so that softmax stays finite
        for i in 0 ..< n {
            let v = logits[i]
            work[i] = v.isNaN ? -.infinity : min(v, .greatestFiniteMagnitude)
        }
        let penalty = parameters.repeatPenalty
        guard penalty != 1, parameters.repeatLastN > 0, !history.isEmpty else { return }
        stamp &+= 1
        if stamp == 0 {  // wrapped: clear the stamps once every 2^32 tokens
            for i in 0 ..< n { stamps[i] = 0 }
            stamp = 1
        }
        for t in history.suffix(parameters.repeatLastN) where t >= 0 && Int(t) < n && stamps[Int(t)] != stamp {
            stamps[Int(t)] = stamp
            let v = work[Int(t)]
            work[Int(t)] = v > 0 ? v / penalty : v * penalty
        }
    }

    private func argmax(_ n: Int) -> Int32 {
        var best = 0
        for i in 1 ..< max(n, 1) where work[i] > work[best] { best = i }  // strict: lowest id wins ties
        return Int32(best)
    }

    /// Fills ids[0..<m] and weights[0..<m] (unnormalised probabilities, 0 = filtered out) and returns m.
    private mutating func candidates(_ n: Int) -> Int {
        let p = parameters
        let invT = Double(1 / p.temperature)
        let useTopK = p.topK > 0 && p.topK < n
        var m = n
        if useTopK {
            m = p.topK
            selectBest(m, of: n)
        } else if p.topP < 1 {
            m = nucleus(n, invT)
        } else {
            for i in 0 ..< n { ids[i] = Int32(i) }
        }
        // softmax weights over the m candidates, relative to the best one
        var best = -Float.infinity
        for i in 0 ..< m { best = max(best, work[Int(ids[i])]) }
        guard best > -.infinity else {
            for i in 0 ..< m { weights[i] = 0 }
            weights[0] = 1
            return m
        }
        var total = 0.0
        for i in 0 ..< m {
            let w = exp(Double(work[Int(ids[i])] - best) * invT)
            weights[i] = w
            total += w
        }
        if useTopK && p.topP < 1 {
            // ids are sorted: keep the shortest prefix whose mass reaches topP
            let target = Double(p.topP) * total
            var acc = 0.0
            for i in 0 ..< m {
                acc += weights[i]
                if acc >= target {
                    m = i + 1
                    break
                }
            }
        }
        if p.minP > 0 {
            // the best candidate has weight exp(0) = 1
            let threshold = Double(p.minP)
            for i in 0 ..< m where weights[i] < threshold { weights[i] = 0 }
        }
        return m
    }

    /// Top-p over the whole vocabulary: the smallest best-first set whose probability reaches topP. Selects
    /// the best k tokens (k = 64, ×4 while their mass falls short) instead of sorting everything.
    private mutating func nucleus(_ n: Int, _ invT: Double) -> Int {
        var best = -Float.infinity
        for i in 0 ..< n { best = max(best, work[i]) }
        guard best > -.infinity else {
            ids[0] = 0
            return 1
        }
        var total = 0.0
        for i in 0 ..< n { total += exp(Double(work[i] - best) * invT) }
        let target = Double(parameters.topP) * total
        var k = min(64, n)
        while true {
            selectBest(k, of: n)
            var acc = 0.0
            for i in 0 ..< k {
                acc += exp(Double(work[Int(ids[i])] - best) * invT)
                if acc >= target { return i + 1 }
            }
            if k == n { return n }
            k = min(n, k * 4)
        }
    }

    // MARK: partial selection

    /// ids[0..<k] = the k best token ids, best first (higher logit, then lower id).
    private mutating func selectBest(_ k: Int, of n: Int) {
        for i in 0 ..< n { ids[i] = Int32(i) }
        work.withUnsafeBufferPointer { w in
            ids.withUnsafeMutableBufferPointer { b in
                // a strict total order, so partitions never see equal keys
                func before(_ a: Int32, _ c: Int32) -> Bool {
                    let x = w[Int(a)], y = w[Int(c)]
                    return x > y || (x == y && a < c)
                }
                func partition(_ lo: Int, _ hi: Int) -> Int {
                    // median of three to the end as the pivot
                    let mid = lo + (hi - lo) / 2
                    if before(b[mid], b[lo]) { b.swapAt(mid, lo) }
                    if before(b[hi], b[lo]) { b.swapAt(hi, lo) }
                    if before(b[mid], b[hi]) { b.swapAt(mid, hi) }
                    let pivot = b[hi]
                    var store = lo
                    for i in lo ..< hi where before(b[i], pivot) {
                        b.swapAt(i, store)
                        store += 1
                    }
                    b.swapAt(store, hi)
                    return store
                }
                func insertionSort(_ lo: Int, _ hi: Int) {
                    guard hi > lo else { return }
                    for i in (lo + 1) ... hi {
                        let v = b[i]
                        var j = i - 1
                        while j >= lo, before(v, b[j]) {
                            b[j + 1] = b[j]
                            j -= 1
                        }
                        b[j + 1] = v
                    }
                }
                // quickselect: afterwards b[0..<k] holds the k best, in any order
                var lo = 0, hi = n - 1
                let target = k - 1
                while hi - lo > 16 {
                    let p = partition(lo, hi)
                    if p == target { break }
                    if p < target { lo = p + 1 } else { hi = p - 1 }
                }
                if hi - lo <= 16 { insertionSort(lo, hi) }
                // then sort b[0..<k]: quicksort, recursing into the smaller side (depth ≤ log2 k)
                func sortRange(_ lo: Int, _ hi: Int) {
                    var l = lo, h = hi
                    while h - l > 16 {
                        let p = partition(l, h)
                        if p - l < h - p {
                            sortRange(l, p - 1)
                            l = p + 1
                        } else {
                            sortRange(p + 1, h)
                            h = p - 1
                        }
                    }
                    insertionSort(l, h)
                }
                sortRange(0, k - 1)
            }
        }
    }
}

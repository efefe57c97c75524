import Foundation
import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

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
/// Randomness: SeededRandom (xorshift64*) seeded from `parameters.seed`; one 53-bit uniform per sampled token.
/// Memory: the buffers (the penalised logits, (logit, id) candidates, their weights, penalty stamps, a 513-bucket
/// histogram) are sized on the first call and reused; a token costs no allocation. No per-token sort of the
/// vocabulary: tokens are bucketed by their distance to the best logit (1/32 wide up to 16, then one overflow
/// bucket), the nearest buckets holding k tokens (top-k) or reaching mass p (top-p) are gathered, and only
/// those are selected (quickselect) and sorted. Measured with `swiftc -O` on a loaded 2-core x86 machine, a
/// 151,936-token vocabulary: greedy 0.2–0.4 ms per token, temperature 1.2–3 ms (one exp per token id),
/// top-k 40 1.1–2.8 ms, top-p 0.95 on a wide synthetic distribution 4–7.5 ms.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: SeededRandom
    private var work: [Float] = []
    private var candidates: [Candidate] = []
    private var weights: [Float] = []
    private var stamps: [UInt32] = []
    private var stamp: UInt32 = 0
    private var bucketCounts = [Int](repeating: 0, count: Sampler.overflowBucket + 1)
    private var bucketMass = [Double](repeating: 0, count: Sampler.overflowBucket + 1)

    struct Candidate {
        var logit: Float
        var id: Int32
        /// Best first: higher logit, then lower id (a strict total order, so selection never meets equal keys).
        @inline(__always) func before(_ o: Candidate) -> Bool { logit > o.logit || (logit == o.logit && id < o.id) }
    }

    public init(_ parameters: SamplingParameters) throws {
        try parameters.validate()
        self.parameters = parameters
        random = SeededRandom(seed: parameters.seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x2545_F491)
    }

    private var isGreedy: Bool { parameters.temperature == 0 || parameters.topK == 1 }

    /// The next token. `logits` has one value per vocabulary entry (NaN counts as -∞, +∞ as the largest finite
    /// value); `history` is the sequence so far (prompt and generated tokens), used by the repeat penalty.
    public mutating func sample(logits: UnsafeBufferPointer<Float>, history: [Int32]) -> Int32 {
        precondition(logits.count > 0, "Sampler.sample: empty logits")
        prepare(logits, history)
        if isGreedy { return argmax() }
        let m = keep()
        let u = Double(random.next() >> 11) * 0x1p-53
        return candidates.withUnsafeBufferPointer { c in
            weights.withUnsafeBufferPointer { w in
                var total = 0.0
                for i in 0 ..< m { total += Double(w[i]) }
                // draw in [0, total) over the kept weights (filtered ones are 0)
                let target = u * total
                var acc = 0.0
                var last = c[0].id
                for i in 0 ..< m where w[i] > 0 {
                    acc += Double(w[i])
                    last = c[i].id
                    if target < acc { return c[i].id }
                }
                return last  // rounding at the very end
            }
        }
    }

    /// The kept tokens and their probabilities (for tests): what `sample` draws from.
    mutating func distribution(logits: UnsafeBufferPointer<Float>, history: [Int32]) -> [(id: Int32, p: Double)] {
        prepare(logits, history)
        if isGreedy { return [(argmax(), 1)] }
        let m = keep()
        let total = (0 ..< m).reduce(0.0) { $0 + Double(weights[$1]) }
        return (0 ..< m).filter { weights[$0] > 0 }.map { (candidates[$0].id, Double(weights[$0]) / total) }
    }

    // MARK: steps

    /// work = logits with NaN → -∞, +∞ → the largest finite value, and the repeat penalty applied once per
    /// distinct token of the last repeatLastN.
    private mutating func prepare(_ logits: UnsafeBufferPointer<Float>, _ history: [Int32]) {
        let n = logits.count
        if work.count != n {
            work = [Float](repeating: 0, count: n)
            candidates = [Candidate](repeating: Candidate(logit: 0, id: 0), count: n)
            weights = [Float](repeating: 0, count: n)
            stamps = [UInt32](repeating: 0, count: n)
            stamp = 0
        }
        work.withUnsafeMutableBufferPointer { w in
            for i in 0 ..< n {
                let v = logits[i]
                w[i] = v.isNaN ? -.infinity : min(v, .greatestFiniteMagnitude)
            }
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

    /// Highest logit; the lowest id among equals.
    private func argmax() -> Int32 {
        work.withUnsafeBufferPointer { w in
            var best = 0
            var value = w[0]
            for i in 1 ..< w.count where w[i] > value {  // strict: the first maximum stays
                best = i
                value = w[i]
            }
            return Int32(best)
        }
    }

    /// Fills candidates[0..<m] and weights[0..<m] (unnormalised probabilities exp((logit − best) / T), 0 when
    /// min-p removed the token) and returns m.
    private mutating func keep() -> Int {
        let p = parameters
        let n = work.count
        return work.withUnsafeBufferPointer { w in
            candidates.withUnsafeMutableBufferPointer { c in
                weights.withUnsafeMutableBufferPointer { wt in
                    bucketCounts.withUnsafeMutableBufferPointer { counts in
                        bucketMass.withUnsafeMutableBufferPointer { mass in
                            var best = -Float.infinity
                            for i in 0 ..< n { best = max(best, w[i]) }
                            guard best > -.infinity else {  // every logit is −∞: the first token
                                c[0] = Candidate(logit: w[0], id: 0)
                                wt[0] = 1
                                return 1
                            }
                            let s = Scratch(logits: w, candidates: c, weights: wt, counts: counts, mass: mass,
                                            best: best, invT: 1 / p.temperature)
                            let m: Int
                            if p.topK > 0 && p.topK < n {
                                m = Self.keepTopK(s, k: p.topK, topP: Double(p.topP))
                            } else if p.topP < 1 {
                                m = Self.keepTopP(s, topP: Double(p.topP))
                            } else {
                                for i in 0 ..< n {
                                    c[i] = Candidate(logit: w[i], id: Int32(i))
                                    wt[i] = exp((w[i] - best) * s.invT)
                                }
                                m = n
                            }
                            if p.minP > 0 {
                                // the best candidate has weight exp(0) = 1
                                for i in 0 ..< m where wt[i] < p.minP { wt[i] = 0 }
                            }
                            return m
                        }
                    }
                }
            }
        }
    }

    /// The buffers of one keep() call.
    private struct Scratch {
        let logits: UnsafeBufferPointer<Float>
        let candidates: UnsafeMutableBufferPointer<Candidate>
        let weights: UnsafeMutableBufferPointer<Float>
        let counts: UnsafeMutableBufferPointer<Int>
        let mass: UnsafeMutableBufferPointer<Double>
        let best: Float
        let invT: Float

        @inline(__always) func weight(_ logit: Float) -> Float { exp((logit - best) * invT) }
    }

    /// Top-k (then top-p within it): the buckets nearest the best logit that hold ≥ k tokens are gathered, and
    /// the k best of those selected and sorted.
    private static func keepTopK(_ s: Scratch, k: Int, topP: Double) -> Int {
        histogram(s, scale: 1, withMass: false)
        var boundary = overflowBucket, cum = 0
        for b in 0 ... overflowBucket {
            cum += s.counts[b]
            if cum >= k {
                boundary = b
                break
            }
        }
        let g = gather(s, scale: 1, upTo: boundary)
        selectBest(UnsafeMutableBufferPointer(rebasing: s.candidates[0 ..< g]), from: 0, count: k)
        var total = 0.0
        for i in 0 ..< k {
            s.weights[i] = s.weight(s.candidates[i].logit)
            total += Double(s.weights[i])
        }
        guard topP < 1 else { return k }
        // best first: the shortest prefix whose mass reaches topP
        var acc = 0.0
        for i in 0 ..< k {
            acc += Double(s.weights[i])
            if acc >= topP * total { return i + 1 }
        }
        return k
    }

    /// Top-p over the whole vocabulary: the buckets (by tempered distance to the best logit) whose mass reaches
    /// topP are gathered and sorted, and cut at the first prefix that reaches it.
    private static func keepTopP(_ s: Scratch, topP: Double) -> Int {
        histogram(s, scale: s.invT, withMass: true)
        var total = 0.0
        for b in 0 ... overflowBucket { total += s.mass[b] }
        let target = topP * total
        var boundary = overflowBucket, cum = 0.0
        for b in 0 ... overflowBucket {
            cum += s.mass[b]
            if cum >= target {
                boundary = b
                break
            }
        }
        while true {
            let g = gather(s, scale: s.invT, upTo: boundary)
            sort(s.candidates, 0, g - 1)
            var acc = 0.0
            for i in 0 ..< g {
                s.weights[i] = s.weight(s.candidates[i].logit)
                acc += Double(s.weights[i])
                if acc >= target { return i + 1 }
            }
            if boundary == overflowBucket { return g }
            // summed in another order, the gathered mass fell short of the target: one more bucket
            boundary += 1
            while boundary < overflowBucket, s.counts[boundary] == 0 { boundary += 1 }
        }
    }

    // MARK: buckets

    /// Tokens are bucketed by z = (best − logit) × scale ≥ 0, 32 buckets per unit up to 16; the rest (and −∞)
    /// share the overflow bucket. A bucket holds only tokens worse than every token of the buckets before it.
    static let overflowBucket = 512

    @inline(__always) private static func bucket(_ z: Float) -> Int { z < 16 ? Int(z * 32) : overflowBucket }

    /// Token counts and (withMass) the sum of exp(−z) per bucket.
    private static func histogram(_ s: Scratch, scale: Float, withMass: Bool) {
        for b in 0 ... overflowBucket {
            s.counts[b] = 0
            s.mass[b] = 0
        }
        let w = s.logits
        if withMass {
            for i in 0 ..< w.count {
                let z = (s.best - w[i]) * scale
                s.counts[bucket(z)] += 1
                s.mass[bucket(z)] += Double(exp(-z))
            }
        } else {
            for i in 0 ..< w.count { s.counts[bucket((s.best - w[i]) * scale)] += 1 }
        }
    }

    /// The tokens of buckets 0 ... last into candidates[0..<g], in id order; returns g.
    private static func gather(_ s: Scratch, scale: Float, upTo last: Int) -> Int {
        let w = s.logits
        var g = 0
        for i in 0 ..< w.count where bucket((s.best - w[i]) * scale) <= last {
            s.candidates[g] = Candidate(logit: w[i], id: Int32(i))
            g += 1
        }
        return g
    }

    // MARK: partial selection

    /// Reorders c[from...] so that c[from ..< from + count] are the best `count` of them, best first.
    static func selectBest(_ c: UnsafeMutableBufferPointer<Candidate>, from: Int, count: Int) {
        guard count > 0 else { return }
        let target = from + count - 1
        var lo = from, hi = c.count - 1
        // quickselect: afterwards c[from ... target] hold the best, in any order
        while hi - lo > 16 {
            let p = partition(c, lo, hi)
            if p == target { break }
            if p < target { lo = p + 1 } else { hi = p - 1 }
        }
        if hi - lo <= 16 { insertionSort(c, lo, hi) }
        sort(c, from, target)
    }

    /// Lomuto partition around the median of c[lo], c[mid], c[hi]; returns the pivot's final index.
    private static func partition(_ c: UnsafeMutableBufferPointer<Candidate>, _ lo: Int, _ hi: Int) -> Int {
        let mid = lo + (hi - lo) / 2
        if c[mid].before(c[lo]) { c.swapAt(mid, lo) }
        if c[hi].before(c[lo]) { c.swapAt(hi, lo) }
        if c[mid].before(c[hi]) { c.swapAt(mid, hi) }
        let pivot = c[hi]
        var store = lo
        for i in lo ..< hi where c[i].before(pivot) {
            c.swapAt(i, store)
            store += 1
        }
        c.swapAt(store, hi)
        return store
    }

    private static func insertionSort(_ c: UnsafeMutableBufferPointer<Candidate>, _ lo: Int, _ hi: Int) {
        guard hi > lo else { return }
        for i in (lo + 1) ... hi {
            let v = c[i]
            var j = i - 1
            while j >= lo, v.before(c[j]) {
                c[j + 1] = c[j]
                j -= 1
            }
            c[j + 1] = v
        }
    }

    /// Quicksort of c[lo ... hi], recursing into the smaller side (depth ≤ log2 of the range).
    private static func sort(_ c: UnsafeMutableBufferPointer<Candidate>, _ lo: Int, _ hi: Int) {
        var l = lo, h = hi
        while h - l > 16 {
            let p = partition(c, l, h)
            if p - l < h - p {
                sort(c, l, p - 1)
                l = p + 1
            } else {
                sort(c, p + 1, h)
                h = p - 1
            }
        }
        insertionSort(c, l, h)
    }
}

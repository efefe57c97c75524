/// xorshift64*: a small, fast, reproducible generator for benchmark and test data (never for secrets).
package struct SeededRandom: RandomNumberGenerator, Sendable {
    package var state: UInt64
    package init(seed: UInt64) { state = seed | 1 }

    package mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    /// `count` values uniform in [−scale, scale): a fast fill for large weight matrices.
    package mutating func floats(count: Int, scale: Float) -> [Float] {
        var generator = self
        let out = [Float](unsafeUninitializedCapacity: count) { buf, initialized in
            for i in 0..<count {
                // top 24 bits → [0, 1), then to [−scale, scale)
                buf[i] = (Float(generator.next() >> 40) * 0x1p-24 * 2 - 1) * scale
            }
            initialized = count
        }
        self = generator
        return out
    }
}

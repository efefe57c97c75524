/// Per-channel sums of the inputs of each layer's two output projections over calibration tokens: the attention
/// output entering o_proj / attn_out [heads · head dim] and the activation entering down_proj / ffn_down [ffn width]
/// (a decoder's SwiGLU product, a vision block's GELU output).
/// Structured pruning scores heads and neurons from them (their variance, and their mean for bias compensation).
public final class ActivationStatistics {
    public struct Channels {
        public var sum: [Double]
        public var sumOfSquares: [Double]
        init(_ n: Int) { (sum, sumOfSquares) = ([Double](repeating: 0, count: n), [Double](repeating: 0, count: n)) }

        mutating func add(_ x: UnsafePointer<Float>, rows: Int, width: Int) {
            for r in 0..<rows {
                for j in 0..<width {
                    let v = Double(x[r * width + j])
                    sum[j] += v
                    sumOfSquares[j] += v * v
                }
            }
        }

        /// Mean of channel j over `count` rows.
        public func mean(_ j: Int, count: Int) -> Double { sum[j] / Double(max(count, 1)) }
        /// Variance (population) of channel j over `count` rows.
        public func variance(_ j: Int, count: Int) -> Double {
            let m = mean(j, count: count)
            return max(sumOfSquares[j] / Double(max(count, 1)) - m * m, 0)
        }
    }

    /// Per layer: o_proj inputs and down_proj inputs.
    public private(set) var attention: [Channels]
    public private(set) var feedForward: [Channels]
    /// Per layer: Σ ‖h‖² of the residual stream after the layer, over the rows seen (the scale a layer's output
    /// error is measured against).
    public private(set) var residualSquares: [Double]
    /// Rows (tokens) seen.
    public private(set) var count = 0

    /// Mean ‖h‖² of the residual stream after layer l.
    public func residualMeanSquare(layer l: Int) -> Double { residualSquares[l] / Double(max(count, 1)) }

    public convenience init(config c: LlamaConfig) {
        self.init(attentionWidths: (0..<c.layers).map { c.qDim(layer: $0) },
                  feedForwardWidths: (0..<c.layers).map { c.feedForward(layer: $0) })
    }

    public convenience init(vision c: VisionConfig) {
        self.init(attentionWidths: (0..<c.blockCount).map { c.heads(layer: $0) * c.headDim },
                  feedForwardWidths: (0..<c.blockCount).map { c.feedForward(layer: $0) })
    }

    public init(attentionWidths: [Int], feedForwardWidths: [Int]) {
        attention = attentionWidths.map { Channels($0) }
        feedForward = feedForwardWidths.map { Channels($0) }
        residualSquares = [Double](repeating: 0, count: attentionWidths.count)
    }

    func addResidual(layer l: Int, _ x: UnsafePointer<Float>, count n: Int) {
        var s = 0.0
        for i in 0..<n { s += Double(x[i]) * Double(x[i]) }
        residualSquares[l] += s
    }

    func addAttention(layer l: Int, _ x: UnsafePointer<Float>, rows: Int) {
        attention[l].add(x, rows: rows, width: attention[l].sum.count)
    }

    func addFeedForward(layer l: Int, _ x: UnsafePointer<Float>, rows: Int) {
        feedForward[l].add(x, rows: rows, width: feedForward[l].sum.count)
        if l == feedForward.count - 1 { count += rows }
    }
}

/// Channels of the output projections' inputs held at fixed values during a forward pass: what removing a head or a
/// neuron with FLAP's bias compensation does to the model (its input replaced by its calibration mean), simulated
/// without writing a file, so pruning can measure a removal's effect on the model's output.
public final class ChannelOverrides {
    /// Per layer: (channel, value) of the o_proj / attn_out input and of the down_proj / ffn_down input.
    public var attention: [[(channel: Int, value: Float)]]
    public var feedForward: [[(channel: Int, value: Float)]]

    public init(layers: Int) {
        attention = [[(channel: Int, value: Float)]](repeating: [], count: layers)
        feedForward = attention
    }

    func applyAttention(layer l: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        apply(attention[l], x, rows: rows, width: width)
    }

    func applyFeedForward(layer l: Int, _ x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        apply(feedForward[l], x, rows: rows, width: width)
    }

    private func apply(_ fixed: [(channel: Int, value: Float)], _ x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        guard !fixed.isEmpty else { return }
        for r in 0..<rows { for (j, v) in fixed { x[r * width + j] = v } }
    }
}

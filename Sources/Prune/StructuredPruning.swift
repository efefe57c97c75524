import Foundation
import VZQFormats
import VZQKernels
import VZQModels
import VZQRuntime
import VZQSupport

/// Training-free structured pruning of a decoder (EfficientVLM's prune step, arXiv 2210.07795, without the
/// gradients a board does not have): whole KV groups of attention heads and FFN neurons go, scored by FLAP's
/// fluctuation metric with bias compensation (An et al., "Fluctuation-based Adaptive Structured Pruning for Large
/// Language Models", AAAI 2024):
///
///   neuron j of layer l:  S = Var_t(x_j) · ‖W_down[:, j]‖²           x = silu(gate) ⊙ up, the down_proj input
///   KV group g of layer l: S = Σ_{d ∈ g's query heads} Var_t(a_d) · ‖W_o[:, d]‖²    a = the o_proj input
///
/// over the calibration tokens t: a channel whose input barely fluctuates is replaced by its mean, folded into the
/// output projection's bias (b += W[:, removed] · mean(x_removed)), so removing it changes the output little.
///
/// Allocation of the target (a fraction of the prunable parameters: q, k, v, o, gate, up, down):
///   - uniform: every layer loses the same fraction of its groups (rounded) and of its neurons;
///   - adaptive: by measured sensitivity. With the mean compensation, S is the expected squared change the removal
///     adds to the layer's output in the residual stream; divided by that stream's mean squared norm after the layer
///     and by the parameters the structure holds, it is the relative output error per parameter removed. The lowest
///     go first wherever they are (any layer, heads or neurons) until the target is reached, so layers and modules
///     end up pruned to different, measured degrees (FLAP ranks standardised scores globally instead; its per-type
///     standardisation ignores that a KV group holds ~170× a neuron's parameters, and removed almost every group).
/// Every layer keeps at least one KV group and one block of neurons; kept neuron counts are whole blocks of the
/// output type so the pruned matrices stay quantized.
public enum StructuredPruning {
    public enum Allocation: String, Sendable, CaseIterable { case uniform, adaptive }

    /// What stays of one layer.
    public struct LayerPlan: Sendable, Equatable {
        /// KV groups kept, ascending (each brings heads / kvHeads query heads).
        public var keptGroups: [Int]
        /// FFN neurons kept, ascending.
        public var keptNeurons: [Int]
    }

    public struct Plan: Sendable {
        public var layers: [LayerPlan]
        public var allocation: Allocation
        public var target: Double
        /// Prunable parameters before and removed.
        public var prunableParameters: Int
        public var removedParameters: Int
        public var removedFraction: Double { Double(removedParameters) / Double(max(prunableParameters, 1)) }
    }

    /// Scores of every structure, with what removing it saves.
    public struct Scores: Sendable {
        /// [layer][group]
        public var groups: [[Double]]
        /// [layer][neuron]
        public var neurons: [[Double]]
        /// Mean ‖h‖² of the residual stream after each layer.
        public var residualMeanSquares: [Double]
        public var groupParameters: Int
        public var neuronParameters: Int
    }

    /// FLAP's fluctuation scores from calibration statistics and the output projections' column norms.
    public static func scores(config c: LlamaConfig, statistics s: ActivationStatistics,
                              outputColumnNorms: [[Double]], downColumnNorms: [[Double]]) -> Scores {
        let hd = c.headDim, n = s.count
        var groups: [[Double]] = [], neurons: [[Double]] = []
        for l in 0..<c.layers {
            let perGroup = c.heads(layer: l) / c.kvHeads(layer: l)
            groups.append((0 ..< c.kvHeads(layer: l)).map { g in
                var total = 0.0
                for d in (g * perGroup * hd) ..< ((g + 1) * perGroup * hd) {
                    total += s.attention[l].variance(d, count: n) * outputColumnNorms[l][d]
                }
                return total
            })
            neurons.append((0 ..< c.feedForward(layer: l)).map { j in s.feedForward[l].variance(j, count: n) * downColumnNorms[l][j] })
        }
        let perGroup = c.heads / max(c.kvHeads, 1)
        return Scores(groups: groups, neurons: neurons,
                      residualMeanSquares: (0..<c.layers).map { s.residualMeanSquare(layer: $0) },
                      groupParameters: (2 * perGroup + 2) * hd * c.hidden, neuronParameters: 3 * c.hidden)
    }

    /// Which structures stay for `target` (fraction of prunable parameters), keeping neuron counts multiples of
    /// `neuronBlock`.
    public static func plan(config c: LlamaConfig, scores: Scores, target: Double, allocation: Allocation,
                            neuronBlock: Int) throws -> Plan {
        guard (0 ..< 1).contains(target) else { throw ModelError("the pruning target must be in [0, 1), got \(target)") }
        let hd = c.headDim
        var prunable = 0
        for l in 0..<c.layers {
            prunable += (2 * c.heads(layer: l) + 2 * c.kvHeads(layer: l)) * hd * c.hidden + 3 * c.feedForward(layer: l) * c.hidden
        }
        let budget = Int(target * Double(prunable))
        var removedGroups = [Set<Int>](repeating: [], count: c.layers)
        var removedNeurons = [Set<Int>](repeating: [], count: c.layers)
        func minimumNeurons(_ l: Int) -> Int { min(neuronBlock, c.feedForward(layer: l)) }

        switch allocation {
        case .uniform:
            for l in 0..<c.layers {
                let kv = c.kvHeads(layer: l), ff = c.feedForward(layer: l)
                let layerParams = (2 * c.heads(layer: l) + 2 * kv) * hd * c.hidden + 3 * ff * c.hidden
                let groupCount = min(kv - 1, Int((target * Double(kv)).rounded()))
                let byScore = (0..<kv).sorted { (scores.groups[l][$0], $0) < (scores.groups[l][$1], $1) }
                removedGroups[l] = Set(byScore.prefix(groupCount))
                let left = Double(layerParams) * target - Double(groupCount * scores.groupParameters)
                let neuronCount = max(0, min(ff - minimumNeurons(l), Int((left / Double(scores.neuronParameters)).rounded())))
                let order = (0..<ff).sorted { (scores.neurons[l][$0], $0) < (scores.neurons[l][$1], $1) }
                removedNeurons[l] = Set(order.prefix(neuronCount))
            }
        case .adaptive:
            // Relative output error per parameter removed, lowest first, over every layer and both module types.
            enum Item { case group(Int, Int), neuron(Int, Int) }
            var items: [(Double, Item)] = []
            for l in 0..<c.layers {
                let scale = max(scores.residualMeanSquares[l], .leastNormalMagnitude)
                for (g, v) in scores.groups[l].enumerated() { items.append((v / scale / Double(scores.groupParameters), .group(l, g))) }
                for (j, v) in scores.neurons[l].enumerated() { items.append((v / scale / Double(scores.neuronParameters), .neuron(l, j))) }
            }
            items.sort { $0.0 < $1.0 }
            var removed = 0
            for (_, item) in items where removed < budget {
                switch item {
                case let .group(l, g):
                    guard removedGroups[l].count + 1 < c.kvHeads(layer: l), removed + scores.groupParameters <= budget else { continue }
                    removedGroups[l].insert(g)
                    removed += scores.groupParameters
                case let .neuron(l, j):
                    guard c.feedForward(layer: l) - removedNeurons[l].count > minimumNeurons(l) else { continue }
                    removedNeurons[l].insert(j)
                    removed += scores.neuronParameters
                }
            }
        }

        // Kept neurons in whole blocks: give back the best-scored removed neurons up to the next block.
        var layers: [LayerPlan] = []
        var removedParams = 0
        for l in 0..<c.layers {
            let ff = c.feedForward(layer: l)
            var kept = (0..<ff).filter { !removedNeurons[l].contains($0) }
            let short = (neuronBlock - kept.count % neuronBlock) % neuronBlock
            if short > 0 {
                let giveBack = removedNeurons[l].sorted { (scores.neurons[l][$0], $0) > (scores.neurons[l][$1], $1) }.prefix(short)
                kept = (kept + giveBack).sorted()
            }
            let groups = (0 ..< c.kvHeads(layer: l)).filter { !removedGroups[l].contains($0) }
            removedParams += (ff - kept.count) * scores.neuronParameters + removedGroups[l].count * scores.groupParameters
            layers.append(LayerPlan(keptGroups: groups, keptNeurons: kept))
        }
        return Plan(layers: layers, allocation: allocation, target: target, prunableParameters: prunable,
                    removedParameters: removedParams)
    }
}

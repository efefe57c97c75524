import Foundation
import VZQFormats
import VZQKernels
import VZQModels
import VZQRuntime
import VZQSupport

/// Training-free structured pruning of a decoder and a vision tower (EfficientVLM's prune step, arXiv 2210.07795,
/// without the gradients a board does not have): whole KV groups of attention heads (a vision tower's heads, one
/// each) and FFN neurons go, scored by FLAP's fluctuation metric with bias compensation (An et al.,
/// "Fluctuation-based Adaptive Structured Pruning for Large Language Models", AAAI 2024):
///
///   neuron j of layer l:  S = Var_t(x_j) · ‖W_down[:, j]‖²           x = the down_proj / ffn_down input
///   KV group g of layer l: S = Σ_{d ∈ g's query heads} Var_t(a_d) · ‖W_o[:, d]‖²    a = the o_proj / attn_out input
///
/// over the calibration tokens t: a channel whose input barely fluctuates is replaced by its mean, folded into the
/// output projection's bias (b += W[:, removed] · mean(x_removed)), so removing it changes the output little.
///
/// Allocation of the target (a fraction of the prunable parameters: q, k, v, o and the FFN matrices of every layer
/// of every module given — the language model's, the vision tower's, or both):
///   - uniform: every layer loses the same fraction of its groups (rounded) and of its neurons;
///   - adaptive (modal-adaptive): by sensitivity. With the mean compensation, S is the expected squared change a
///     removal makes to its layer's output; a layer's sensitivity k turns it into a relative error:
///       decoder: k = 1 / the mean squared norm of the residual stream after the layer (the relative change of that
///         layer's output);
///       tower: k measured — for each layer and kind (heads, neurons) the lowest-scored share is held at its means
///         on calibration images (no file written) and the relative squared error of the tower's output per unit
///         of S removed is taken.
///     A structure costs k·S per parameter it holds; the cheapest go first wherever they are (any module, any
///     layer, heads or neurons) until the target is reached, so the modalities and their layers end up pruned to
///     different degrees — the training-free counterpart of EfficientVLM's learned per-modality ratios. Why two
///     rules: on DINOv2 the residual proxy empties the last blocks (their stream is largest) and measurement wins;
///     on SmolLM2 measured logit error or KL over-prune the last layers and lose to uniform, the proxy wins (FLAP
///     ranks standardised scores globally instead; its per-type standardisation ignores that a KV group holds ~170×
///     a neuron's parameters, and removed almost every group).
/// Every layer keeps at least one KV group and one block of neurons; kept neuron counts are whole blocks of the
/// output type so the pruned matrices stay quantized.
public enum StructuredPruning {
    public enum Allocation: String, Sendable, CaseIterable { case uniform, adaptive }
    public enum Module: String, Sendable { case text, vision }

    /// One layer's prunable structures, scored.
    public struct Layer: Sendable {
        public var module: Module
        /// Index within its module.
        public var index: Int
        /// Per KV group (a vision tower: per head).
        public var groupScores: [Double]
        /// Per FFN neuron.
        public var neuronScores: [Double]
        /// Parameters one group / one neuron holds (matrices only).
        public var groupParameters: Int
        public var neuronParameters: Int
        /// Relative error per unit of score removed, for groups and for neurons: 1 / the residual stream's mean
        /// square after the layer, until `Pruner.measureSensitivity` measures it (towers).
        public var groupSensitivity: Double
        public var neuronSensitivity: Double
        /// Kept neuron counts are whole multiples of this (the output type's block).
        public var neuronBlock: Int

        public var parameters: Int { groupScores.count * groupParameters + neuronScores.count * neuronParameters }
    }

    /// What stays of one layer.
    public struct LayerPlan: Sendable, Equatable {
        public var module: Module
        public var index: Int
        /// KV groups kept, ascending (each brings heads / kvHeads query heads).
        public var keptGroups: [Int]
        /// FFN neurons kept, ascending.
        public var keptNeurons: [Int]
        public var groups: Int
        public var neurons: Int
        /// Fraction of the layer's prunable parameters removed.
        public var removedFraction: Double
    }

    public struct Plan: Sendable {
        public var layers: [LayerPlan]
        public var allocation: Allocation
        public var target: Double
        /// Prunable parameters before and removed, in all and per module.
        public var prunableParameters: Int
        public var removedParameters: Int
        public var removedFraction: Double { Double(removedParameters) / Double(max(prunableParameters, 1)) }
        public var modules: [Module: (prunable: Int, removed: Int)]

        /// The layers of one module, in order.
        public func layers(_ m: Module) -> [LayerPlan] { layers.filter { $0.module == m } }
        public func removedFraction(_ m: Module) -> Double {
            guard let v = modules[m] else { return 0 }
            return Double(v.removed) / Double(max(v.prunable, 1))
        }
    }

    /// FLAP's fluctuation scores of a decoder from calibration statistics and its output projections' column norms.
    public static func layers(config c: LlamaConfig, statistics s: ActivationStatistics, outputColumnNorms: [[Double]],
                              downColumnNorms: [[Double]], neuronBlock: Int) -> [Layer] {
        let hd = c.headDim, n = s.count
        return (0..<c.layers).map { l in
            let perGroup = c.heads(layer: l) / c.kvHeads(layer: l)
            let groups = (0 ..< c.kvHeads(layer: l)).map { g in
                ((g * perGroup * hd) ..< ((g + 1) * perGroup * hd)).reduce(0.0) {
                    $0 + s.attention[l].variance($1, count: n) * outputColumnNorms[l][$1]
                }
            }
            let neurons = (0 ..< c.feedForward(layer: l)).map { s.feedForward[l].variance($0, count: n) * downColumnNorms[l][$0] }
            return Layer(module: .text, index: l, groupScores: groups, neuronScores: neurons,
                         groupParameters: (2 * perGroup + 2) * hd * c.hidden, neuronParameters: 3 * c.hidden,
                         groupSensitivity: proxy(s, l), neuronSensitivity: proxy(s, l), neuronBlock: neuronBlock)
        }
    }

    static func proxy(_ s: ActivationStatistics, _ l: Int) -> Double {
        1 / max(s.residualMeanSquare(layer: l), .leastNormalMagnitude)
    }

    /// The same for a vision tower: heads of headDim values (q, k, v rows and attn_out columns: 4 · headDim · width
    /// parameters each), neurons of an up/down pair (2 · width).
    public static func layers(vision c: VisionConfig, statistics s: ActivationStatistics, outputColumnNorms: [[Double]],
                              downColumnNorms: [[Double]], neuronBlock: Int) -> [Layer] {
        let hd = c.headDim, n = s.count
        return (0..<c.blockCount).map { l in
            let heads = (0 ..< c.heads(layer: l)).map { h in
                ((h * hd) ..< ((h + 1) * hd)).reduce(0.0) { $0 + s.attention[l].variance($1, count: n) * outputColumnNorms[l][$1] }
            }
            let neurons = (0 ..< c.feedForward(layer: l)).map { s.feedForward[l].variance($0, count: n) * downColumnNorms[l][$0] }
            return Layer(module: .vision, index: l, groupScores: heads, neuronScores: neurons,
                         groupParameters: 4 * hd * c.hidden, neuronParameters: 2 * c.hidden,
                         groupSensitivity: proxy(s, l), neuronSensitivity: proxy(s, l), neuronBlock: neuronBlock)
        }
    }

    /// Which structures stay for `target` (fraction of the prunable parameters of all `layers`).
    public static func plan(_ layers: [Layer], target: Double, allocation: Allocation) throws -> Plan {
        guard (0 ..< 1).contains(target) else { throw ModelError("the pruning target must be in [0, 1), got \(target)") }
        let prunable = layers.reduce(0) { $0 + $1.parameters }
        let budget = Int(target * Double(prunable))
        var removedGroups = [Set<Int>](repeating: [], count: layers.count)
        var removedNeurons = [Set<Int>](repeating: [], count: layers.count)
        func minimumNeurons(_ i: Int) -> Int { min(layers[i].neuronBlock, layers[i].neuronScores.count) }

        switch allocation {
        case .uniform:
            for (i, layer) in layers.enumerated() {
                let kv = layer.groupScores.count, ff = layer.neuronScores.count
                let groupCount = min(kv - 1, Int((target * Double(kv)).rounded()))
                let byScore = (0..<kv).sorted { (layer.groupScores[$0], $0) < (layer.groupScores[$1], $1) }
                removedGroups[i] = Set(byScore.prefix(groupCount))
                let left = Double(layer.parameters) * target - Double(groupCount * layer.groupParameters)
                let neuronCount = max(0, min(ff - minimumNeurons(i), Int((left / Double(layer.neuronParameters)).rounded())))
                let order = (0..<ff).sorted { (layer.neuronScores[$0], $0) < (layer.neuronScores[$1], $1) }
                removedNeurons[i] = Set(order.prefix(neuronCount))
            }
        case .adaptive:
            // Relative output error per parameter removed, lowest first, over every layer of every module.
            enum Item { case group(Int, Int), neuron(Int, Int) }
            var items: [(Double, Item)] = []
            for (i, layer) in layers.enumerated() {
                for (g, v) in layer.groupScores.enumerated() {
                    items.append((layer.groupSensitivity * v / Double(layer.groupParameters), .group(i, g)))
                }
                for (j, v) in layer.neuronScores.enumerated() {
                    items.append((layer.neuronSensitivity * v / Double(layer.neuronParameters), .neuron(i, j)))
                }
            }
            items.sort { $0.0 < $1.0 }
            var removed = 0
            for (_, item) in items where removed < budget {
                switch item {
                case let .group(i, g):
                    let cost = layers[i].groupParameters
                    guard removedGroups[i].count + 1 < layers[i].groupScores.count, removed + cost <= budget else { continue }
                    removedGroups[i].insert(g)
                    removed += cost
                case let .neuron(i, j):
                    guard layers[i].neuronScores.count - removedNeurons[i].count > minimumNeurons(i) else { continue }
                    removedNeurons[i].insert(j)
                    removed += layers[i].neuronParameters
                }
            }
        }

        // Kept neurons in whole blocks: give back the best-scored removed neurons up to the next block.
        var out: [LayerPlan] = []
        var removedParams = 0
        var modules: [Module: (prunable: Int, removed: Int)] = [:]
        for (i, layer) in layers.enumerated() {
            let ff = layer.neuronScores.count, block = layer.neuronBlock
            var kept = (0..<ff).filter { !removedNeurons[i].contains($0) }
            let short = (block - kept.count % block) % block
            if short > 0 {
                let giveBack = removedNeurons[i].sorted { (layer.neuronScores[$0], $0) > (layer.neuronScores[$1], $1) }.prefix(short)
                kept = (kept + giveBack).sorted()
            }
            let groups = (0 ..< layer.groupScores.count).filter { !removedGroups[i].contains($0) }
            let removed = (ff - kept.count) * layer.neuronParameters + removedGroups[i].count * layer.groupParameters
            removedParams += removed
            modules[layer.module, default: (0, 0)].prunable += layer.parameters
            modules[layer.module, default: (0, 0)].removed += removed
            out.append(LayerPlan(module: layer.module, index: layer.index, keptGroups: groups, keptNeurons: kept,
                                 groups: layer.groupScores.count, neurons: ff,
                                 removedFraction: Double(removed) / Double(max(layer.parameters, 1))))
        }
        return Plan(layers: out, allocation: allocation, target: target, prunableParameters: prunable,
                    removedParameters: removedParams, modules: modules)
    }
}

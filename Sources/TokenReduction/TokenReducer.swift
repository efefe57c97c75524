import VZQModels

/// The visual-token stage between a crop's encoder and the projector: keep a budget of the crop's tokens (the
/// units the projector consumes — encoder tokens, or pixel-shuffle groups) and report which were kept and merged.
///
/// A reducer says what it needs measured in the encoder's last block (`probe`); the encoder returns exactly that
/// (`VisionEncoder(probe:)`), the pipeline brings it to the projector's units (`ReducerInput.tokens` or
/// `.groups`) and hands it over. VisionZip (attention-based) is the reference; a reducer that works from the
/// features alone asks for nothing. A new reducer is one file in this folder conforming to this protocol.
public protocol TokenReducer: Sendable {
    /// For reports and `--json` ("visionzip").
    var name: String { get }
    /// What the encoder's last block must return besides its features.
    var probe: AttentionProbe { get }
    /// The kept and merged rows [D + C, width] and the report of the choice.
    func reduce(_ input: ReducerInput, budget: VisionZip.Budget, merge: VisionZip.Merge) throws -> VisionZip.Output
    /// Which rows it chooses among: the projector's input units (default) or the projected rows.
    var featureSpace: ReducerFeatureSpace { get }
    /// The dominant + contextual split a budget gives per crop, for reports (default: the budget's own).
    func keptSplit(for budget: VisionZip.Budget) -> VisionZip.Budget
}

/// Where a reducer looks at the tokens.
public enum ReducerFeatureSpace: Sendable {
    /// The projector's input units (encoder tokens or pixel-shuffle groups); kept rows are projected afterwards.
    case encoder
    /// The language model's input rows: every unit is projected first and the reducer keeps projected rows
    /// (CLS excluded where the projector drops it).
    case projected
}

extension TokenReducer {
    public var featureSpace: ReducerFeatureSpace { .encoder }
    public func keptSplit(for budget: VisionZip.Budget) -> VisionZip.Budget { budget }
}

/// The reducers by name (`--token-reducer`, the server's `token_reducer`).
public enum TokenReducers {
    public static let names = ["visionzip", "divprune"]

    public static func named(_ name: String) throws -> any TokenReducer {
        switch name {
        case "visionzip": return VisionZipReducer()
        case "divprune": return DivPruneReducer()
        default: throw VisionZipError("unknown token reducer '\(name)' (known: \(names.joined(separator: ", ")))")
        }
    }
}

/// One crop's candidate tokens for a reducer, in the projector's units, with what the encoder measured of them.
public struct ReducerInput {
    /// [tokens, width]: the rows the projector would take (encoder features, or shuffled groups).
    public var hidden: [Float]
    public var width: Int
    public var tokens: Int { width > 0 ? hidden.count / width : 0 }
    /// Row 0 is a CLS token (always kept by VisionZip).
    public var hasClassToken: Bool
    /// Each head's attention row of the first query [heads, tokens] (ungrouped tokens only).
    public var firstQueryRows: [Float]?
    public var heads: Int
    /// Attention each unit receives, averaged over heads and queries (groups: summed over their patches) [tokens].
    public var receivedAttention: [Double]?
    /// The units' keys averaged over heads (groups: over their patches too) [tokens, headDim].
    public var headMeanKeys: [Float]?
    public var headDim: Int
    /// The units are groups of patches (pixel-shuffle connectors), not encoder tokens.
    public var grouped: Bool

    /// The encoder's own tokens (CLIP, SigLIP, DINOv2 into an mlp/linear projector).
    public static func tokens(_ out: VisionOutput, config c: VisionConfig) -> ReducerInput {
        ReducerInput(hidden: out.features, width: c.hidden, hasClassToken: c.hasClassToken,
                     firstQueryRows: out.firstRowAttention, heads: c.heads(layer: c.blockCount - 1),
                     receivedAttention: out.receivedAttention,
                     headMeanKeys: out.keysMean, headDim: c.headDim, grouped: false)
    }

    /// Groups of s × s patches over the encoder's grid, as a pixel-shuffle connector folds them (Idefics3), in
    /// raster order over the (rows/s) × (columns/s) grid: `shuffled` holds the groups' rows; a group receives the
    /// attention of its patches summed, and its key is the mean of their head-averaged keys.
    public static func groups(_ out: VisionOutput, config c: VisionConfig, scale s: Int, shuffled: [Float],
                              width: Int) -> ReducerInput {
        let gr = out.gridRows / s, gc = out.gridColumns / s, hd = c.headDim
        var received: [Double]?, keys: [Float]?
        if let patchScores = out.receivedAttention, let keysMean = out.keysMean {
            var sums = [Double](repeating: 0, count: gr * gc)
            var means = [Float](repeating: 0, count: gr * gc * hd)
            for py in 0 ..< gr * s {
                for px in 0 ..< gc * s {
                    let g = (py / s) * gc + px / s, p = py * out.gridColumns + px
                    sums[g] += patchScores[p]
                    for j in 0..<hd { means[g * hd + j] += keysMean[p * hd + j] / Float(s * s) }
                }
            }
            (received, keys) = (sums, means)
        }
        return ReducerInput(hidden: shuffled, width: width, hasClassToken: false, firstQueryRows: nil,
                            heads: c.heads(layer: c.blockCount - 1),
                            receivedAttention: received, headMeanKeys: keys, headDim: hd, grouped: true)
    }
}

import VZQModels

/// VisionZip as a token reducer: dominant tokens by the CLS query's attention (CLIP, DINOv2), by the attention
/// each token receives (SigLIP, no CLS), or by the attention a pixel-shuffle group's patches receive (Idefics3);
/// contextual tokens merged by key similarity. The algorithm is `VisionZip.compress`.
public struct VisionZipReducer: TokenReducer {
    public init() {}

    public var name: String { "visionzip" }

    /// The CLS rows (or the received attention) and the head-averaged keys; never the [heads, T, T] maps.
    public var probe: AttentionProbe { [.firstQueryRows, .receivedAttention, .headMeanKeys] }

    public func reduce(_ input: ReducerInput, budget: VisionZip.Budget, merge: VisionZip.Merge) throws -> VisionZip.Output {
        guard let keys = input.headMeanKeys else { throw VisionZipError("VisionZip needs the head-averaged keys of the last block") }
        func run(_ attention: VisionZip.Attention, hasCLS: Bool) throws -> VisionZip.Output {
            try keys.withUnsafeBufferPointer { k in
                try input.hidden.withUnsafeBufferPointer { h in
                    try VisionZip.compress(attention: attention, keysMean: k, headDim: input.headDim, hidden: h,
                                           width: input.width, budget: budget, hasCLS: hasCLS, merge: merge)
                }
            }
        }
        // Ranked by the CLS query's attention rows where there is a CLS token, else by the attention each unit receives.
        if input.hasClassToken, !input.grouped {
            guard let cls = input.firstQueryRows else { throw VisionZipError("VisionZip needs the CLS query's attention rows") }
            return try cls.withUnsafeBufferPointer { try run(.classRows($0, heads: input.heads), hasCLS: true) }
        }
        guard let received = input.receivedAttention else { throw VisionZipError("VisionZip needs the received attention") }
        return try received.withUnsafeBufferPointer { try run(input.grouped ? .scores($0) : .received($0), hasCLS: false) }
    }
}

/// LLaVA's multi-modal projector (mlp2x_gelu): y = mm.2(gelu(mm.0(x))), applied to the vision features the
/// mmproj's `vzquant.vision.feature_select` names — "default" (or absent, llama.cpp's files): patches only.
public final class Projector {
    public let inputs: Int
    public let outputs: Int
    /// Whether the CLS token (row 0 of the features) is dropped before projecting.
    public let dropsClassToken: Bool

    private let weights: GGUFWeights
    private let fc1, fc2: Linear

    public init(file: GGUFFile) throws {
        let w = GGUFWeights(file)
        weights = w
        let projector = try file.metadata.string("clip.projector_type", default: "mlp")
        guard projector == "mlp" else { throw ModelError("\(file.path): projector type '\(projector)' is not supported (mlp)") }
        fc1 = try Linear(w, "mm.0")
        fc2 = try Linear(w, "mm.2", cols: fc1.outputs)
        inputs = fc1.inputs
        outputs = fc2.outputs
        let select = try file.metadata.string("vzquant.vision.feature_select", default: "default")
        dropsClassToken = select == "default"
    }

    /// features [T, inputs] (CLS first) → [T − 1 (or T), outputs]: the encoder's tokens as the mmproj selects them.
    public func callAsFunction(features: [Float]) throws -> [Float] {
        try project(dropsClassToken ? Array(features.dropFirst(inputs)) : features)
    }

    /// Every given row [n, inputs] → [n, outputs], with no selection: for tokens chosen elsewhere (VisionZip keeps
    /// CLS among its dominant tokens, and the reference projects all of them).
    public func project(_ rows: [Float]) throws -> [Float] {
        let n = rows.count / inputs
        var hidden = [Float](repeating: 0, count: n * fc1.outputs)
        var out = [Float](repeating: 0, count: n * outputs)
        var ws = [UInt8](repeating: 0, count: max(fc1.workspaceBytes(rows: n), fc2.workspaceBytes(rows: n), 1))
        try rows.withUnsafeBufferPointer { f in
            try hidden.withUnsafeMutableBufferPointer { h in
                try out.withUnsafeMutableBufferPointer { o in
                    try ws.withUnsafeMutableBytes { w in
                        try fc1(f.baseAddress!, rows: n, into: h.baseAddress!, workspace: w.baseAddress!)
                        Ops.gelu(h.baseAddress!, count: n * fc1.outputs)
                        try fc2(h.baseAddress!, rows: n, into: o.baseAddress!, workspace: w.baseAddress!)
                    }
                }
            }
        }
        return out
    }
}

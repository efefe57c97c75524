import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// The multi-modal projector: vision features → LLM embedding rows. Four kinds, from `clip.projector_type`:
///   mlp       LLaVA's mlp2x_gelu: y = mm.2(gelu(mm.0(x)))
///   linear    y = mm.0(x)  (also an `mlp` file without mm.2 tensors, as llama.cpp reads it)
///   idefics3  SmolVLM / Idefics3's connector: y = mm.model.fc(pixelShuffle(x)), no bias; the shuffle folds each
///             s×s block of the patch grid into one token of width inputs·s² (s = clip.vision.projector.scale_factor)
///   qwen2vl_merger / qwen2.5vl_merger  Qwen2-VL's PatchMerger: y = mm.2(gelu(mm.0(fold₂ₓ₂(x)))) on the tower's
///             normalised features (its ln_q is the tower's post_ln); the fold is the same as idefics3's with s = 2
/// For mlp and linear the rows fed are the vision features `vzquant.vision.feature_select` names — "default"
/// (or absent, llama.cpp's files): patches only, CLS dropped. Idefics3's SigLIP tower has no CLS.
///
/// The hidden buffer and GEMM workspace live in one scratch arena planned for `maxRows` projected rows; a bigger
/// input grows it once (like VisionEncoder). Not safe to call from two threads at once.
public final class Projector {
    public enum Kind: String, Sendable {
        case mlp, linear, idefics3
        /// Qwen2-VL's and Qwen2.5-VL's merger (llama.cpp's `qwen2.5vl_merger` is read as this too).
        case qwenMerger = "qwen2vl_merger"
    }

    public let kind: Kind
    /// Width of one vision feature row (the tower's hidden size).
    public let inputs: Int
    public let outputs: Int
    /// Idefics3's pixel-shuffle factor s (1 for mlp and linear).
    public let scaleFactor: Int
    /// Whether the CLS token (row 0 of the features) is dropped before projecting.
    public let dropsClassToken: Bool
    /// LLaVA-NeXT's learned row ending each row of the stitched crop grid [outputs] (`v.image_newline`, or
    /// `model.image_newline` in older llama.cpp files); nil when the file has none.
    public let imageNewline: [Float]?

    /// Every buffer one projection of up to `rows` rows needs.
    struct Scratch {
        let rows: Int
        let arena: Arena
        let hidden: UnsafeMutablePointer<Float>?
        let workspace: UnsafeMutableRawPointer
    }

    private let weights: GGUFWeights
    private let first: Linear
    /// mm.2 of the mlp projector; nil for linear and idefics3.
    private let second: Linear?
    private var scratch: Scratch

    /// - Parameter maxRows: projected rows the scratch is planned for (default: the patches of one native image,
    ///   from clip.vision.image_size / patch_size when the file has them, else 1); larger inputs grow it once.
    public init(file: GGUFFile, maxRows: Int? = nil) throws {
        let w = GGUFWeights(file)
        weights = w
        let m = file.metadata
        let name = try m.string(GGUFKey.Vision.projectorType, default: Kind.mlp.rawValue)
        guard let k = name == "qwen2.5vl_merger" ? .qwenMerger : Kind(rawValue: name) else {
            throw ModelError("\(file.path): projector type '\(name)' is not supported (mlp, linear, idefics3, qwen2vl_merger, qwen2.5vl_merger)")
        }
        switch k {
        case .mlp, .linear:
            first = try Linear(w, "mm.0")
            // llama.cpp reads an mlp file without mm.2 as a single linear layer.
            second = k == .mlp && w.has("mm.2.weight") ? try Linear(w, "mm.2", cols: first.outputs) : nil
            kind = second == nil ? .linear : .mlp
            scaleFactor = 1
            inputs = first.inputs
            dropsClassToken = try m.string(GGUFKey.VZQ.featureSelect, default: "default") == "default"
        case .idefics3:
            let s = try m.int(GGUFKey.Vision.projectorScaleFactor, in: Limits.scaleFactor)
            first = try Linear(w, "mm.model.fc", bias: false)
            second = nil
            kind = .idefics3
            scaleFactor = s
            inputs = try Self.foldedWidth(first, "mm.model.fc", scale: s, file: file)
            dropsClassToken = false
        case .qwenMerger:
            let s = 2
            first = try Linear(w, "mm.0")
            second = try Linear(w, "mm.2", cols: first.outputs)
            kind = .qwenMerger
            scaleFactor = s
            inputs = try Self.foldedWidth(first, "mm.0", scale: s, file: file)
            dropsClassToken = false
        }
        outputs = second?.outputs ?? first.outputs
        let width = second?.outputs ?? first.outputs
        if let name = ["v.image_newline", "model.image_newline"].first(where: { w.has($0) }) {
            imageNewline = Array(UnsafeBufferPointer(start: try w.vector(name, count: width), count: width))
        } else {
            imageNewline = nil
        }
        var rows = 1
        if m.contains(GGUFKey.Vision.imageSize), m.contains(GGUFKey.Vision.patchSize) {
            let side = try m.int(GGUFKey.Vision.imageSize, in: Limits.imageSide) / (try m.int(GGUFKey.Vision.patchSize, in: Limits.patchSide))
            rows = max(1, side * side / (scaleFactor * scaleFactor))
        }
        scratch = try Self.plan(rows: max(maxRows ?? rows, 1), first: first, second: second)
    }

    /// The vision width a folding projector's first layer implies: its rows hold s² patches, and the file's
    /// clip.vision.embedding_length (when present) must agree.
    private static func foldedWidth(_ first: Linear, _ name: String, scale s: Int, file: GGUFFile) throws -> Int {
        guard first.inputs % (s * s) == 0 else {
            throw ModelError("\(file.path): \(name) takes rows of \(first.inputs), not a multiple of \(s)² (scale factor)")
        }
        let inputs = first.inputs / (s * s), m = file.metadata
        if m.contains(GGUFKey.Vision.embeddingLength), try m.int(GGUFKey.Vision.embeddingLength) != inputs {
            throw ModelError("\(file.path): \(name) takes \(first.inputs) = \(s)² × \(inputs) values, but the vision width is \(try m.int(GGUFKey.Vision.embeddingLength))")
        }
        return inputs
    }

    private static func plan(rows n: Int, first: Linear, second: Linear?) throws -> Scratch {
        var plan = ArenaPlan()
        let oHidden = second == nil ? nil : plan.floats(n * first.outputs)
        let oWs = plan.raw(max(first.workspaceBytes(rows: n), second?.workspaceBytes(rows: n) ?? 0))
        let a = try Arena(plan, for: "the projector's scratch for \(n) rows")
        return Scratch(rows: n, arena: a, hidden: oHidden.map { a.floats($0) }, workspace: a.raw(oWs))
    }

    /// Whether s×s blocks of patches fold into one row (idefics3, Qwen's merger): the units a reducer keeps are
    /// those groups, and the projector reads the tower's normalised features (its last_hidden_state).
    public var foldsPatches: Bool { kind == .idefics3 || kind == .qwenMerger }

    /// Values in one row `project` takes: a vision feature (mlp, linear) or a shuffled group (idefics3, inputs·s²).
    public var projectionInputs: Int { first.inputs }

    /// Bytes of packed weights.
    public var weightBytes: Int { first.weight.packedBytes + (second?.weight.packedBytes ?? 0) }

    /// Bytes of the scratch arena (hidden rows and GEMM workspace) as planned so far.
    public var scratchBytes: Int { scratch.arena.bytes }

    // MARK: shapes

    /// LLM embedding rows an image cut into `patches` patches gives (idefics3: patches / s²).
    public func tokens(forPatches patches: Int) -> Int { patches / (scaleFactor * scaleFactor) }

    /// LLM embedding rows of a gridRows × gridColumns patch grid (idefics3: one per s×s block).
    public func tokens(gridRows: Int, gridColumns: Int) -> Int {
        (gridRows / scaleFactor) * (gridColumns / scaleFactor)
    }

    // MARK: projection

    /// features [T, inputs] (CLS first where the tower has one) → LLM rows [tokens, outputs]: the encoder's tokens
    /// as the mmproj selects them. Idefics3 takes a square grid (as transformers does); use
    /// `callAsFunction(features:gridRows:gridColumns:)` for others.
    public func callAsFunction(features: [Float]) throws -> [Float] {
        let rows = try rowCount(features, width: inputs)
        if foldsPatches {
            let side = Int(Double(rows).squareRoot().rounded())
            guard side * side == rows else {
                throw ModelError("\(rows) patches are not a square grid; pass gridRows and gridColumns")
            }
            return try callAsFunction(features: features, gridRows: side, gridColumns: side)
        }
        return try project(dropsClassToken ? Array(features.dropFirst(inputs)) : features)
    }

    /// Patch features of a gridRows × gridColumns grid (raster order, no CLS) → LLM rows [tokens, outputs].
    public func callAsFunction(features: [Float], gridRows: Int, gridColumns: Int) throws -> [Float] {
        try project(shuffle(features: features, gridRows: gridRows, gridColumns: gridColumns))
    }

    /// Idefics3's pixel shuffle (transformers' Idefics3Connector.pixel_shuffle, generalised to non-square grids):
    /// [R·C, inputs] patches in raster order → [(R/s)·(C/s), inputs·s²] groups in raster order, group (i, j)
    /// holding patches (i·s + r, j·s + c) for r = 0..<s (outer), c = 0..<s (inner). Identity when s = 1.
    /// VisionZip, which picks among these groups, runs after this step and before `projectShuffled`.
    public func shuffle(features: [Float], gridRows: Int, gridColumns: Int) throws -> [Float] {
        let s = scaleFactor, d = inputs
        guard gridRows > 0, gridColumns > 0, features.count == gridRows * gridColumns * d else {
            throw ModelError("\(features.count) values are not a \(gridRows)×\(gridColumns) grid of \(d)-wide features")
        }
        guard gridRows % s == 0, gridColumns % s == 0 else {
            throw ModelError("a \(gridRows)×\(gridColumns) patch grid does not split into \(s)×\(s) blocks")
        }
        if s == 1 { return features }
        var out = [Float](repeating: 0, count: features.count)
        let groupColumns = gridColumns / s
        features.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var o = 0
                for i in 0..<(gridRows / s) {
                    for j in 0..<groupColumns {
                        for r in 0..<s {
                            for c in 0..<s {
                                let patch = (i * s + r) * gridColumns + j * s + c
                                (dst.baseAddress! + o).update(from: src.baseAddress! + patch * d, count: d)
                                o += d
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Shuffled groups [n, inputs·s²] (all, or those VisionZip kept) → [n, outputs].
    public func projectShuffled(_ groups: [Float]) throws -> [Float] { try project(groups) }

    /// Every given row [n, projectionInputs] → [n, outputs], with no selection: for tokens chosen elsewhere
    /// (VisionZip keeps CLS among its dominant tokens, and the reference projects all of them).
    public func project(_ rows: [Float]) throws -> [Float] {
        let n = try rowCount(rows, width: projectionInputs)
        var out = [Float](repeating: 0, count: n * outputs)
        try rows.withUnsafeBufferPointer { r in
            try out.withUnsafeMutableBufferPointer { o in try project(r.baseAddress!, rows: n, into: o.baseAddress!) }
        }
        return out
    }

    /// `n` rows of `projectionInputs` values → `out` [n, outputs], allocating only when `n` exceeds the scratch.
    public func project(_ x: UnsafePointer<Float>, rows n: Int, into out: UnsafeMutablePointer<Float>) throws {
        guard n > 0 else { return }
        if n > scratch.rows { scratch = try Self.plan(rows: n, first: first, second: second) }
        let s = scratch
        if let second, let hidden = s.hidden {
            try first(x, rows: n, into: hidden, workspace: s.workspace)
            Ops.gelu(hidden, count: n * first.outputs)
            try second(hidden, rows: n, into: out, workspace: s.workspace)
        } else {
            try first(x, rows: n, into: out, workspace: s.workspace)
        }
    }

    private func rowCount(_ values: [Float], width: Int) throws -> Int {
        guard width > 0, values.count % width == 0 else {
            throw ModelError("\(values.count) values are not rows of \(width)")
        }
        return values.count / width
    }
}

import CQuant
import Foundation
import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport

/// Where the time of one image went (milliseconds). Decoding the file is the caller's (`ImageDecoder`).
public struct ImageTimings: Sendable, Equatable {
    public var preprocessMs = 0.0
    public var visionMs = 0.0
    public var visionZipMs = 0.0
    public var projectorMs = 0.0
    public init() {}

    public static func + (a: Self, b: Self) -> Self {
        var s = a
        s.preprocessMs += b.preprocessMs
        s.visionMs += b.visionMs
        s.visionZipMs += b.visionZipMs
        s.projectorMs += b.projectorMs
        return s
    }
}

/// One crop's trip through the encoder: how many tokens it had and what VisionZip kept.
public struct CropReport: Sendable {
    /// Encoder tokens (CLS included where the encoder has one), the indices VisionZip's report counts in.
    public var tokensBefore: Int
    /// Rows this crop hands the language model.
    public var tokensAfter: Int
    /// Nil when VisionZip is off (`--visual-tokens all`).
    public var selection: VisionZip.Selection?
    /// The patch grid of the crop.
    public var gridRows: Int
    public var gridColumns: Int
}

/// An image ready to splice into a prompt: language-model embedding rows, one block per crop.
public struct EncodedImage: Sendable {
    /// [tokens, text hidden], the crops' rows one after another (base image first for AnyRes).
    public var embeddings: [Float]
    public var tokens: Int
    public var crops: [CropReport]
    public var timings: ImageTimings
    public var merge: VisionZip.Merge
    /// The crops as the encoder saw them (8-bit, after padding/resizing/cropping), when `encode(keepCrops:)` asked.
    public var processedCrops: [RGBImage]?
    /// Where the rows go in the prompt, with the family's text around them (default: every crop's rows in order).
    public var layout: [ImageLayoutPiece]
    /// Each row's (row, column) in the image's grid [tokens · 2], for decoders with multimodal positions (Qwen2-VL);
    /// nil: the rows take consecutive positions.
    public var gridPositions: [Int32]?
    /// How far the image moves the multimodal positions of what follows (max of its grid's sides); nil: by the
    /// largest of `gridPositions`.
    public var positionSpan: Int?

    public init(embeddings: [Float], tokens: Int, crops: [CropReport], timings: ImageTimings, merge: VisionZip.Merge,
                processedCrops: [RGBImage]? = nil, layout: [ImageLayoutPiece]? = nil, gridPositions: [Int32]? = nil,
                positionSpan: Int? = nil) {
        (self.embeddings, self.tokens, self.crops, self.timings, self.merge) = (embeddings, tokens, crops, timings, merge)
        self.processedCrops = processedCrops
        self.layout = layout ?? (0..<crops.count).map { .crop($0) }
        (self.gridPositions, self.positionSpan) = (gridPositions, positionSpan)
    }
}

/// mmproj → image embeddings: preprocessing as the model's processor does it, the vision tower up to the feature
/// layer, VisionZip (optional), and the projector into the language model's embedding space.
///
///   image → crops (AnyRes for LLaVA-NeXT files, else one) → pixels → encoder → H, A, K of the feature layer
///         → VisionZip(A, K, H) = D + C rows (or the projector's own token selection) → projector → rows
public final class VisionPipeline {
    public let encoder: any VisionTower
    public let projector: Projector
    /// How images become crops and pixels (LLaVA-1.5, LLaVA-NeXT, Idefics3, or a plain encoder).
    public let family: any VLMFamily
    public let path: String

    public var processor: ImageProcessor { family.processor }

    /// `maxImagePixels`: a bound on an image's resized area below the file's (Qwen2-VL's max_pixels).
    public convenience init(path: String, maxImagePixels: Int? = nil) throws {
        try self.init(file: GGUFFile(path: path), maxImagePixels: maxImagePixels)
    }

    public init(file: GGUFFile, maxImagePixels: Int? = nil) throws {
        path = file.path
        let m = file.metadata
        guard try m.string(GGUFKey.General.architecture, default: "") == "clip" else {
            throw ModelError("\(file.path): not an mmproj file (general.architecture is not 'clip')")
        }
        encoder = try VisionTowers.load(file)
        projector = try Projector(file: file)
        family = try VLMFamilies.make(metadata: m, encoder: encoder.config, projector: projector.kind,
                                      maxImagePixels: maxImagePixels)
    }

    /// Language-model embedding width.
    public var outputWidth: Int { projector.outputs }

    /// LLM rows one crop gives without VisionZip (LLaVA-1.5: 576; SmolVLM: 64; Qwen: a square of max pixels).
    public var tokensPerCrop: Int { tokensPerCrop(height: processor.outputSize.height, width: processor.outputSize.width) }

    /// LLM rows one crop of `image` gives without VisionZip (the processor's size for this image: Qwen resizes
    /// each image to its own).
    public func tokensPerCrop(for image: RGBImage) -> Int {
        let (h, w) = processor.outputSize(width: image.width, height: image.height) ?? processor.outputSize
        return tokensPerCrop(height: h, width: w)
    }

    /// LLM rows a crop of height × width pixels (as the processor outputs it) gives without VisionZip.
    func tokensPerCrop(height h: Int, width w: Int) -> Int {
        let c = encoder.config
        if projector.foldsPatches { return projector.tokens(gridRows: h / c.patchSize, gridColumns: w / c.patchSize) }
        return c.tokens(height: h, width: w) - (projector.dropsClassToken ? 1 : 0)
    }

    /// Rows `image` gives with `visualTokens`, before encoding it (for planning context length), plus the
    /// tokens of the family's layout text around them when `countText` counts a text's tokens.
    public func tokens(for image: RGBImage, visualTokens: VisualTokens, countText: ((String) -> Int)? = nil) -> Int {
        let (h, w) = processor.outputSize(width: image.width, height: image.height) ?? processor.outputSize
        let all = tokensPerCrop(height: h, width: w)
        // VisionZip picks among the encoder's tokens (CLS included), or the connector's groups (idefics3, Qwen).
        let candidates = projector.foldsPatches ? all : encoder.config.tokens(height: h, width: w)
        let perCrop: Int
        switch visualTokens {
        case .all: perCrop = all
        case let .budget(b): perCrop = min(b.total, candidates)
        }
        var n = family.rowCount(width: image.width, height: image.height, rowsPerCrop: perCrop, reduced: visualTokens != .all)
        if let countText {
            let layout = family.promptLayout(width: image.width, height: image.height,
                                             cropCount: cropCount(width: image.width, height: image.height))
            for case let .text(s) in layout.mergingText { n += countText(s) }
        }
        return n
    }

    /// How many crops `crops(of:)` cuts a width × height image into, without touching pixels.
    public func cropCount(width: Int, height: Int) -> Int { family.cropCount(width: width, height: height) }

    /// The crops an image is cut into, as the family's processor cuts them.
    public func crops(of image: RGBImage) -> [RGBImage] { family.crops(of: image) }

    /// Encodes `image`: every crop through the tower, the token reducer (VisionZip unless told) with
    /// `visualTokens` per crop, the projector. `keepCrops`: also return the processed crops (for `--visionzip-map`).
    public func encode(_ image: RGBImage, visualTokens: VisualTokens, merge: VisionZip.Merge = .sum,
                       reducer: any TokenReducer = VisionZipReducer(), keepCrops: Bool = false) throws -> EncodedImage {
        let t0 = monotonicMilliseconds()
        let prepared = try crops(of: image).map { try processor.prepare($0) }
        let pixels = prepared.map { $0.normalizedCHW(mean: processor.mean, std: processor.std) }
        let preprocessMs = monotonicMilliseconds() - t0
        var encoded = try encode(pixelCrops: pixels, visualTokens: visualTokens, merge: merge, reducer: reducer,
                                 imageSize: (image.width, image.height),
                                 cropSizes: prepared.map { ($0.height, $0.width) })
        encoded.timings.preprocessMs = preprocessMs
        encoded.processedCrops = keepCrops ? prepared : nil
        return encoded
    }

    /// Encodes already normalised crops, each [3, height, width] at `cropSizes` (nil: the processor's output size),
    /// as the crops of a width × height image (`imageSize`; nil: the crops' rows one after another, no family
    /// layout).
    public func encode(pixelCrops: [[Float]], visualTokens: VisualTokens, merge: VisionZip.Merge = .sum,
                       reducer: any TokenReducer = VisionZipReducer(), imageSize: (width: Int, height: Int)? = nil,
                       cropSizes: [(height: Int, width: Int)]? = nil) throws -> EncodedImage {
        var timings = ImageTimings()
        var cropRows: [CropRows] = []
        var reports: [CropReport] = []
        let budget: VisionZip.Budget?
        if case let .budget(b) = visualTokens { budget = b } else { budget = nil }
        if let cropSizes, cropSizes.count != pixelCrops.count {
            throw ModelError("\(cropSizes.count) crop sizes for \(pixelCrops.count) crops")
        }
        for (i, p) in pixelCrops.enumerated() {
            let (h, w) = cropSizes?[i] ?? processor.outputSize
            let t0 = monotonicMilliseconds()
            // The encoder measures only what the reducer asks for (VisionZip: no [heads, T, T] maps).
            let out = try encoder(pixels: p, height: h, width: w, probe: budget == nil ? [] : reducer.probe)
            timings.visionMs += monotonicMilliseconds() - t0
            let (rows, report) = try reduceAndProject(out, budget: budget, merge: merge, reducer: reducer, timings: &timings)
            cropRows.append(CropRows(rows: rows, count: report.tokensAfter, selection: report.selection,
                                     gridRows: report.gridRows, gridColumns: report.gridColumns,
                                     hasClassToken: encoder.config.hasClassToken && !projector.foldsPatches))
            reports.append(report)
        }
        guard let imageSize else {
            let rows = cropRows.flatMap(\.rows)
            return EncodedImage(embeddings: rows, tokens: rows.count / projector.outputs, crops: reports, timings: timings,
                                merge: merge, processedCrops: nil)
        }
        let packed = try family.pack(cropRows, width: imageSize.width, height: imageSize.height, newline: projector.imageNewline)
        return EncodedImage(embeddings: packed.embeddings, tokens: packed.tokens, crops: reports, timings: timings,
                            merge: merge, processedCrops: nil, layout: packed.layout, gridPositions: packed.gridPositions,
                            positionSpan: packed.positionSpan)
    }

    /// One crop's encoder output → the reducer (when there is a budget) on the projector's units → projected rows.
    /// Pixel-shuffle connectors (idefics3) and Qwen's merger fold s×s patches into one unit: those groups are what the reducer keeps
    /// or merges, and the kept rows go through the connector's linear layer. Selection indices count the units
    /// (encoder tokens with CLS at 0, or groups in raster order).
    private func reduceAndProject(_ out: VisionOutput, budget: VisionZip.Budget?, merge: VisionZip.Merge,
                                  reducer: any TokenReducer, timings: inout ImageTimings) throws -> ([Float], CropReport) {
        let c = encoder.config
        // Idefics3/SmolVLM's connector takes the tower's last_hidden_state, after the final layernorm (as
        // transformers and llama.cpp apply it), and Qwen's merger its ln_q output (the tower's post_ln); LLaVA reads
        // an inner layer, before any post-norm a file may carry.
        var out = out
        if projector.foldsPatches, let normalized = out.normalized { out.features = normalized }
        var t0 = monotonicMilliseconds()
        let input: ReducerInput
        if projector.foldsPatches {
            let s = projector.scaleFactor
            let shuffled = try projector.shuffle(features: out.features, gridRows: out.gridRows, gridColumns: out.gridColumns)
            input = .groups(out, config: c, scale: s, shuffled: shuffled, width: projector.projectionInputs)
        } else {
            input = .tokens(out, config: c)
        }
        let gridRows = input.grouped ? out.gridRows / projector.scaleFactor : out.gridRows
        let gridColumns = input.grouped ? out.gridColumns / projector.scaleFactor : out.gridColumns
        var selection: VisionZip.Selection?
        var kept = input.hidden
        // Qwen's merger: every reducer chooses among merged rows, as the official VisionZip code for Qwen2.5-VL does
        // (scores and keys still come from the tower, per 2×2 group).
        if let budget, reducer.featureSpace == .projected || projector.kind == .qwenMerger {
            // The reducer chooses among the rows the language model would get: project every unit, then keep some.
            t0 = monotonicMilliseconds()
            let dropped = !input.grouped && projector.dropsClassToken ? 1 : 0
            let all = input.grouped ? try projector.projectShuffled(input.hidden) : try projector(features: input.hidden)
            timings.projectorMs += monotonicMilliseconds() - t0
            t0 = monotonicMilliseconds()
            var rows = input
            (rows.hidden, rows.width, rows.hasClassToken) = (all, projector.outputs, false)
            let reduced = try reducer.reduce(rows, budget: budget, merge: merge)
            timings.visionZipMs += monotonicMilliseconds() - t0
            // Indices count the encoder's tokens (CLS = 0) as every report does.
            let s = reduced.selection.shifted(by: dropped, tokensBefore: input.tokens)
            let report = CropReport(tokensBefore: input.tokens, tokensAfter: reduced.rows.count / projector.outputs,
                                    selection: s, gridRows: gridRows, gridColumns: gridColumns)
            return (reduced.rows, report)
        }
        if let budget {
            let reduced = try reducer.reduce(input, budget: budget, merge: merge)
            (kept, selection) = (reduced.rows, reduced.selection)
            timings.visionZipMs += monotonicMilliseconds() - t0
        }
        t0 = monotonicMilliseconds()
        // A reduced crop keeps CLS among its rows (as the VisionZip reference does): every kept row is projected.
        let projected = input.grouped ? try projector.projectShuffled(kept)
            : selection != nil ? try projector.project(kept) : try projector(features: kept)
        timings.projectorMs += monotonicMilliseconds() - t0
        let report = CropReport(tokensBefore: input.tokens, tokensAfter: projected.count / projector.outputs,
                                selection: selection, gridRows: gridRows, gridColumns: gridColumns)
        return (projected, report)
    }
}

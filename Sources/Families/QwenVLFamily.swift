import VZQModels
import VZQImage
import VZQFormats
import VZQTokenReduction

/// Qwen2-VL and Qwen2.5-VL, as transformers' Qwen2VLImageProcessor and Qwen2VLProcessor do it:
///   - the image is resized (BICUBIC) to sides that are multiples of 28 (patch 14 × merge 2), its area within
///     [min_pixels, max_pixels] (`smartResize`), and encoded whole at that size: one crop;
///   - its rows are the merged 2×2 patch groups in raster order, written between `<|vision_start|>` and
///     `<|vision_end|>` (the processor's `<|image_pad|>` run);
///   - each row's multimodal position is (t, h, w) = start + (0, group row, group column), and text after the
///     image continues at start + max(group rows, group columns) (transformers' get_rope_index); the session
///     adds `start`.
/// With a token reducer, kept groups keep their own (row, column), a merged contextual row takes its target's, and
/// the text after the image keeps the positions it has without reduction (as the official VisionZip code for
/// Qwen2.5-VL, which computes positions on the whole sequence and then drops the pruned rows).
struct QwenVLFamily: VLMFamily {
    let processor: ImageProcessor
    let name: String

    static let visionStart = "<|vision_start|>"
    static let visionEnd = "<|vision_end|>"
    /// The processors' defaults when a file does not record them (llama.cpp's do not): 56² pixels at least, at
    /// most 28²·1280 (Qwen2-VL's preprocessor_config.json) or 12,845,056 (Qwen2.5-VL's: 16384 rows).
    static let defaultMinPixels = 56 * 56
    static func defaultMaxPixels(_ family: VisionFamily) -> Int { family == .qwen25vl ? 12_845_056 : 28 * 28 * 1280 }

    /// nil unless the projector is Qwen's patch merger. `maxImagePixels` lowers the file's max_pixels.
    init?(context c: VLMFamilyContext) throws {
        guard c.projector == .qwenMerger else { return nil }
        name = c.encoder.family == .qwen25vl ? "qwen2.5-vl" : "qwen2-vl"
        let factor = c.encoder.patchSize * c.encoder.mergeSize
        let minPixels = try c.metadata.int(GGUFKey.VZQ.minPixels, in: Limits.imagePixels, default: Self.defaultMinPixels)
        var maxPixels = try c.metadata.int(GGUFKey.VZQ.maxPixels, in: Limits.imagePixels, default: Self.defaultMaxPixels(c.encoder.family))
        if let lower = c.maxImagePixels { maxPixels = min(maxPixels, max(lower, minPixels)) }
        processor = try ImageProcessor(resize: .multiple(factor: factor, minPixels: minPixels, maxPixels: maxPixels),
                                       mean: c.mean, std: c.std, filter: .bicubic)
    }

    func crops(of image: RGBImage) -> [RGBImage] { [image] }
    func cropCount(width: Int, height: Int) -> Int { 1 }

    func promptLayout(width: Int, height: Int, cropCount: Int) -> [ImageLayoutPiece] {
        [.text(Self.visionStart)] + (0..<cropCount).map { .crop($0) } + [.text(Self.visionEnd)]
    }

    func pack(_ crops: [CropRows], width: Int, height: Int, newline: [Float]?) throws -> PackedImage {
        var positions: [Int32] = []
        var span = 0
        for crop in crops {
            span = max(span, crop.gridRows, crop.gridColumns)
            let columns = crop.gridColumns
            let units: [Int]
            if let s = crop.selection {
                units = s.dominant + s.contextual.map(\.target)
            } else {
                units = Array(0 ..< crop.gridRows * columns)
            }
            guard units.count == crop.count else {
                throw ModelError("a Qwen image's \(crop.count) rows do not match its \(units.count) chosen groups")
            }
            for u in units { positions += [Int32(u / columns), Int32(u % columns)] }
        }
        return PackedImage(embeddings: crops.flatMap(\.rows), tokens: crops.map(\.count).reduce(0, +),
                           layout: promptLayout(width: width, height: height, cropCount: crops.count),
                           gridPositions: positions, positionSpan: span)
    }
}

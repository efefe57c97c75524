import VZQModels
import VZQImage
import VZQFormats

/// SmolVLM / Idefics3: the image resized so its longest edge is 4 × the encoder's size, then up to whole tiles
/// of that size, cut into those tiles; the whole image squeezed to one tile comes last (transformers'
/// Idefics3ImageProcessor with SmolVLM's defaults). A one-tile image is only the squeezed crop.
struct Idefics3Family: VLMFamily {
    let processor: ImageProcessor
    let side: Int
    var name: String { "idefics3" }

    /// nil unless the projector is Idefics3's pixel-shuffle connector.
    init?(context c: VLMFamilyContext) throws {
        guard c.projector == .idefics3 else { return nil }
        side = c.encoder.imageSize
        processor = try EncoderFamily(context: c).processor
    }

    /// Idefics3ImageProcessor's default for SmolVLM: longest edge 4 × the encoder's size.
    var splitLongestEdge: Int { 4 * side }

    /// Tiles (columns, rows): the longest edge to splitLongestEdge (aspect kept), then each side up to whole tiles.
    func tiles(width: Int, height: Int) -> (columns: Int, rows: Int) {
        let scale = Double(splitLongestEdge) / Double(max(width, height))
        let w0 = max(1, Int((Double(width) * scale).rounded())), h0 = max(1, Int((Double(height) * scale).rounded()))
        return (max(1, (w0 + side - 1) / side), max(1, (h0 + side - 1) / side))
    }

    func crops(of image: RGBImage) -> [RGBImage] {
        let (cols, rows) = tiles(width: image.width, height: image.height)
        let overview = image.resized(width: side, height: side, filter: processor.filter)
        guard cols * rows > 1 else { return [overview] }
        let grid = image.resized(width: cols * side, height: rows * side, filter: processor.filter)
        var out: [RGBImage] = []
        for ty in 0..<rows {
            for tx in 0..<cols { out.append(grid.cropped(x: tx * side, y: ty * side, width: side, height: side)) }
        }
        return out + [overview]
    }

    func cropCount(width: Int, height: Int) -> Int {
        let (cols, rows) = tiles(width: width, height: height)
        return cols * rows > 1 ? cols * rows + 1 : 1
    }
}

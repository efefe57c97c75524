import VZQModels
import VZQImage
import VZQFormats

/// LLaVA-NeXT AnyRes: the grid resolution (`clip.vision.image_grid_pinpoints`) that keeps most of the image is
/// chosen, the image fitted into it and padded with black, centred, and cut into tiles of the encoder's size; the
/// whole image resized to one tile comes first (transformers' LlavaNextImageProcessor).
///
/// Rows (transformers' `pack_image_features`): the base tile's rows as they are, then the tiles' patch rows
/// stitched into one (rows·g) × (columns·g) grid, cropped back to the image's aspect ratio ("unpadding": the
/// padded band removed evenly from both ends of the longer axis, int(round(side·scale, 7)) kept), each grid row
/// followed by the learned `image_newline` row.
///
/// With a token reducer the official VisionZip code (dvlab-research/VisionZip, `llava_arch.py`) is followed: the
/// base tile gives its D + C rows as they are; every grid tile's kept patch rows are placed at their positions in
/// the stitched grid and read in raster order over the whole grid (no unpadding, no newline rows); then every
/// tile's CLS row, then every tile's contextual rows, tile after tile: (tiles + 1) · (D + C) rows. A reducer that
/// keeps no CLS or contextual rows (DivPrune) gives only the stitched patches.
struct LlavaNextFamily: VLMFamily {
    let processor: ImageProcessor
    /// (height, width) resolutions an image may be fitted into.
    let gridPinpoints: [(height: Int, width: Int)]
    let side: Int
    var name: String { "llava-next" }

    init(processor: ImageProcessor, gridPinpoints: [(height: Int, width: Int)], side: Int) {
        (self.processor, self.gridPinpoints, self.side) = (processor, gridPinpoints, side)
    }

    /// nil without grid pinpoints.
    init?(context c: VLMFamilyContext) throws {
        let pinpoints = try c.metadata.ints(GGUFKey.Vision.gridPinpoints, default: [])
        guard !pinpoints.isEmpty else { return nil }
        let side = c.encoder.imageSize
        self.side = side
        // Each resolution is cut into whole tiles of the encoder's size.
        guard pinpoints.count % 2 == 0, pinpoints.allSatisfy({ $0 >= side && $0 <= ImageProcessor.maxSide && $0 % side == 0 }) else {
            throw ModelError("\(c.metadata.file): clip.vision.image_grid_pinpoints \(pinpoints) are not (height, width) pairs of multiples of \(side)")
        }
        gridPinpoints = stride(from: 0, to: pinpoints.count, by: 2).map { (pinpoints[$0], pinpoints[$0 + 1]) }
        // The tiles are already square at the encoder's size: the encoder's own processor, no padding.
        processor = try EncoderFamily(context: c).processor
    }

    func crops(of image: RGBImage) -> [RGBImage] {
        let (th, tw) = Self.bestResolution(height: image.height, width: image.width, candidates: gridPinpoints)
        // Fit inside th × tw keeping the aspect ratio, then pad with black, centred (as HF's processor does).
        let scaleW = Double(tw) / Double(image.width), scaleH = Double(th) / Double(image.height)
        let (nw, nh) = scaleW < scaleH
            ? (tw, min(Int((Double(image.height) * scaleW).rounded(.up)), th))
            : (min(Int((Double(image.width) * scaleH).rounded(.up)), tw), th)
        let fitted = image.resized(width: max(nw, 1), height: max(nh, 1), filter: processor.filter)
        let canvas = fitted.padded(toWidth: tw, height: th, top: (th - fitted.height) / 2, left: (tw - fitted.width) / 2,
                                   fill: (0, 0, 0))
        var out = [image.resized(width: side, height: side, filter: processor.filter)]
        for ty in stride(from: 0, to: th, by: side) {
            for tx in stride(from: 0, to: tw, by: side) {
                out.append(canvas.cropped(x: tx, y: ty, width: side, height: side))
            }
        }
        return out
    }

    /// Tiles of the grid (rows, columns) for a width × height image.
    func grid(width: Int, height: Int) -> (rows: Int, columns: Int) {
        let (th, tw) = Self.bestResolution(height: height, width: width, candidates: gridPinpoints)
        return ((th + side - 1) / side, (tw + side - 1) / side)
    }

    /// The stitched grid's [top, bottom) rows and [left, right) columns of patches kept by unpadding
    /// (transformers' `unpad_image` on a gridHeight × gridWidth map of a width × height image).
    static func unpadded(gridHeight h: Int, gridWidth w: Int, width: Int, height: Int) -> (top: Int, bottom: Int, left: Int, right: Int) {
        func keep(_ v: Double) -> Int { Int(((v * 1e7).rounded() / 1e7).rounded(.towardZero)) }
        let originalAspect = Double(width) / Double(height), currentAspect = Double(w) / Double(h)
        if originalAspect > currentAspect {
            let newHeight = keep(Double(height) * (Double(w) / Double(width)))
            let pad = (h - newHeight) / 2
            return (pad, h - pad, 0, w)
        }
        let newWidth = keep(Double(width) * (Double(h) / Double(height)))
        let pad = (w - newWidth) / 2
        return (0, h, pad, w - pad)
    }

    func rowCount(width: Int, height: Int, rowsPerCrop: Int, reduced: Bool) -> Int {
        let (rows, cols) = grid(width: width, height: height)
        if reduced { return rowsPerCrop * (rows * cols + 1) }
        let g = Int(Double(rowsPerCrop).squareRoot().rounded())
        let u = Self.unpadded(gridHeight: rows * g, gridWidth: cols * g, width: width, height: height)
        return rowsPerCrop + (u.bottom - u.top) * (u.right - u.left + 1)
    }

    func pack(_ crops: [CropRows], width: Int, height: Int, newline: [Float]?) throws -> PackedImage {
        let (rows, cols) = grid(width: width, height: height)
        guard crops.count == rows * cols + 1, let base = crops.first else {
            throw ModelError("LLaVA-NeXT: \(crops.count) crops for a \(cols)×\(rows) grid and its base image")
        }
        let d = base.rows.count / max(base.count, 1)
        let g = (gr: base.gridRows, gc: base.gridColumns)
        let tiles = Array(crops.dropFirst())
        guard tiles.allSatisfy({ $0.gridRows == g.gr && $0.gridColumns == g.gc }) else {
            throw ModelError("LLaVA-NeXT: the tiles' patch grids differ")
        }
        let (h, w) = (rows * g.gr, cols * g.gc)
        var out = base.rows
        if tiles.allSatisfy({ $0.selection == nil }) {
            // Every patch: stitch, unpad, a newline row after each grid row.
            guard tiles.allSatisfy({ $0.count == g.gr * g.gc }) else {
                throw ModelError("LLaVA-NeXT: a tile gives \(tiles.map(\.count)) rows, not its \(g.gr)×\(g.gc) patches")
            }
            guard let newline, newline.count == d else {
                throw ModelError("LLaVA-NeXT: the mmproj has no image_newline row of width \(d) (v.image_newline)")
            }
            let u = Self.unpadded(gridHeight: h, gridWidth: w, width: width, height: height)
            for y in u.top..<u.bottom {
                let (ty, py) = (y / g.gr, y % g.gr)
                for x in u.left..<u.right {
                    let (tx, px) = (x / g.gc, x % g.gc)
                    let row = py * g.gc + px
                    out += tiles[ty * cols + tx].rows[row * d ..< (row + 1) * d]
                }
                out += newline
            }
        } else {
            // Kept patches in raster order over the stitched grid, then CLS rows, then contextual rows.
            var atCell = [(tile: Int, row: Int)?](repeating: nil, count: h * w)
            var classRows: [(Int, Int)] = [], contextualRows: [(Int, Int)] = []
            for (t, tile) in tiles.enumerated() {
                guard let s = tile.selection else { throw ModelError("LLaVA-NeXT: some tiles were reduced and some not") }
                let offset = tile.hasClassToken ? 1 : 0
                for (row, index) in s.dominant.enumerated() {
                    if tile.hasClassToken && index == 0 { classRows.append((t, row)); continue }
                    let p = index - offset
                    guard (0 ..< g.gr * g.gc).contains(p), row < tile.count else {
                        throw ModelError("LLaVA-NeXT: tile \(t) keeps token \(index), outside its \(g.gr)×\(g.gc) patches")
                    }
                    let (ty, tx) = (t / cols, t % cols)
                    atCell[(ty * g.gr + p / g.gc) * w + tx * g.gc + p % g.gc] = (t, row)
                }
                for c in 0..<s.contextual.count { contextualRows.append((t, s.dominant.count + c)) }
            }
            let order = atCell.compactMap { $0.map { ($0.tile, $0.row) } } + classRows + contextualRows
            for (t, row) in order { out += tiles[t].rows[row * d ..< (row + 1) * d] }
        }
        let tokens = out.count / max(d, 1)
        return PackedImage(embeddings: out, tokens: tokens, layout: [.rows(0..<tokens)])
    }

    func cropCount(width: Int, height: Int) -> Int {
        let (th, tw) = Self.bestResolution(height: height, width: width, candidates: gridPinpoints)
        return 1 + ((th + side - 1) / side) * ((tw + side - 1) / side)
    }

    /// The candidate keeping most of the image's pixels when fitted inside it, then the least padding.
    static func bestResolution(height: Int, width: Int, candidates: [(height: Int, width: Int)]) -> (Int, Int) {
        var best = candidates[0], bestEffective = -1, bestWasted = Int.max
        for c in candidates {
            let scale = min(Double(c.width) / Double(width), Double(c.height) / Double(height))
            let dw = Int(Double(width) * scale), dh = Int(Double(height) * scale)
            let effective = min(dw * dh, width * height)
            let wasted = c.width * c.height - effective
            if effective > bestEffective || (effective == bestEffective && wasted < bestWasted) {
                (best, bestEffective, bestWasted) = (c, effective, wasted)
            }
        }
        return (best.height, best.width)
    }
}

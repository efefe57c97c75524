import Foundation
import VZQModels
import VZQImage
import VZQFormats

/// SmolVLM / Idefics3, as transformers' Idefics3ImageProcessor and Idefics3Processor / SmolVLMProcessor do it:
///
///   1. resize (LANCZOS) so the longest edge is L (`clip.vision.preproc_image_size`, the processor's
///      size.longest_edge; default 4 × the tile side M), the other side int(L / aspect) made even;
///   2. with image splitting (`vzquant.vision.image_splitting`, default on): resize again so each side is a whole
///      number of tiles — the longer side ceil(side / M)·M, the shorter int(longer / aspect) then ceil'd to tiles —
///      and, when that is more than one tile, cut it into rows × columns M×M tiles (row-major) followed by the
///      whole step-2 image resized to M×M (the global image);
///   3. without splitting (or when it is one tile): the step-1 image resized to M×M, alone.
///
/// The prompt text around the rows (tiles: `<fake_token_around_image><row_r_col_c>` + rows, "\n" after each row
/// of tiles, then "\n<fake_token_around_image><global-img>" + rows + "<fake_token_around_image>"; one image:
/// "<fake_token_around_image><global-img>" + rows + "<fake_token_around_image>").
struct Idefics3Family: VLMFamily {
    let processor: ImageProcessor
    /// Tile side M.
    let side: Int
    /// Longest edge L of step 1.
    let longestEdge: Int
    let splitting: Bool
    var name: String { "idefics3" }

    static let fakeToken = "<fake_token_around_image>"
    static let globalToken = "<global-img>"

    /// nil unless the projector is Idefics3's pixel-shuffle connector.
    init?(context c: VLMFamilyContext) throws {
        guard c.projector == .idefics3 else { return nil }
        side = c.encoder.imageSize
        longestEdge = try c.metadata.int(GGUFKey.Vision.preprocessImageSize, in: 1...ImageProcessor.maxSide, default: 4 * side)
        splitting = try c.metadata.bool(GGUFKey.VZQ.imageSplitting, default: true)
        processor = try ImageProcessor(resize: .exact(width: side, height: side), mean: c.mean, std: c.std, filter: .lanczos)
    }

    init(processor: ImageProcessor, side: Int, longestEdge: Int, splitting: Bool) {
        (self.processor, self.side, self.longestEdge, self.splitting) = (processor, side, longestEdge, splitting)
    }

    /// Step 1: the longest edge to L, the other side int(L / aspect) rounded up to even (at least 1), then at most
    /// 4096 on the longest side (the processor's upper bound).
    func firstResize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        let aspect = Double(w) / Double(h)
        var (nw, nh) = (w, h)
        if w >= h {
            nw = longestEdge
            nh = Int(Double(nw) / aspect)
            if nh % 2 != 0 { nh += 1 }
        } else {
            nh = longestEdge
            nw = Int(Double(nh) * aspect)
            if nw % 2 != 0 { nw += 1 }
        }
        (nw, nh) = (max(nw, 1), max(nh, 1))
        let bound = 4096, a2 = Double(nw) / Double(nh)
        if nw >= nh, nw > bound {
            (nw, nh) = (bound, Int(Double(bound) / a2))
        } else if nh > nw, nh > bound {
            (nh, nw) = (bound, Int(Double(bound) * a2))
        }
        return (max(nw, 1), max(nh, 1))
    }

    /// Step 2: both sides to whole tiles.
    func tileResize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        let aspect = Double(w) / Double(h)
        func up(_ v: Int) -> Int { (v + side - 1) / side * side }
        if w >= h {
            let nw = up(w)
            return (nw, up(Int(Double(nw) / aspect)))
        }
        let nh = up(h)
        return (up(Int(Double(nh) * aspect)), nh)
    }

    /// Tiles (columns, rows) of a width × height image; (0, 0) when it stays one global image.
    func tiles(width: Int, height: Int) -> (columns: Int, rows: Int) {
        guard splitting else { return (0, 0) }
        let s1 = firstResize(width: width, height: height)
        let s2 = tileResize(width: s1.width, height: s1.height)
        guard s2.width > side || s2.height > side else { return (0, 0) }
        return (s2.width / side, s2.height / side)
    }

    func crops(of image: RGBImage) -> [RGBImage] {
        let f = processor.filter
        let s1 = firstResize(width: image.width, height: image.height)
        let first = image.resized(width: s1.width, height: s1.height, filter: f)
        guard splitting else { return [first.resized(width: side, height: side, filter: f)] }
        let s2 = tileResize(width: s1.width, height: s1.height)
        let grid = first.resized(width: s2.width, height: s2.height, filter: f)
        guard s2.width > side || s2.height > side else { return [grid] }
        var out: [RGBImage] = []
        for ty in 0 ..< s2.height / side {
            for tx in 0 ..< s2.width / side { out.append(grid.cropped(x: tx * side, y: ty * side, width: side, height: side)) }
        }
        return out + [grid.resized(width: side, height: side, filter: f)]
    }

    func cropCount(width: Int, height: Int) -> Int {
        let (cols, rows) = tiles(width: width, height: height)
        return cols * rows + 1
    }

    func promptLayout(width: Int, height: Int, cropCount: Int) -> [ImageLayoutPiece] {
        let (cols, rows) = tiles(width: width, height: height)
        let fake = Self.fakeToken, global = Self.globalToken
        guard cols * rows > 0, cols * rows + 1 == cropCount else {
            return [.text(fake + global), .crop(cropCount - 1), .text(fake)]
        }
        var out: [ImageLayoutPiece] = []
        for r in 0..<rows {
            for c in 0..<cols {
                out += [.text("\(fake)<row_\(r + 1)_col_\(c + 1)>"), .crop(r * cols + c)]
            }
            out.append(.text("\n"))
        }
        return out + [.text("\n\(fake)\(global)"), .crop(cols * rows), .text(fake)]
    }
}

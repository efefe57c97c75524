import VZQModels
import VZQImage
import VZQFormats

/// LLaVA-NeXT AnyRes: the grid resolution (`clip.vision.image_grid_pinpoints`) that keeps most of the image is
/// chosen, the image fitted into it and padded with black, centred, and cut into tiles of the encoder's size; the
/// whole image resized to one tile comes first (transformers' LlavaNextImageProcessor).
struct LlavaNextFamily: VLMFamily {
    let processor: ImageProcessor
    /// (height, width) resolutions an image may be fitted into.
    let gridPinpoints: [(height: Int, width: Int)]
    let side: Int
    var name: String { "llava-next" }

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

import Foundation
import VZQFormats
import CImage

/// Resampling filters, computed as Pillow's `Image.resize` does for 8-bit images: separable passes (in Pillow 13's
/// order, see `resized`; each skipped when that side keeps its size), per-output-pixel kernels widened by the scale factor when
/// shrinking, coefficients normalised and rounded to 22-bit fixed point, each pass rounded and clipped to 8 bits.
public enum ResampleFilter: Sendable {
    case bicubic   // Pillow BICUBIC (a = −0.5), support 2
    case bilinear  // Pillow BILINEAR (triangle), support 1
    case lanczos   // Pillow LANCZOS (sinc windowed by sinc(x/3)), support 3

    var support: Double {
        switch self {
        case .bicubic: return 2
        case .bilinear: return 1
        case .lanczos: return 3
        }
    }

    private static func sinc(_ x: Double) -> Double {
        guard x != 0 else { return 1 }
        let px = x * Double.pi
        return sin(px) / px
    }

    func weight(_ x: Double) -> Double {
        let x = abs(x)
        switch self {
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .lanczos:
            return x < 3 ? Self.sinc(x) * Self.sinc(x / 3) : 0
        }
    }
}

extension RGBImage {
    private static let precisionBits = 32 - 8 - 2

    /// Fixed-point kernels for resampling `inSize` samples to `outSize`: for each output, the first input index
    /// and the integer weights.
    private static func kernels(inSize: Int, outSize: Int, filter: ResampleFilter) -> [(start: Int, weights: [Int32])] {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let inv = 1 / filterScale
        var result: [(Int, [Int32])] = []
        result.reserveCapacity(outSize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize)
            var w = [Double]()
            var total = 0.0
            for x in xmin..<max(xmin, xmax) {
                let v = filter.weight((Double(x) - center + 0.5) * inv)
                w.append(v)
                total += v
            }
            let one = Double(1 << precisionBits)
            let fixed: [Int32] = w.map { v in
                let n = total != 0 ? v / total : v
                return Int32(n < 0 ? (-0.5 + n * one).rounded(.towardZero) : (0.5 + n * one).rounded(.towardZero))
            }
            result.append((xmin, fixed))
        }
        return result
    }

    @inline(__always) private static func clip8(_ v: Int) -> UInt8 {
        let s = v >> precisionBits
        return s < 0 ? 0 : (s > 255 ? 255 : UInt8(s))
    }

    /// One separable pass of Pillow's fixed-point convolution over RGB pixels: for every line and every output
    /// sample i, out = clip8(Σ_j w_ij · src[line, start_i + j]) per channel. The horizontal and vertical passes
    /// differ only in strides (bytes between lines and between taps in the source, and the same in the output).
    private static func convolve(_ src: UnsafeBufferPointer<UInt8>, kernels ks: [(start: Int, weights: [Int32])],
                                 lines: Int, srcLineStride: Int, srcTapStride: Int,
                                 dstLineStride: Int, dstSampleStride: Int, into out: inout [UInt8]) {
        let half = 1 << (precisionBits - 1)
        for line in 0..<lines {
            for (i, k) in ks.enumerated() {
                var s0 = half, s1 = half, s2 = half
                var p = line * srcLineStride + k.start * srcTapStride
                for wt in k.weights {
                    let w = Int(wt)
                    s0 += Int(src[p]) * w
                    s1 += Int(src[p + 1]) * w
                    s2 += Int(src[p + 2]) * w
                    p += srcTapStride
                }
                let d = line * dstLineStride + i * dstSampleStride
                out[d] = clip8(s0)
                out[d + 1] = clip8(s1)
                out[d + 2] = clip8(s2)
            }
        }
    }

    /// Resized to width × height as Pillow's `Image.resize(size, filter)` (no reducing_gap, whole-image box): two
    /// separable passes, each skipped when that side keeps its size. Horizontal first, except — as Pillow 13 does —
    /// when the height shrinks by more than twice what the width shrinks (h − newH > 2·(w − newW)): then vertical
    /// first, so the horizontal pass runs on fewer rows. The order shows in the 8-bit rounding between the passes.
    public func resized(width newW: Int, height newH: Int, filter: ResampleFilter = .bicubic) -> RGBImage {
        precondition(newW > 0 && newH > 0 && width > 0 && height > 0, "resize: sizes must be positive")
        if newW == width && newH == height { return self }
        let verticalFirst = height - newH > 0 && height - newH > 2 * (width - newW)
        return verticalFirst ? resizedVertically(newH, filter).resizedHorizontally(newW, filter)
                             : resizedHorizontally(newW, filter).resizedVertically(newH, filter)
    }

    private func resizedHorizontally(_ newW: Int, _ filter: ResampleFilter) -> RGBImage {
        guard newW != width else { return self }
        let ks = Self.kernels(inSize: width, outSize: newW, filter: filter)
        var out = [UInt8](repeating: 0, count: newW * height * 3)
        pixels.withUnsafeBufferPointer { src in
            Self.convolve(src, kernels: ks, lines: height, srcLineStride: width * 3, srcTapStride: 3,
                          dstLineStride: newW * 3, dstSampleStride: 3, into: &out)
        }
        return RGBImage(width: newW, height: height, pixels: out)
    }

    private func resizedVertically(_ newH: Int, _ filter: ResampleFilter) -> RGBImage {
        guard newH != height else { return self }
        let ks = Self.kernels(inSize: height, outSize: newH, filter: filter)
        var out = [UInt8](repeating: 0, count: width * newH * 3)
        // columns are the lines here: taps and output samples step by whole rows
        pixels.withUnsafeBufferPointer { src in
            Self.convolve(src, kernels: ks, lines: width, srcLineStride: 3, srcTapStride: width * 3,
                          dstLineStride: 3, dstSampleStride: width * 3, into: &out)
        }
        return RGBImage(width: width, height: newH, pixels: out)
    }

    /// Output size for transformers' `shortest_edge` resize: the short side becomes `size`, the long side
    /// int(size × long / short) (truncated).
    public static func shortestEdgeSize(width: Int, height: Int, shortestEdge size: Int) -> (width: Int, height: Int) {
        let short = min(width, height), long = max(width, height)
        let newLong = Int(Double(size) * Double(long) / Double(short))
        return width <= height ? (size, newLong) : (newLong, size)
    }

    /// transformers' center_crop: the window at ((H − h) // 2, (W − w) // 2); where the crop is larger than the
    /// image, the image is first zero-padded symmetrically (as its numpy center_crop does).
    public func centerCropped(width cw: Int, height ch: Int) -> RGBImage {
        precondition(cw > 0 && ch > 0, "center crop: size must be positive")
        var img = self
        if cw > width || ch > height {
            let nw = max(cw, width), nh = max(ch, height)
            let top = (nh - height + 1) / 2, left = (nw - width + 1) / 2   // ceil, as transformers
            img = padded(toWidth: nw, height: nh, top: top, left: left, fill: (0, 0, 0))
        }
        return img.cropped(x: (img.width - cw) / 2, y: (img.height - ch) / 2, width: cw, height: ch)
    }

    /// The window of width × height pixels whose top-left corner is (x, y); it must lie inside the image.
    public func cropped(x left: Int, y top: Int, width cw: Int, height ch: Int) -> RGBImage {
        precondition(left >= 0 && top >= 0 && cw > 0 && ch > 0 && left + cw <= width && top + ch <= height,
                     "crop window outside the image")
        var out = [UInt8](repeating: 0, count: cw * ch * 3)
        for y in 0..<ch {
            let s = ((top + y) * width + left) * 3
            out.replaceSubrange((y * cw * 3)..<((y + 1) * cw * 3), with: pixels[s..<(s + cw * 3)])
        }
        return RGBImage(width: cw, height: ch, pixels: out)
    }

    /// The image placed at (left, top) on an nw × nh canvas of `fill`.
    public func padded(toWidth nw: Int, height nh: Int, top: Int, left: Int, fill: (UInt8, UInt8, UInt8)) -> RGBImage {
        var out = RGBImage(width: nw, height: nh, fill: fill)
        for y in 0..<height {
            let d = ((top + y) * nw + left) * 3
            out.pixels.replaceSubrange(d..<(d + width * 3), with: pixels[(y * width * 3)..<((y + 1) * width * 3)])
        }
        return out
    }

    /// LLaVA-1.5's expand2square: pad the short side to a square with `fill`, the image centred ((D − side) // 2).
    public func paddedToSquare(fill: (UInt8, UInt8, UInt8)) -> RGBImage {
        if width == height { return self }
        let d = max(width, height)
        return padded(toWidth: d, height: d, top: (d - height) / 2, left: (d - width) / 2, fill: fill)
    }

    /// CHW float values: (pixel × rescale − mean[c]) / std[c], computed as transformers does (rescale in double,
    /// stored as float32, then normalised in float32).
    public func normalizedCHW(mean: [Float], std: [Float], rescale: Double = 1.0 / 255.0) -> [Float] {
        precondition(mean.count == 3 && std.count == 3, "mean and std need 3 values")
        let n = width * height
        var out = [Float](repeating: 0, count: 3 * n)
        for c in 0..<3 {
            let m = mean[c], s = std[c]
            for i in 0..<n {
                let v = Float(Double(pixels[3 * i + c]) * rescale)
                out[c * n + i] = (v - m) / s
            }
        }
        return out
    }
}

/// Hugging Face image processors, as their PIL backends compute them: the output is CHW float32 `pixel_values`.
/// `mean`/`std` come from the caller (the runtime reads them from the mmproj's clip.vision.image_mean/std).
public struct ImageProcessor: Sendable {
    public enum Resize: Sendable {
        /// CLIPImageProcessor: shortest edge to `shortestEdge`, then center crop to cropWidth × cropHeight.
        case shortestEdgeThenCrop(shortestEdge: Int, cropWidth: Int, cropHeight: Int)
        /// SiglipImageProcessor: plain resize to width × height (aspect ratio not kept), no crop.
        case exact(width: Int, height: Int)
        /// Qwen2VLImageProcessor's smart_resize: each side to the nearest multiple of `factor` (Python's round,
        /// halves to even), then, when the area leaves [minPixels, maxPixels], both sides scaled by one factor
        /// (floored to multiples when too big, ceiled when too small); the aspect ratio at most 200.
        case multiple(factor: Int, minPixels: Int, maxPixels: Int)
    }

    public var resize: Resize
    public var mean: [Float]
    public var std: [Float]
    public var filter: ResampleFilter
    /// LLaVA-1.5: pad to a square with the mean colour (int(mean × 255) per channel) before resizing.
    public var padToSquare: Bool

    /// Largest output side accepted (mean/std and sizes come from model files, which may be hostile).
    public static let maxSide = 16384

    /// Throws when the parameters (typically read from an mmproj) cannot describe a processor: mean/std must be
    /// 3 finite values each with std ≠ 0, sizes in 1…maxSide.
    public init(resize: Resize, mean: [Float], std: [Float], filter: ResampleFilter = .bicubic, padToSquare: Bool = false) throws {
        guard mean.count == 3, std.count == 3, mean.allSatisfy(\.isFinite), std.allSatisfy({ $0.isFinite && $0 != 0 }) else {
            throw ImageProcessorError("image mean/std must be 3 finite values each, std non-zero (got mean \(mean), std \(std))")
        }
        let sides: [Int]
        switch resize {
        case let .shortestEdgeThenCrop(edge, cw, ch): sides = [edge, cw, ch]
        case let .exact(w, h): sides = [w, h]
        case let .multiple(factor, minPixels, maxPixels):
            sides = [factor]
            guard minPixels >= 1, minPixels <= maxPixels, maxPixels <= Self.maxSide * Self.maxSide else {
                throw ImageProcessorError("image pixel bounds \(minPixels)…\(maxPixels) must be ordered and at most \(Self.maxSide)²")
            }
        }
        guard sides.allSatisfy({ $0 >= 1 && $0 <= Self.maxSide }) else {
            throw ImageProcessorError("image sizes \(sides) must be between 1 and \(Self.maxSide)")
        }
        self.resize = resize
        self.mean = mean
        self.std = std
        self.filter = filter
        self.padToSquare = padToSquare
    }

    public static let openAIClipMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let openAIClipStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// CLIPImageProcessor (e.g. size 336, crop 336 for LLaVA-1.5's CLIP ViT-L/14-336).
    public static func clip(size: Int, crop: Int, mean: [Float] = openAIClipMean, std: [Float] = openAIClipStd) throws -> Self {
        try .init(resize: .shortestEdgeThenCrop(shortestEdge: size, cropWidth: crop, cropHeight: crop), mean: mean, std: std)
    }

    /// LLaVA-1.5: expand2square with the mean colour, then CLIP processing.
    public static func llava(size: Int, crop: Int, mean: [Float] = openAIClipMean, std: [Float] = openAIClipStd) throws -> Self {
        try .init(resize: .shortestEdgeThenCrop(shortestEdge: size, cropWidth: crop, cropHeight: crop), mean: mean, std: std,
                  padToSquare: true)
    }

    /// SiglipImageProcessor: resize to size × size, mean/std 0.5 unless given.
    public static func siglip(size: Int, mean: [Float] = [0.5, 0.5, 0.5], std: [Float] = [0.5, 0.5, 0.5]) throws -> Self {
        try .init(resize: .exact(width: size, height: size), mean: mean, std: std)
    }

    /// Output height and width of a fixed-size processor; a `.multiple` processor's for a square of maxPixels.
    public var outputSize: (height: Int, width: Int) {
        switch resize {
        case let .shortestEdgeThenCrop(_, cw, ch): return (ch, cw)
        case let .exact(w, h): return (h, w)
        case let .multiple(factor, _, maxPixels):
            let side = max(factor, Int(Double(maxPixels).squareRoot()) / factor * factor)
            return (side, side)
        }
    }

    /// Output height and width for a width × height image (nil: an aspect ratio `.multiple` refuses).
    public func outputSize(width: Int, height: Int) -> (height: Int, width: Int)? {
        guard case let .multiple(factor, minPixels, maxPixels) = resize else { return outputSize }
        return Self.smartResize(width: width, height: height, factor: factor, minPixels: minPixels, maxPixels: maxPixels)
    }

    /// Qwen2-VL's smart_resize in Double, as Python computes it; nil when the longer side is over 200 × the other.
    public static func smartResize(width w: Int, height h: Int, factor f: Int, minPixels: Int,
                                   maxPixels: Int) -> (height: Int, width: Int)? {
        guard w > 0, h > 0, Double(max(w, h)) / Double(min(w, h)) <= 200 else { return nil }
        let fd = Double(f)
        var hBar = Int((Double(h) / fd).rounded(.toNearestOrEven)) * f
        var wBar = Int((Double(w) / fd).rounded(.toNearestOrEven)) * f
        if hBar * wBar > maxPixels {
            let beta = (Double(h) * Double(w) / Double(maxPixels)).squareRoot()
            hBar = max(f, Int((Double(h) / beta / fd).rounded(.down)) * f)
            wBar = max(f, Int((Double(w) / beta / fd).rounded(.down)) * f)
        } else if hBar * wBar < minPixels {
            let beta = (Double(minPixels) / (Double(h) * Double(w))).squareRoot()
            hBar = Int((Double(h) * beta / fd).rounded(.up)) * f
            wBar = Int((Double(w) * beta / fd).rounded(.up)) * f
        }
        return (hBar, wBar)
    }

    /// The image after padding, resizing and cropping, still 8-bit (what the processor normalises). A thin image
    /// grows on the way (a 1×200000 strip padded to a square, or resized to a shortest edge of 336): each such
    /// intermediate is checked against the memory the process can get before it is made.
    public func prepare(_ image: RGBImage) throws -> RGBImage {
        var img = image
        if padToSquare {
            // Python's int(): truncation; a mean outside 0…1 (a hostile file) is clamped before the conversion.
            func level(_ m: Float) -> UInt8 { UInt8(Swift.min(255, Swift.max(0, Double(m) * 255))) }
            let d = max(img.width, img.height)
            try Self.checkIntermediate(width: d, height: d, "image \(img.width)×\(img.height) padded to a square")
            img = img.paddedToSquare(fill: (level(mean[0]), level(mean[1]), level(mean[2])))
        }
        switch resize {
        case let .shortestEdgeThenCrop(edge, cw, ch):
            let s = RGBImage.shortestEdgeSize(width: img.width, height: img.height, shortestEdge: edge)
            try Self.checkIntermediate(width: s.width, height: s.height,
                                       "image \(img.width)×\(img.height) resized to a shortest edge of \(edge)")
            img = img.resized(width: s.width, height: s.height, filter: filter).centerCropped(width: cw, height: ch)
        case let .exact(w, h):
            img = img.resized(width: w, height: h, filter: filter)
        case .multiple:
            guard let (h, w) = outputSize(width: img.width, height: img.height) else {
                throw ImageProcessorError("image \(img.width)×\(img.height) is too thin (the longer side is over 200 × the shorter)")
            }
            try Self.checkIntermediate(width: w, height: h, "image \(img.width)×\(img.height) resized")
            img = img.resized(width: w, height: h, filter: filter)
        }
        return img
    }

    /// CHW float32 pixel values, 3 × height × width.
    public func pixelValues(_ image: RGBImage) throws -> [Float] {
        try prepare(image).normalizedCHW(mean: mean, std: std)
    }

    /// An 8-bit RGB image of width × height that preprocessing is about to make must fit in memory.
    static func checkIntermediate(width: Int, height: Int, _ what: @autoclosure () -> String) throws {
        try Memory.check(Checked.product([width, height, 3]), for: "\(what()) (\(width)×\(height) pixels)")
    }
}

/// Image processor parameters that cannot work (bad mean/std or sizes), in one line.
public struct ImageProcessorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

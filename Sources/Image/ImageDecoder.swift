import CImage
import Foundation
import VZQFormats

/// An 8-bit RGB image: `pixels` holds width × height × 3 bytes, rows top to bottom, channels interleaved (HWC).
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3, "RGBImage: pixel count mismatch")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A width × height image filled with one colour.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8)) {
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            p[3 * i] = fill.0
            p[3 * i + 1] = fill.1
            p[3 * i + 2] = fill.2
        }
        self.init(width: width, height: height, pixels: p)
    }

    /// Values scaled to [0, 1], still HWC.
    public func floats() -> [Float] { pixels.map { Float($0) / 255 } }
}

/// What to do with a PNG's alpha channel (and palette transparency).
/// Each is bit-exact with PIL.
public enum AlphaHandling: Sendable {
    /// Composite over white — what transformers 5.x image processors do (`convert_to_rgb` uses PIL's
    /// `alpha_composite` on a white background). The default.
    case compositeOverWhite
    /// Composite over black (colour × alpha / 255).
    case compositeOverBlack
    /// Discard alpha and keep the stored colour — PIL's `convert("RGB")`, as transformers 4.x processors did.
    case drop
}

/// An image over a limit of `ImageDecodeOptions` (file bytes, pixels): a well-formed file too large to take, not a
/// broken one (a server answers 413 for it, 400 for a `FormatError`).
public struct ImageOverLimit: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file and what is over which limit.
    public let error: FormatError

    public init(file: String, _ message: String) { error = FormatError(file: file, message) }

    public var description: String { error.description }
}

public struct ImageDecodeOptions: Sendable {
    /// Decompression-bomb guard: width × height above this is rejected from the header, before any pixel buffer
    /// is allocated. Default 64 megapixels (an RGB buffer of 192 MB).
    public var maxPixels: Int = 64_000_000
    /// Files larger than this are rejected before being read.
    public var maxFileBytes: Int = 256 << 20
    public var alpha: AlphaHandling = .compositeOverWhite
    /// Rotate/flip JPEGs by their EXIF orientation tag. Off by default: Hugging Face processors (PIL's
    /// `Image.open`) do not apply it.
    public var applyEXIFOrientation: Bool = false

    public init(maxPixels: Int = 64_000_000, maxFileBytes: Int = 256 << 20, alpha: AlphaHandling = .compositeOverWhite,
                applyEXIFOrientation: Bool = false) {
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
        self.alpha = alpha
        self.applyEXIFOrientation = applyEXIFOrientation
    }
}

/// JPEG and PNG decoding through libjpeg-turbo and libpng (the CImage C target). Every failure — truncated or
/// corrupt data, a file that is no image, zero or over-limit dimensions — is a `FormatError` naming the file.
public enum ImageDecoder {
    public enum Format: String, Sendable { case jpeg, png }

    /// The format from the first bytes, or nil.
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> Format? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        if bytes.count >= 8, Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        return nil
    }

    public static func decode(file path: String, options: ImageDecodeOptions = .init()) throws -> RGBImage {
        // A regular file only (a directory, FIFO or device is named as such), at most maxFileBytes read.
        let bytes = try InputFile.read(path, limit: options.maxFileBytes)
        return try bytes.withUnsafeBytes { try decode(raw: $0, name: path, options: options) }
    }

    /// Decodes bytes in memory; `name` is used in error messages.
    public static func decode(data: Data, name: String, options: ImageDecodeOptions = .init()) throws -> RGBImage {
        try data.withUnsafeBytes { try decode(raw: $0, name: name, options: options) }
    }

    static func decode(raw: UnsafeRawBufferPointer, name: String, options: ImageDecodeOptions) throws -> RGBImage {
        if raw.count > options.maxFileBytes {
            throw ImageOverLimit(file: name, "image is \(raw.count) bytes, over the limit of \(options.maxFileBytes) bytes")
        }
        let maxPixels = UInt64(max(0, options.maxPixels))
        var out = vzq_image()
        let format = sniff(raw)
        var rc: Int32 = 0
        if let format {
            let base = raw.bindMemory(to: UInt8.self).baseAddress
            switch format {
            case .jpeg:
                rc = vzq_decode_jpeg(base, raw.count, maxPixels, &out)
            case .png:
                let mode: Int32
                switch options.alpha {
                case .drop: mode = Int32(VZQ_ALPHA_DROP)
                case .compositeOverBlack: mode = Int32(VZQ_ALPHA_OVER_BLACK)
                case .compositeOverWhite: mode = Int32(VZQ_ALPHA_OVER_WHITE)
                }
                rc = vzq_decode_png(base, raw.count, maxPixels, mode, &out)
            }
        }
        guard format != nil else {
            if raw.isEmpty { throw FormatError(file: name, "empty file, not an image") }
            let head = raw.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw FormatError(file: name, "not a JPEG or PNG file (starts with \(head))")
        }
        defer { vzq_image_free(&out) }
        if rc != 0 {
            let message = withUnsafeBytes(of: out.error) { buf in
                String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if out.over_limit != 0 { throw ImageOverLimit(file: name, message) }
            throw FormatError(file: name, message.isEmpty ? "cannot decode" : message)
        }
        let w = Int(out.width), h = Int(out.height)
        let pixels = [UInt8](UnsafeBufferPointer(start: out.pixels, count: w * h * 3))
        var image = RGBImage(width: w, height: h, pixels: pixels)
        if options.applyEXIFOrientation, format == .jpeg, out.exif_orientation > 1 {
            image = image.oriented(exif: Int(out.exif_orientation))
        }
        return image
    }
}

extension RGBImage {
    /// The image as an EXIF orientation tag (1…8) says it should be displayed (PIL's `ImageOps.exif_transpose`).
    public func oriented(exif orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let w = width, h = height
        let swaps = orientation >= 5
        let ow = swaps ? h : w, oh = swaps ? w : h
        var out = [UInt8](repeating: 0, count: pixels.count)
        for oy in 0..<oh {
            for ox in 0..<ow {
                let (sx, sy): (Int, Int)
                switch orientation {
                case 2: (sx, sy) = (w - 1 - ox, oy)               // mirror left-right
                case 3: (sx, sy) = (w - 1 - ox, h - 1 - oy)       // rotate 180
                case 4: (sx, sy) = (ox, h - 1 - oy)               // mirror top-bottom
                case 5: (sx, sy) = (oy, ox)                       // transpose
                case 6: (sx, sy) = (oy, h - 1 - ox)               // rotate 90° clockwise
                case 7: (sx, sy) = (w - 1 - oy, h - 1 - ox)       // transverse
                default: (sx, sy) = (w - 1 - oy, ox)              // 8: rotate 90° anticlockwise
                }
                let s = (sy * w + sx) * 3, d = (oy * ow + ox) * 3
                out[d] = pixels[s]
                out[d + 1] = pixels[s + 1]
                out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(width: ow, height: oh, pixels: out)
    }
}

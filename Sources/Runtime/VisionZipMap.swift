import Foundation
import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// `--visionzip-map`: the image as the encoder saw it (after padding, resizing and cropping), with VisionZip's
/// choice painted over its patch grid, so a person can check what was kept:
///   dominant patches unchanged, contextual targets tinted blue, patches merged into a contextual token dimmed,
///   a thin line around every dominant patch. AnyRes crops are laid side by side.
public enum VisionZipMap {
    /// Every crop of `encoded` (which must have been encoded with `keepCrops`), side by side. A cell is one of the
    /// units the reducer chose among: a patch, or for pixel-shuffle connectors an s×s group of patches.
    public static func render(_ encoded: EncodedImage) -> RGBImage {
        let crops = encoded.processedCrops ?? []
        return sideBySide(zip(crops, encoded.crops).map { crop, report in
            let cell = crop.width / max(report.gridColumns, 1)
            let hasClassToken = report.tokensBefore == report.gridRows * report.gridColumns + 1
            return render(crop: crop, report: report, patchSize: cell, hasClassToken: hasClassToken)
        })
    }

    /// Renders one crop (`image` is the processed crop, `report` its selection).
    public static func render(crop image: RGBImage, report: CropReport, patchSize: Int, hasClassToken: Bool) -> RGBImage {
        var out = image
        guard let s = report.selection else { return out }
        let first = hasClassToken ? 1 : 0
        let targets = Set(s.contextual.map(\.target))
        let dominant = Set(s.dominant)
        for py in 0..<report.gridRows {
            for px in 0..<report.gridColumns {
                let token = first + py * report.gridColumns + px
                let kind: Kind = dominant.contains(token) ? .dominant : targets.contains(token) ? .target : .merged
                paint(&out, x0: px * patchSize, y0: py * patchSize, size: patchSize, kind)
            }
        }
        return out
    }

    enum Kind { case dominant, target, merged }

    private static func paint(_ img: inout RGBImage, x0: Int, y0: Int, size: Int, _ kind: Kind) {
        for y in y0 ..< min(y0 + size, img.height) {
            for x in x0 ..< min(x0 + size, img.width) {
                let i = (y * img.width + x) * 3
                let edge = y == y0 || x == x0 || y == y0 + size - 1 || x == x0 + size - 1
                switch kind {
                case .dominant:
                    if edge { (img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]) = (255, 220, 0) }
                case .target:
                    img.pixels[i] = UInt8(Int(img.pixels[i]) / 3)
                    img.pixels[i + 1] = UInt8(Int(img.pixels[i + 1]) / 3)
                    img.pixels[i + 2] = UInt8(min(255, Int(img.pixels[i + 2]) / 3 + 170))
                case .merged:
                    for c in 0..<3 { img.pixels[i + c] = UInt8(Int(img.pixels[i + c]) / 4) }
                }
            }
        }
    }

    /// Crops side by side, separated by 4 white columns.
    public static func sideBySide(_ images: [RGBImage]) -> RGBImage {
        guard images.count > 1 else { return images.first ?? RGBImage(width: 1, height: 1, fill: (0, 0, 0)) }
        let gap = 4
        let width = images.map(\.width).reduce(0, +) + gap * (images.count - 1)
        let height = images.map(\.height).max()!
        var out = RGBImage(width: width, height: height, fill: (255, 255, 255))
        var x = 0
        for img in images {
            out = img.pasted(into: out, x: x, y: 0)
            x += img.width + gap
        }
        return out
    }

    /// Writes `image` as PNG (`.png`) or binary PPM (`.ppm`), atomically.
    public static func write(_ image: RGBImage, to path: String) throws {
        let lower = path.lowercased()
        let bytes: [UInt8]
        if lower.hasSuffix(".png") {
            bytes = PNGEncoder.encode(image)
        } else if lower.hasSuffix(".ppm") {
            bytes = Array("P6\n\(image.width) \(image.height)\n255\n".utf8) + image.pixels
        } else {
            throw ModelError("\(path): the VisionZip map is written as .png or .ppm")
        }
        try AtomicFile.write(path) { try $0.write(bytes) }
    }
}

extension RGBImage {
    /// `self` copied onto `canvas` with its top-left corner at (x, y) (clipped to the canvas).
    func pasted(into canvas: RGBImage, x: Int, y: Int) -> RGBImage {
        var out = canvas
        let w = min(width, canvas.width - x)
        guard w > 0 else { return out }
        for row in 0 ..< min(height, canvas.height - y) {
            let d = ((y + row) * canvas.width + x) * 3, s = row * width * 3
            out.pixels.replaceSubrange(d ..< d + w * 3, with: pixels[s ..< s + w * 3])
        }
        return out
    }
}

/// A minimal PNG writer: 8-bit RGB, no filtering, zlib "stored" blocks (no compression; these are small maps).
enum PNGEncoder {
    static func encode(_ image: RGBImage) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity((image.width * 3 + 1) * image.height)
        for y in 0..<image.height {
            raw.append(0)  // filter type None
            raw += image.pixels[(y * image.width * 3) ..< ((y + 1) * image.width * 3)]
        }
        var z: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            let last = offset + n == raw.count
            z.append(last ? 1 : 0)
            z += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            z += raw[offset ..< offset + n]
            offset += n
        } while offset < raw.count
        z += bigEndian(adler32(raw))

        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var header = bigEndian(UInt32(image.width)) + bigEndian(UInt32(image.height))
        header += [8, 2, 0, 0, 0]  // 8-bit, RGB, deflate, adaptive filtering, no interlace
        png += chunk("IHDR", header)
        png += chunk("IDAT", z)
        png += chunk("IEND", [])
        return png
    }

    private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typed = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + typed + bigEndian(crc32(typed))
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    private static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for x in bytes {
            a = (a + UInt32(x)) % 65521
            b = (b + a) % 65521
        }
        return b << 16 | a
    }
}

import Foundation
import VZQImage
import VZQSupport

/// Calibration pictures generated here, so pruning a vision tower needs no dataset (and nothing with a licence
/// ships): seeded scenes of the statistics a tower meets in photos — smooth illumination gradients, a few solid and
/// shaded objects (ellipses, rectangles) with edges at every orientation, stripes of several frequencies and sensor
/// noise — at landscape, portrait and square sizes. `--calibration-images DIR` replaces them with real photos.
public enum CalibrationImages {
    static let sizes = [(320, 240), (240, 320), (384, 288), (288, 288)]

    public static func builtIn(count: Int, seed: UInt64) -> [RGBImage] {
        (0..<count).map { i in scene(index: i, seed: seed) }
    }

    static func scene(index i: Int, seed: UInt64) -> RGBImage {
        var rng = SeededRandom(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i) &+ 1)
        func unit() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }
        let (w, h) = sizes[i % sizes.count]
        // Background: a gradient between two random colours along a random direction.
        let c0 = (unit() * 255, unit() * 255, unit() * 255), c1 = (unit() * 255, unit() * 255, unit() * 255)
        let angle = unit() * 2 * Double.pi
        let (dx, dy) = (cos(angle), sin(angle))
        var rgb = [Double](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                let t = max(0, min(1, 0.5 + ((Double(x) / Double(w) - 0.5) * dx + (Double(y) / Double(h) - 0.5) * dy)))
                let o = (y * w + x) * 3
                (rgb[o], rgb[o + 1], rgb[o + 2]) = (c0.0 + (c1.0 - c0.0) * t, c0.1 + (c1.1 - c0.1) * t, c0.2 + (c1.2 - c0.2) * t)
            }
        }
        // Objects: shaded ellipses and solid rectangles.
        for k in 0 ..< 3 + Int(unit() * 5) {
            let cx = unit() * Double(w), cy = unit() * Double(h)
            let rx = (0.05 + 0.25 * unit()) * Double(w), ry = (0.05 + 0.25 * unit()) * Double(h)
            let colour = (unit() * 255, unit() * 255, unit() * 255)
            let ellipse = k % 2 == 0
            for y in max(0, Int(cy - ry)) ..< min(h, Int(cy + ry) + 1) {
                for x in max(0, Int(cx - rx)) ..< min(w, Int(cx + rx) + 1) {
                    let u = (Double(x) - cx) / rx, v = (Double(y) - cy) / ry
                    let r2 = u * u + v * v
                    guard !ellipse || r2 <= 1 else { continue }
                    let shade = ellipse ? 1 - 0.5 * r2 : 1
                    let o = (y * w + x) * 3
                    (rgb[o], rgb[o + 1], rgb[o + 2]) = (colour.0 * shade, colour.1 * shade, colour.2 * shade)
                }
            }
        }
        // Stripes in a band, then noise.
        let period = 4 + unit() * 28, band = (unit() * Double(h), unit() * Double(h))
        for y in Int(min(band.0, band.1)) ..< Int(max(band.0, band.1)) {
            for x in 0..<w where Int(Double(x) / period) % 2 == 0 {
                let o = (y * w + x) * 3
                for c in 0..<3 { rgb[o + c] *= 0.6 }
            }
        }
        var image = RGBImage(width: w, height: h, fill: (0, 0, 0))
        for p in 0 ..< w * h * 3 {
            let noise = (unit() - 0.5) * 12
            image.pixels[p] = UInt8(max(0, min(255, (rgb[p] + noise).rounded())))
        }
        return image
    }
}

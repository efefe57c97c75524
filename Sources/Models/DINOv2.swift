import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// DINOv2's one step the other ViTs do not have: the position embedding, trained on a square grid, is resized to
/// the grid of the image at hand (transformers' Dinov2Embeddings.interpolate_pos_encoding):
///   the CLS position is kept; the G×G patch positions are resampled to rows×cols with
///   torch.nn.functional.interpolate(mode="bicubic", align_corners=False) — PyTorch's cubic convolution (A = −0.75),
///   source index (dst + ½)·(G / out) − ½, neighbours clamped at the borders, no antialias, in float32.
/// The rest of the tower (CLS token, layer scale ls1/ls2, GELU, final layernorm) is in VisionEncoder (CLIP.swift).
extension VisionEncoder {
    /// stored [1 + grid², dim] → out [1 + rows·cols, dim].
    static func interpolatePositions(_ stored: UnsafePointer<Float>, grid g: Int, dim d: Int, rows: Int, cols: Int,
                                     into out: UnsafeMutablePointer<Float>) {
        out.update(from: stored, count: d)  // CLS
        let patches = stored + d
        let ys = cubicTaps(input: g, output: rows), xs = cubicTaps(input: g, output: cols)
        for oy in 0..<rows {
            for ox in 0..<cols {
                let o = out + (1 + oy * cols + ox) * d
                for j in 0..<d { o[j] = 0 }
                for (iy, wy) in ys[oy] {
                    for (ix, wx) in xs[ox] {
                        let w = wy * wx, src = patches + (iy * g + ix) * d
                        for j in 0..<d { o[j] += w * src[j] }
                    }
                }
            }
        }
    }

    /// For each output index, the four (clamped input index, weight) pairs of PyTorch's bicubic upsampling.
    static func cubicTaps(input n: Int, output m: Int) -> [[(Int, Float)]] {
        let a: Float = -0.75
        let scale = Float(n) / Float(m)
        // |x| ≤ 1 and 1 < |x| < 2 pieces of the Keys cubic convolution kernel.
        func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return (0..<m).map { o in
            let real = scale * (Float(o) + 0.5) - 0.5
            let base = Int(real.rounded(.down))
            let t = real - Float(base)
            let weights = [far(t + 1), near(t), near(1 - t), far(2 - t)]
            return (0..<4).map { k in (min(max(base - 1 + k, 0), n - 1), weights[k]) }
        }
    }
}

import VZQFormats

/// A vision tower the pipeline drives: normalised pixels in, the last block's features (and what a token reducer
/// asked to be measured) out. `VisionEncoder` runs the ViTs with a class token or fixed grid (CLIP, SigLIP,
/// DINOv2); `QwenVisionEncoder` runs Qwen2-VL's and Qwen2.5-VL's dynamic-resolution towers.
public protocol VisionTower: AnyObject {
    var config: VisionConfig { get }
    /// Bytes of packed weight matrices.
    var weightBytes: Int { get }
    /// Bytes of the scratch arena as planned so far.
    var scratchBytes: Int { get }
    /// Runs the tower on one normalised image [channels, height, width]; nil sizes: `config.imageSize`.
    func callAsFunction(pixels: [Float], height: Int?, width: Int?, probe: AttentionProbe,
                        keepHiddenStates: Bool) throws -> VisionOutput
}

extension VisionTower {
    public func callAsFunction(pixels: [Float], height: Int? = nil, width: Int? = nil,
                               probe: AttentionProbe = []) throws -> VisionOutput {
        try callAsFunction(pixels: pixels, height: height, width: width, probe: probe, keepHiddenStates: false)
    }
}

extension VisionEncoder: VisionTower {}

/// The tower of an mmproj, by its family.
public enum VisionTowers {
    public static func load(_ file: GGUFFile) throws -> any VisionTower {
        let config = try VisionConfig(metadata: file.metadata)
        return config.family.isQwen ? try QwenVisionEncoder(file: file) : try VisionEncoder(file: file)
    }
}

import VZQModels
import VZQImage
import VZQFormats

/// LLaVA-1.5: the image padded to a square with the mean colour (transformers' expand2square; llama.cpp does the
/// same for LLaVA mmprojs), then CLIP's resize and crop; one crop.
struct Llava15Family: VLMFamily {
    let processor: ImageProcessor
    var name: String { "llava-1.5" }

    /// nil unless the mmproj has a LLaVA projector and no AnyRes grid.
    init?(context c: VLMFamilyContext) throws {
        guard c.encoder.family == .clip, try c.metadata.bool(GGUFKey.Vision.hasLlavaProjector, default: false),
              try c.metadata.ints(GGUFKey.Vision.gridPinpoints, default: []).isEmpty else { return nil }
        processor = try .llava(size: c.encoder.imageSize, crop: c.encoder.imageSize, mean: c.mean, std: c.std)
    }

    func crops(of image: RGBImage) -> [RGBImage] { [image] }
    func cropCount(width: Int, height: Int) -> Int { 1 }
}

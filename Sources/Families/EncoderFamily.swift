import VZQModels
import VZQImage
import VZQFormats

/// A vision encoder on its own (CLIP, SigLIP, DINOv2 mmprojs without a VLM family): its own processor, one crop.
struct EncoderFamily: VLMFamily {
    let processor: ImageProcessor
    var name: String { "encoder" }

    init(context c: VLMFamilyContext) throws {
        switch c.encoder.family {
        case .siglip:
            processor = try .siglip(size: c.encoder.imageSize, mean: c.mean, std: c.std)
        case .dinov2:
            // Dinov2's BitImageProcessor: shortest edge 256, center crop 224 (its position grid is resized to fit).
            processor = try .clip(size: 256, crop: 224, mean: c.mean, std: c.std)
        case .clip, .qwen2vl, .qwen25vl:
            processor = try .clip(size: c.encoder.imageSize, crop: c.encoder.imageSize, mean: c.mean, std: c.std)
        }
    }

    func crops(of image: RGBImage) -> [RGBImage] { [image] }
    func cropCount(width: Int, height: Int) -> Int { 1 }
}

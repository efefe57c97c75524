import VZQModels
import VZQImage
import VZQFormats

/// A vision-language model family: how its images become the crops and pixels its encoder was trained on. One
/// file per family (LLaVA-1.5, LLaVA-NeXT, SmolVLM/Idefics3, and plain encoders); `VLMFamilies.make` picks the
/// family from what the mmproj says, so nothing else in the runtime branches on the family.
public protocol VLMFamily: Sendable {
    /// For reports ("llava-1.5", "llava-next", "idefics3", "encoder").
    var name: String { get }
    /// Resizing, padding and normalisation of one crop, as the family's Hugging Face processor does it.
    var processor: ImageProcessor { get }
    /// The crops an image is cut into, in the order their rows enter the prompt.
    func crops(of image: RGBImage) -> [RGBImage]
    /// How many crops `crops(of:)` makes of a width × height image, without touching pixels.
    func cropCount(width: Int, height: Int) -> Int
    /// The image's place in the prompt: the crops' rows in order, with the text the family's processor writes
    /// around them (tile markers, newlines). The default is the rows alone.
    func promptLayout(width: Int, height: Int, cropCount: Int) -> [ImageLayoutPiece]
}

/// One piece of an image's place in a prompt.
public enum ImageLayoutPiece: Sendable, Equatable {
    /// Text written around the rows (tokenized with special tokens recognised).
    case text(String)
    /// All rows of crop i.
    case crop(Int)
}

extension VLMFamily {
    public func promptLayout(width: Int, height: Int, cropCount: Int) -> [ImageLayoutPiece] { (0..<cropCount).map { .crop($0) } }
}

/// What a family reads from the mmproj.
public struct VLMFamilyContext {
    public let metadata: GGUFMetadata
    public let encoder: VisionConfig
    public let projector: Projector.Kind
    /// Image mean and std of the file, else the encoder family's defaults.
    public let mean: [Float]
    public let std: [Float]
}

/// The registry: each family's test on the mmproj, most specific first.
public enum VLMFamilies {
    typealias Maker = @Sendable (VLMFamilyContext) throws -> (any VLMFamily)?

    static let makers: [Maker] = [
        { try Idefics3Family(context: $0) },
        { try LlavaNextFamily(context: $0) },
        { try Llava15Family(context: $0) },
        { try EncoderFamily(context: $0) },
    ]

    /// The family of an mmproj (plain encoders when no VLM family claims it).
    public static func make(metadata m: GGUFMetadata, encoder: VisionConfig, projector: Projector.Kind) throws -> any VLMFamily {
        let defaults = encoder.family.defaultNormalization
        let context = VLMFamilyContext(metadata: m, encoder: encoder, projector: projector,
                                       mean: try m.floats(GGUFKey.Vision.imageMean, default: defaults.mean.map { Float($0) }),
                                       std: try m.floats(GGUFKey.Vision.imageStd, default: defaults.std.map { Float($0) }))
        for make in makers { if let f = try make(context) { return f } }
        throw ModelError("\(m.file): no image family fits this mmproj")
    }
}

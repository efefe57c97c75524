import VZQModels
import VZQImage
import VZQFormats
import VZQTokenReduction

/// A vision-language model family: how its images become the crops and pixels its encoder was trained on, and how
/// the crops' projected rows become the image's place in the prompt. One file per family (LLaVA-1.5, LLaVA-NeXT,
/// SmolVLM/Idefics3, and plain encoders); `VLMFamilies.make` picks the family from what the mmproj says, so
/// nothing else in the runtime branches on the family.
public protocol VLMFamily: Sendable {
    /// For reports ("llava-1.5", "llava-next", "idefics3", "encoder").
    var name: String { get }
    /// Resizing, padding and normalisation of one crop, as the family's Hugging Face processor does it.
    var processor: ImageProcessor { get }
    /// The crops an image is cut into, in the order their rows enter the prompt.
    func crops(of image: RGBImage) -> [RGBImage]
    /// How many crops `crops(of:)` makes of a width × height image, without touching pixels.
    func cropCount(width: Int, height: Int) -> Int
    /// The image's place in the prompt when its rows are the crops' rows in order: those rows with the text the
    /// family's processor writes around them (tile markers, newlines). The default is the rows alone.
    func promptLayout(width: Int, height: Int, cropCount: Int) -> [ImageLayoutPiece]
    /// The language model's rows of a width × height image from its crops' projected rows, and their layout.
    /// The default concatenates the crops in order under `promptLayout`; LLaVA-NeXT stitches its grid.
    func pack(_ crops: [CropRows], width: Int, height: Int, newline: [Float]?) throws -> PackedImage
    /// Rows a width × height image gives when each crop gives `rowsPerCrop` (`reduced`: a token reducer chose
    /// them), for planning before encoding; layout text is not counted.
    func rowCount(width: Int, height: Int, rowsPerCrop: Int, reduced: Bool) -> Int
}

/// One piece of an image's place in a prompt.
public enum ImageLayoutPiece: Sendable, Equatable {
    /// Text written around the rows (tokenized with special tokens recognised; adjacent text pieces are
    /// tokenized as one string, as a processor's expanded prompt is).
    case text(String)
    /// All rows of crop i (the image's rows are its crops' rows one after another).
    case crop(Int)
    /// Rows [lowerBound, upperBound) of the image's rows (a family that rearranges rows across crops).
    case rows(Range<Int>)
}

extension Array where Element == ImageLayoutPiece {
    /// The same layout with adjacent text pieces joined: how it is tokenized (and counted).
    public var mergingText: [ImageLayoutPiece] {
        var out: [ImageLayoutPiece] = []
        for piece in self {
            if case let .text(s) = piece, case let .text(previous)? = out.last {
                out[out.count - 1] = .text(previous + s)
            } else {
                out.append(piece)
            }
        }
        return out
    }
}

/// One crop's projected rows [count, width] with what chose them.
public struct CropRows: Sendable {
    public var rows: [Float]
    public var count: Int
    /// nil: every unit of the crop in raster order (CLS dropped where the projector drops it).
    public var selection: VisionZip.Selection?
    /// The crop's grid of units (patches, or pixel-shuffle groups).
    public var gridRows: Int
    public var gridColumns: Int
    /// Unit indices in `selection` count a CLS token at 0.
    public var hasClassToken: Bool

    public init(rows: [Float], count: Int, selection: VisionZip.Selection?, gridRows: Int, gridColumns: Int,
                hasClassToken: Bool) {
        (self.rows, self.count, self.selection) = (rows, count, selection)
        (self.gridRows, self.gridColumns, self.hasClassToken) = (gridRows, gridColumns, hasClassToken)
    }
}

/// An image's rows for the language model and where they go in the prompt.
public struct PackedImage: Sendable {
    public var embeddings: [Float]
    public var tokens: Int
    public var layout: [ImageLayoutPiece]
    /// Each row's (row, column) in the image's grid [tokens · 2] (Qwen2-VL's multimodal positions); nil: none.
    public var gridPositions: [Int32]? = nil
    /// How far the image moves the positions of what follows it: max(grid rows, grid columns), kept rows or not.
    public var positionSpan: Int? = nil
}

extension VLMFamily {
    public func promptLayout(width: Int, height: Int, cropCount: Int) -> [ImageLayoutPiece] { (0..<cropCount).map { .crop($0) } }

    public func pack(_ crops: [CropRows], width: Int, height: Int, newline: [Float]?) throws -> PackedImage {
        PackedImage(embeddings: crops.flatMap(\.rows), tokens: crops.map(\.count).reduce(0, +),
                    layout: promptLayout(width: width, height: height, cropCount: crops.count))
    }

    public func rowCount(width: Int, height: Int, rowsPerCrop: Int, reduced: Bool) -> Int {
        rowsPerCrop * cropCount(width: width, height: height)
    }
}

/// What a family reads from the mmproj.
public struct VLMFamilyContext {
    public let metadata: GGUFMetadata
    public let encoder: VisionConfig
    public let projector: Projector.Kind
    /// Image mean and std of the file, else the encoder family's defaults.
    public let mean: [Float]
    public let std: [Float]
    /// The caller's bound on an image's resized area (`--max-image-pixels`), for families that resize to it.
    public let maxImagePixels: Int?
}

/// The registry: each family's test on the mmproj, most specific first.
public enum VLMFamilies {
    typealias Maker = @Sendable (VLMFamilyContext) throws -> (any VLMFamily)?

    static let makers: [Maker] = [
        { try QwenVLFamily(context: $0) },
        { try Idefics3Family(context: $0) },
        { try LlavaNextFamily(context: $0) },
        { try Llava15Family(context: $0) },
        { try EncoderFamily(context: $0) },
    ]

    /// The family of an mmproj (plain encoders when no VLM family claims it).
    public static func make(metadata m: GGUFMetadata, encoder: VisionConfig, projector: Projector.Kind,
                            maxImagePixels: Int? = nil) throws -> any VLMFamily {
        let defaults = encoder.family.defaultNormalization
        let context = VLMFamilyContext(metadata: m, encoder: encoder, projector: projector,
                                       mean: try m.floats(GGUFKey.Vision.imageMean, default: defaults.mean.map { Float($0) }),
                                       std: try m.floats(GGUFKey.Vision.imageStd, default: defaults.std.map { Float($0) }),
                                       maxImagePixels: maxImagePixels)
        for make in makers { if let f = try make(context) { return f } }
        throw ModelError("\(m.file): no image family fits this mmproj")
    }
}

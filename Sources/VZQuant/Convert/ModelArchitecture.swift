/// Which Hugging Face architectures `vzquant convert` understands, and their hyper-parameters resolved from
/// config.json with transformers' defaults filled in.
public enum HFArchitecture: String, CaseIterable, Sendable {
    case llava = "LlavaForConditionalGeneration"
    case llama = "LlamaForCausalLM"
    case mistral = "MistralForCausalLM"
    case qwen2 = "Qwen2ForCausalLM"
    case clipVision = "CLIPVisionModel"
    case siglipVision = "SiglipVisionModel"
    case dinov2 = "Dinov2Model"

    public static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The architecture named by config.json's "architectures", or a one-line error naming it and the supported list.
    public static func detect(_ config: HFConfig, directory: String) throws -> HFArchitecture {
        guard let names = config.architectures, !names.isEmpty else {
            throw ConvertError("\(directory)/config.json has no \"architectures\" entry; supported: \(supportedList)")
        }
        for n in names { if let a = HFArchitecture(rawValue: n) { return a } }
        throw ConvertError("unsupported architecture \(names.joined(separator: ", ")) in \(directory)/config.json; supported: \(supportedList)")
    }

    public var hasText: Bool { self == .llava || self == .llama || self == .mistral || self == .qwen2 }
    public var hasVision: Bool { !(self == .llama || self == .mistral || self == .qwen2) }
}

/// The converter's single error: one line, no file left behind.
public struct ConvertError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A decoder-only text model, as llama.cpp describes it.
public struct TextParams: Sendable, Equatable {
    /// llama.cpp's architecture: "llama" (Llama, Mistral, Vicuna) or "qwen2".
    public var arch: String
    public var hidden: Int
    public var feedForward: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// nil when config.json does not say (then the embedding's row count is used).
    public var vocab: Int?
    public var context: Int
    public var rmsEps: Double
    public var ropeTheta: Double
    public var ropeScalingType: String?
    public var ropeScalingFactor: Double?
    public var ropeOriginalContext: Int?
    public var tiedEmbeddings: Bool
    /// q/k/v projections have biases (always for qwen2; llama when attention_bias is true).
    public var qkvBias: Bool
    /// llama.cpp's llama files store Q/K rows with the rotary halves interleaved; HF stores them split.
    public var permuteQK: Bool { arch == "llama" }

    init(_ c: HFTextConfig, tiedDefault: Bool?, directory: String) throws {
        let type = c.modelType ?? "llama"
        switch type {
        case "llama", "mistral": arch = "llama"
        case "qwen2": arch = "qwen2"
        default:
            throw ConvertError("unsupported text model_type '\(type)' in \(directory)/config.json; supported: llama, mistral, qwen2")
        }
        // transformers' defaults for each config class (used only when config.json leaves a field out).
        let mistral = type == "mistral", qwen = type == "qwen2"
        hidden = c.hiddenSize ?? 4096
        feedForward = c.intermediateSize ?? (mistral ? 14336 : qwen ? 22016 : 11008)
        layers = c.numHiddenLayers ?? 32
        heads = c.numAttentionHeads ?? 32
        kvHeads = c.numKeyValueHeads ?? (mistral ? 8 : heads)
        guard heads > 0, kvHeads > 0, hidden > 0, layers > 0, heads % kvHeads == 0 else {
            throw ConvertError("\(directory)/config.json: bad attention shape (hidden \(hidden), heads \(heads), kv heads \(kvHeads), layers \(layers))")
        }
        headDim = c.headDim ?? hidden / heads
        guard headDim > 0, headDim % 2 == 0 else { throw ConvertError("\(directory)/config.json: head_dim \(headDim) must be even") }
        vocab = c.vocabSize
        context = c.maxPositionEmbeddings ?? (mistral || qwen ? 32768 : 2048)
        rmsEps = c.rmsNormEps ?? 1e-6
        ropeTheta = c.ropeTheta ?? c.ropeParameters?.ropeTheta ?? 10000
        let scaling = c.ropeScaling ?? c.ropeParameters
        ropeScalingType = scaling?.scalingType
        ropeScalingFactor = ropeScalingType == nil ? nil : scaling?.factor
        ropeOriginalContext = ropeScalingType == nil ? nil : scaling?.originalMaxPositionEmbeddings
        tiedEmbeddings = c.tieWordEmbeddings ?? tiedDefault ?? false
        qkvBias = qwen || (c.attentionBias ?? false)
    }
}

/// The three ViT families the mmproj writer knows.
public enum VisionFamily: String, Sendable { case clip, siglip, dinov2 }

public struct VisionParams: Sendable, Equatable {
    public var family: VisionFamily
    public var hidden: Int
    public var feedForward: Int
    public var layers: Int
    public var heads: Int
    public var imageSize: Int
    public var patchSize: Int
    public var channels: Int
    public var projectionDim: Int
    public var eps: Double
    public var hiddenAct: String
    /// Patches per image (+1 for the class token where the family has one): rows of the position embedding.
    public var positions: Int { (imageSize / patchSize) * (imageSize / patchSize) + (family == .siglip ? 0 : 1) }

    init(_ c: HFVisionConfig, family: VisionFamily, directory: String) throws {
        self.family = family
        hidden = c.hiddenSize ?? 768
        switch family {
        case .clip:
            feedForward = c.intermediateSize ?? 3072
            imageSize = c.imageSize ?? 224
            patchSize = c.patchSize ?? 32
            eps = c.layerNormEps ?? 1e-5
            hiddenAct = c.hiddenAct ?? "quick_gelu"
        case .siglip:
            feedForward = c.intermediateSize ?? 3072
            imageSize = c.imageSize ?? 224
            patchSize = c.patchSize ?? 16
            eps = c.layerNormEps ?? 1e-6
            hiddenAct = c.hiddenAct ?? "gelu_pytorch_tanh"
        case .dinov2:
            feedForward = Int((Double(hidden) * (c.mlpRatio ?? 4)).rounded())
            imageSize = c.imageSize ?? 224
            patchSize = c.patchSize ?? 16
            eps = c.layerNormEps ?? 1e-6
            hiddenAct = c.hiddenAct ?? "gelu"
        }
        layers = c.numHiddenLayers ?? 12
        heads = c.numAttentionHeads ?? 12
        channels = c.numChannels ?? 3
        projectionDim = c.projectionDim ?? (family == .clip ? 512 : hidden)
        guard hidden > 0, heads > 0, hidden % heads == 0, layers > 0, patchSize > 0, imageSize >= patchSize else {
            throw ConvertError("\(directory)/config.json: bad vision shape (hidden \(hidden), heads \(heads), layers \(layers), image \(imageSize), patch \(patchSize))")
        }
    }

    /// image_mean / image_std each family was trained with (preprocessor_config.json overrides).
    public var defaultMeanStd: ([Double], [Double]) {
        switch family {
        case .clip: ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
        case .siglip: ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        case .dinov2: ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        }
    }
}

import Foundation

/// Hugging Face `config.json` as the converter reads it: Codable structs whose CodingKeys are the file's names.
/// Every field is optional here; `resolved…` applies the transformers defaults of the model type, so that old
/// configs that leave defaults out (llava-1.5's text_config has no hidden_size) still convert.
public struct HFConfig: Decodable, Sendable {
    public var architectures: [String]?
    public var modelType: String?
    public var nameOrPath: String?
    // LLaVA
    public var textConfig: HFTextConfig?
    public var visionConfig: HFVisionConfig?
    public var visionFeatureLayer: HFFeatureLayer?
    public var multimodalProjectorBias: Bool?
    public var projectorHiddenAct: String?
    public var tieWordEmbeddings: Bool?
    /// The top level itself read as a text config (…ForCausalLM) and as a vision config (…VisionModel).
    public var asText: HFTextConfig
    public var asVision: HFVisionConfig

    enum CodingKeys: String, CodingKey {
        case architectures
        case modelType = "model_type"
        case nameOrPath = "_name_or_path"
        case textConfig = "text_config"
        case visionConfig = "vision_config"
        case visionFeatureLayer = "vision_feature_layer"
        case multimodalProjectorBias = "multimodal_projector_bias"
        case projectorHiddenAct = "projector_hidden_act"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        nameOrPath = try c.decodeIfPresent(String.self, forKey: .nameOrPath)
        textConfig = try c.decodeIfPresent(HFTextConfig.self, forKey: .textConfig)
        visionConfig = try c.decodeIfPresent(HFVisionConfig.self, forKey: .visionConfig)
        visionFeatureLayer = try c.decodeIfPresent(HFFeatureLayer.self, forKey: .visionFeatureLayer)
        multimodalProjectorBias = try c.decodeIfPresent(Bool.self, forKey: .multimodalProjectorBias)
        projectorHiddenAct = try c.decodeIfPresent(String.self, forKey: .projectorHiddenAct)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings)
        asText = try HFTextConfig(from: decoder)
        asVision = try HFVisionConfig(from: decoder)
    }

    /// Reads `<directory>/config.json`; a missing file or bad JSON is one FormatError line.
    public static func load(directory: String) throws -> HFConfig {
        let path = directory + "/config.json"
        guard FileManager.default.fileExists(atPath: path) else {
            throw FormatError(file: directory, "no config.json in this directory (a Hugging Face model directory has one)")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            return try JSONDecoder().decode(HFConfig.self, from: data)
        } catch let error as DecodingError {
            throw FormatError(file: path, "bad JSON: " + describeDecodingError(error))
        }
    }
}

/// `vision_feature_layer`: one index (LLaVA-1.5) or a list (some LLaVA-NeXT variants).
public enum HFFeatureLayer: Decodable, Sendable, Equatable {
    case single(Int)
    case list([Int])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) { self = .single(i) } else { self = .list(try c.decode([Int].self)) }
    }
}

/// rope_scaling (transformers 4.x) or rope_parameters (5.x): the same fields.
public struct HFRope: Decodable, Sendable {
    public var ropeTheta: Double?
    public var ropeType: String?
    public var type: String?
    public var factor: Double?
    public var originalMaxPositionEmbeddings: Int?

    enum CodingKeys: String, CodingKey {
        case ropeTheta = "rope_theta"
        case ropeType = "rope_type"
        case type, factor
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    /// "linear", "yarn", …; nil for no scaling ("default" or absent).
    public var scalingType: String? {
        let t = ropeType ?? type
        return t == nil || t == "default" ? nil : t
    }
}

/// A decoder-only text model's config (the top level of …ForCausalLM, or LLaVA's text_config).
public struct HFTextConfig: Decodable, Sendable {
    public var modelType: String?
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var numHiddenLayers: Int?
    public var numAttentionHeads: Int?
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var vocabSize: Int?
    public var maxPositionEmbeddings: Int?
    public var rmsNormEps: Double?
    public var ropeTheta: Double?
    public var ropeParameters: HFRope?
    public var ropeScaling: HFRope?
    public var tieWordEmbeddings: Bool?
    public var attentionBias: Bool?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads)
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        ropeParameters = try c.decodeIfPresent(HFRope.self, forKey: .ropeParameters)
        // rope_scaling is often an explicit null.
        ropeScaling = try? c.decodeIfPresent(HFRope.self, forKey: .ropeScaling)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias)
    }
}

/// A ViT encoder's config (CLIP, SigLIP, DINOv2; LLaVA's vision_config).
public struct HFVisionConfig: Decodable, Sendable {
    public var modelType: String?
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var numHiddenLayers: Int?
    public var numAttentionHeads: Int?
    public var imageSize: Int?
    public var patchSize: Int?
    public var numChannels: Int?
    public var projectionDim: Int?
    public var layerNormEps: Double?
    public var hiddenAct: String?
    public var mlpRatio: Double?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case imageSize = "image_size"
        case patchSize = "patch_size"
        case numChannels = "num_channels"
        case projectionDim = "projection_dim"
        case layerNormEps = "layer_norm_eps"
        case hiddenAct = "hidden_act"
        case mlpRatio = "mlp_ratio"
    }
}

/// `preprocessor_config.json`: only the normalization the mmproj records.
public struct HFPreprocessorConfig: Decodable, Sendable {
    public var imageMean: [Double]?
    public var imageStd: [Double]?

    enum CodingKeys: String, CodingKey {
        case imageMean = "image_mean"
        case imageStd = "image_std"
    }

    /// nil when the file is absent; an error when it is present but unreadable.
    public static func load(directory: String) throws -> HFPreprocessorConfig? {
        let path = directory + "/preprocessor_config.json"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(HFPreprocessorConfig.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch let error as DecodingError {
            throw FormatError(file: path, "bad JSON: " + describeDecodingError(error))
        }
    }
}

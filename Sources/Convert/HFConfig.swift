import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

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
    /// "default" drops the CLS token from the projector's input, "full" keeps it.
    public var visionFeatureSelectStrategy: String?
    public var multimodalProjectorBias: Bool?
    public var projectorHiddenAct: String?
    public var tieWordEmbeddings: Bool?
    /// LLaVA-NeXT: the AnyRes resolutions as [height, width] pairs.
    public var imageGridPinpoints: [[Int]]?
    /// Idefics3/SmolVLM: the connector's pixel-shuffle factor.
    public var scaleFactor: Int?
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
        case visionFeatureSelectStrategy = "vision_feature_select_strategy"
        case multimodalProjectorBias = "multimodal_projector_bias"
        case projectorHiddenAct = "projector_hidden_act"
        case tieWordEmbeddings = "tie_word_embeddings"
        case imageGridPinpoints = "image_grid_pinpoints"
        case scaleFactor = "scale_factor"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        imageGridPinpoints = try c.decodeIfPresent([[Int]].self, forKey: .imageGridPinpoints)
        scaleFactor = try c.decodeIntegerIfPresent(forKey: .scaleFactor)
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        nameOrPath = try c.decodeIfPresent(String.self, forKey: .nameOrPath)
        textConfig = try c.decodeIfPresent(HFTextConfig.self, forKey: .textConfig)
        visionConfig = try c.decodeIfPresent(HFVisionConfig.self, forKey: .visionConfig)
        visionFeatureLayer = try c.decodeIfPresent(HFFeatureLayer.self, forKey: .visionFeatureLayer)
        visionFeatureSelectStrategy = try c.decodeIfPresent(String.self, forKey: .visionFeatureSelectStrategy)
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
        let data = Data(try InputFile.read(path, limit: Limits.textFileBytes))
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
public struct HFRope: Decodable, Sendable, Equatable {
    public var ropeTheta: Double?
    public var ropeType: String?
    public var type: String?
    public var factor: Double?
    public var originalMaxPositionEmbeddings: Int?
    // llama3
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    // yarn
    public var extrapolationFactor: Double?
    public var attentionFactor: Double?
    public var attnFactor: Double?
    public var betaFast: Double?
    public var betaSlow: Double?
    /// Qwen2-VL's M-RoPE: rotary pairs per (temporal, height, width) position stream.
    public var mropeSection: [Int]?

    enum CodingKeys: String, CodingKey {
        case mropeSection = "mrope_section"
        case ropeTheta = "rope_theta"
        case ropeType = "rope_type"
        case type, factor
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case lowFreqFactor = "low_freq_factor"
        case highFreqFactor = "high_freq_factor"
        case extrapolationFactor = "extrapolation_factor"
        case attentionFactor = "attention_factor"
        case attnFactor = "attn_factor"
        case betaFast = "beta_fast"
        case betaSlow = "beta_slow"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        // Every field on its own: a field of an unexpected type is ignored rather than failing the whole config
        // (rope blocks differ a lot between models; what llama.cpp needs is checked where it is used).
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func num(_ k: CodingKeys) -> Double? { (try? c.decodeIfPresent(Double.self, forKey: k)) ?? nil }
        ropeTheta = num(.ropeTheta)
        ropeType = (try? c.decodeIfPresent(String.self, forKey: .ropeType)) ?? nil
        type = (try? c.decodeIfPresent(String.self, forKey: .type)) ?? nil
        factor = num(.factor)
        originalMaxPositionEmbeddings = (try? c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)) ?? nil
        lowFreqFactor = num(.lowFreqFactor)
        highFreqFactor = num(.highFreqFactor)
        extrapolationFactor = num(.extrapolationFactor)
        attentionFactor = num(.attentionFactor)
        attnFactor = num(.attnFactor)
        betaFast = num(.betaFast)
        betaSlow = num(.betaSlow)
        mropeSection = (try? c.decodeIfPresent([Int].self, forKey: .mropeSection)) ?? nil
    }

    /// "linear", "yarn", "llama3", …; nil for no scaling ("default" or absent). rope_type wins over the older
    /// "type", as in convert_hf_to_gguf.py.
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
    /// Some configs keep it at the top level rather than inside the rope block.
    public var originalMaxPositionEmbeddings: Int?

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
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        hiddenSize = try c.decodeIntegerIfPresent(forKey: .hiddenSize)
        intermediateSize = try c.decodeIntegerIfPresent(forKey: .intermediateSize)
        numHiddenLayers = try c.decodeIntegerIfPresent(forKey: .numHiddenLayers)
        numAttentionHeads = try c.decodeIntegerIfPresent(forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIntegerIfPresent(forKey: .numKeyValueHeads)
        headDim = try c.decodeIntegerIfPresent(forKey: .headDim)
        vocabSize = try c.decodeIntegerIfPresent(forKey: .vocabSize)
        maxPositionEmbeddings = try c.decodeIntegerIfPresent(forKey: .maxPositionEmbeddings)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        // Either is often an explicit null (or, for rope_parameters, a per-layer-type map we do not read).
        ropeParameters = (try? c.decodeIfPresent(HFRope.self, forKey: .ropeParameters)) ?? nil
        ropeScaling = (try? c.decodeIfPresent(HFRope.self, forKey: .ropeScaling)) ?? nil
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias)
        originalMaxPositionEmbeddings = (try? c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)) ?? nil
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
    // Qwen2-VL / Qwen2.5-VL vision_config
    public var embedDim: Int?
    public var depth: Int?
    public var numHeads: Int?
    public var inChannels: Int?
    public var spatialMergeSize: Int?
    public var temporalPatchSize: Int?
    public var windowSize: Int?
    public var fullattBlockIndexes: [Int]?
    public var outHiddenSize: Int?

    enum CodingKeys: String, CodingKey {
        case embedDim = "embed_dim"
        case depth
        case numHeads = "num_heads"
        case inChannels = "in_channels"
        case inChans = "in_chans"
        case spatialMergeSize = "spatial_merge_size"
        case temporalPatchSize = "temporal_patch_size"
        case windowSize = "window_size"
        case fullattBlockIndexes = "fullatt_block_indexes"
        case outHiddenSize = "out_hidden_size"
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

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        hiddenSize = try c.decodeIntegerIfPresent(forKey: .hiddenSize)
        intermediateSize = try c.decodeIntegerIfPresent(forKey: .intermediateSize)
        numHiddenLayers = try c.decodeIntegerIfPresent(forKey: .numHiddenLayers)
        numAttentionHeads = try c.decodeIntegerIfPresent(forKey: .numAttentionHeads)
        imageSize = try c.decodeIntegerIfPresent(forKey: .imageSize)
        patchSize = try c.decodeIntegerIfPresent(forKey: .patchSize)
        numChannels = try c.decodeIntegerIfPresent(forKey: .numChannels)
        projectionDim = try c.decodeIntegerIfPresent(forKey: .projectionDim)
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct)
        mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio)
        embedDim = try c.decodeIntegerIfPresent(forKey: .embedDim)
        depth = try c.decodeIntegerIfPresent(forKey: .depth)
        numHeads = try c.decodeIntegerIfPresent(forKey: .numHeads)
        inChannels = try c.decodeIntegerIfPresent(forKey: .inChannels) ?? c.decodeIntegerIfPresent(forKey: .inChans)
        spatialMergeSize = try c.decodeIntegerIfPresent(forKey: .spatialMergeSize)
        temporalPatchSize = try c.decodeIntegerIfPresent(forKey: .temporalPatchSize)
        windowSize = try c.decodeIntegerIfPresent(forKey: .windowSize)
        fullattBlockIndexes = try c.decodeIfPresent([Int].self, forKey: .fullattBlockIndexes)
        outHiddenSize = try c.decodeIntegerIfPresent(forKey: .outHiddenSize)
    }
}

/// `preprocessor_config.json`: the normalization and the sizes the mmproj records.
public struct HFPreprocessorConfig: Decodable, Sendable {
    public struct Size: Decodable, Sendable {
        public var longestEdge: Int?
        public var shortestEdge: Int?
        enum CodingKeys: String, CodingKey {
            case longestEdge = "longest_edge"
            case shortestEdge = "shortest_edge"
        }
    }
    public var imageMean: [Double]?
    public var imageStd: [Double]?
    /// Idefics3/SmolVLM: step 1 resizes the longest edge to size.longest_edge; tiles are max_image_size.
    public var size: Size?
    public var maxImageSize: Size?
    public var doImageSplitting: Bool?
    /// LLaVA-NeXT's processor repeats the model's pinpoints.
    public var imageGridPinpoints: [[Int]]?
    /// Qwen2-VL: the resized image's area bounds (4.x: min_pixels / max_pixels; 5.x: size.shortest_edge /
    /// size.longest_edge hold the same numbers).
    public var minPixels: Int?
    public var maxPixels: Int?

    enum CodingKeys: String, CodingKey {
        case minPixels = "min_pixels"
        case maxPixels = "max_pixels"
        case imageMean = "image_mean"
        case imageStd = "image_std"
        case size
        case maxImageSize = "max_image_size"
        case doImageSplitting = "do_image_splitting"
        case imageGridPinpoints = "image_grid_pinpoints"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        imageMean = try c.decodeIfPresent([Double].self, forKey: .imageMean)
        imageStd = try c.decodeIfPresent([Double].self, forKey: .imageStd)
        // CLIP processors write size as {"shortest_edge": n} (or a bare number in old files): only longest_edge is read.
        size = (try? c.decodeIfPresent(Size.self, forKey: .size)) ?? nil
        maxImageSize = (try? c.decodeIfPresent(Size.self, forKey: .maxImageSize)) ?? nil
        doImageSplitting = try c.decodeIfPresent(Bool.self, forKey: .doImageSplitting)
        imageGridPinpoints = try c.decodeIfPresent([[Int]].self, forKey: .imageGridPinpoints)
        minPixels = (try? c.decodeIfPresent(Int.self, forKey: .minPixels)) ?? nil
        maxPixels = (try? c.decodeIfPresent(Int.self, forKey: .maxPixels)) ?? nil
    }

    /// nil when the file is absent; an error when it is present but unreadable.
    public static func load(directory: String) throws -> HFPreprocessorConfig? {
        let path = directory + "/preprocessor_config.json"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data = Data(try InputFile.read(path, limit: Limits.textFileBytes))
        do {
            return try JSONDecoder().decode(HFPreprocessorConfig.self, from: data)
        } catch let error as DecodingError {
            throw FormatError(file: path, "bad JSON: " + describeDecodingError(error))
        }
    }
}

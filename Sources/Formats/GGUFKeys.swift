import VZQKernels
import VZQSupport

/// The GGUF metadata keys vzquant reads and writes, in one place for the readers (model configs, tokenizer,
/// chat templates) and the writers (converter, presets): llama.cpp's names (gguf-py's `Keys`) and vzquant's own
/// `vzquant.*` keys, which llama.cpp ignores.
public enum GGUFKey {
    public enum General {
        public static let architecture = "general.architecture"
        public static let name = "general.name"
        public static let fileType = "general.file_type"
        public static let quantizationVersion = "general.quantization_version"
        public static let alignment = "general.alignment"
    }

    /// A decoder's `<arch>.*` keys (llama, mistral, qwen2).
    public struct Decoder: Sendable {
        public let arch: String
        public init(_ arch: String) { self.arch = arch }
        public var contextLength: String { "\(arch).context_length" }
        public var embeddingLength: String { "\(arch).embedding_length" }
        public var blockCount: String { "\(arch).block_count" }
        public var feedForwardLength: String { "\(arch).feed_forward_length" }
        public var headCount: String { "\(arch).attention.head_count" }
        public var headCountKV: String { "\(arch).attention.head_count_kv" }
        public var keyLength: String { "\(arch).attention.key_length" }
        public var valueLength: String { "\(arch).attention.value_length" }
        public var rmsEpsilon: String { "\(arch).attention.layer_norm_rms_epsilon" }
        public var ropeDimensionCount: String { "\(arch).rope.dimension_count" }
        public var ropeFreqBase: String { "\(arch).rope.freq_base" }
        /// qwen2vl: the rotary pairs given to each position stream (temporal, height, width, unused), M-RoPE.
        public var ropeDimensionSections: String { "\(arch).rope.dimension_sections" }
        public var vocabSize: String { "\(arch).vocab_size" }
        /// `<arch>.rope.scaling.<field>`: type, factor, original_context_length, yarn_ext_factor, yarn_attn_factor,
        /// yarn_beta_fast, yarn_beta_slow.
        public func ropeScaling(_ field: String) -> String { "\(arch).rope.scaling.\(field)" }
    }

    /// `clip.*`: an mmproj's vision tower and projector (llama.cpp's clip.cpp names).
    public enum Vision {
        public static let hasTextEncoder = "clip.has_text_encoder"
        public static let hasVisionEncoder = "clip.has_vision_encoder"
        public static let hasLlavaProjector = "clip.has_llava_projector"
        public static let projectorType = "clip.projector_type"
        public static let useGelu = "clip.use_gelu"
        public static let useSilu = "clip.use_silu"
        public static let imageSize = "clip.vision.image_size"
        public static let patchSize = "clip.vision.patch_size"
        public static let embeddingLength = "clip.vision.embedding_length"
        public static let feedForwardLength = "clip.vision.feed_forward_length"
        public static let projectionDim = "clip.vision.projection_dim"
        public static let blockCount = "clip.vision.block_count"
        public static let headCount = "clip.vision.attention.head_count"
        public static let layerNormEpsilon = "clip.vision.attention.layer_norm_epsilon"
        public static let imageMean = "clip.vision.image_mean"
        public static let imageStd = "clip.vision.image_std"
        public static let gridPinpoints = "clip.vision.image_grid_pinpoints"
        public static let cropResolution = "clip.vision.image_crop_resolution"
        public static let aspectRatio = "clip.vision.image_aspect_ratio"
        public static let patchMergeType = "clip.vision.mm_patch_merge_type"
        public static let projectorScaleFactor = "clip.vision.projector.scale_factor"
        /// Idefics3/SmolVLM: the longest edge an image is first resized to (the processor's size.longest_edge).
        public static let preprocessImageSize = "clip.vision.preproc_image_size"
        /// Qwen2.5-VL: the attention window's side in pixels, and which layers attend to the whole image (every
        /// n_wa_pattern-th, or the listed ones).
        public static let windowSize = "clip.vision.window_size"
        public static let windowAttentionPattern = "clip.vision.n_wa_pattern"
        public static let fullAttentionLayers = "clip.vision.wa_layer_indexes"
    }

    /// vzquant's own keys: what llama.cpp's files leave to be guessed.
    public enum VZQ {
        /// "clip", "siglip" or "dinov2".
        public static let visionFamily = "vzquant.vision.family"
        /// Hugging Face's hidden_act of the tower.
        public static let visionHiddenAct = "vzquant.vision.hidden_act"
        /// vision_feature_layer of the LLaVA config the mmproj came from.
        public static let featureLayer = "vzquant.vision.feature_layer"
        /// The tower's block count before the layers after the feature layer were dropped.
        public static let sourceBlockCount = "vzquant.vision.source_block_count"
        /// "default" (patches only) or "full" (with CLS): which tokens feed the projector.
        public static let featureSelect = "vzquant.vision.feature_select"
        /// Set on files with seeded random weights (presets).
        public static let synthetic = "vzquant.synthetic"
        /// Idefics3/SmolVLM: whether images are cut into tiles (the processor's do_image_splitting; default true).
        public static let imageSplitting = "vzquant.vision.image_splitting"
        /// Qwen2-VL / Qwen2.5-VL: the processor's min_pixels and max_pixels (the resized image's area bounds).
        public static let minPixels = "vzquant.vision.min_pixels"
        /// A structurally pruned tower: per block, its attention heads and FFN width (int32 arrays; absent: every
        /// block has clip.vision.attention.head_count / feed_forward_length).
        public static let visionLayerHeads = "vzquant.vision.layer_head_count"
        public static let visionLayerFeedForward = "vzquant.vision.layer_feed_forward_length"
        public static let maxPixels = "vzquant.vision.max_pixels"
    }

    /// `tokenizer.*` (llama.cpp's vocabulary keys).
    public enum Tokenizer {
        public static let model = "tokenizer.ggml.model"
        public static let pre = "tokenizer.ggml.pre"
        public static let tokens = "tokenizer.ggml.tokens"
        public static let tokenType = "tokenizer.ggml.token_type"
        public static let scores = "tokenizer.ggml.scores"
        public static let merges = "tokenizer.ggml.merges"
        public static let bosTokenID = "tokenizer.ggml.bos_token_id"
        public static let eosTokenID = "tokenizer.ggml.eos_token_id"
        public static let unknownTokenID = "tokenizer.ggml.unknown_token_id"
        public static let eotTokenID = "tokenizer.ggml.eot_token_id"
        public static let eomTokenID = "tokenizer.ggml.eom_token_id"
        public static let addBOS = "tokenizer.ggml.add_bos_token"
        public static let addEOS = "tokenizer.ggml.add_eos_token"
        public static let addSpacePrefix = "tokenizer.ggml.add_space_prefix"
        public static let chatTemplate = "tokenizer.chat_template"
    }
}

import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Published architectures at their real sizes, for synthetic models (`SyntheticModel`): speed and memory do not
/// depend on the values of the weights, so a file with this exact geometry and seeded random weights benchmarks
/// like the real checkpoint, which is gigabytes and not available offline.
///
/// Geometries (from the models' config.json files on the Hugging Face hub):
/// - llava-1.5-7b (liuhaotian/llava-v1.5-7b, llava-hf/llava-1.5-7b-hf): text = Vicuna-7B v1.5 (Llama-2-7B shape:
///   hidden 4096, 32 layers, 32 heads, ffn 11008, vocab 32000, context 4096, rms eps 1e-5, rope theta 10000);
///   vision = CLIP ViT-L/14-336 (hidden 1024, 24 layers, 16 heads, ffn 4096, quick_gelu, projection_dim 768),
///   vision_feature_layer −2 (23 layers kept, no post-norm, as llama.cpp's mmproj), "default" select (no CLS);
///   projector mlp2x_gelu 1024 → 4096 → 4096 with biases.
/// - llava-1.5-13b: text = Vicuna-13B v1.5 (Llama-2-13B shape: hidden 5120, 40 layers, 40 heads, ffn 13824); the
///   same CLIP; projector 1024 → 5120 → 5120.
/// - llava-next-7b (liuhaotian/llava-v1.6-vicuna-7b): as llava-1.5-7b, plus AnyRes: grid pinpoints
///   [[336,672],[672,336],[672,672],[1008,336],[336,1008]], crop resolution 336, "spatial_unpad" merging and the
///   `v.image_newline` row (llama.cpp's current name; older files say `model.image_newline`).
/// - smolvlm-256m (HuggingFaceTB/SmolVLM-256M-Instruct): text = SmolLM2-135M shape (hidden 576, 30 layers, 9
///   heads, 3 kv heads, ffn 1536, rope theta 100000, context 8192) with the 49280-token vocabulary; vision =
///   SigLIP base patch16 at 512 (hidden 768, 12 layers, 12 heads, ffn 3072, gelu_pytorch_tanh, mean/std 0.5);
///   Idefics3 connector: pixel shuffle by 4 (768·16 = 12288) → 576, no bias. Its lm_head is a separate matrix
///   (not tied): only then do the parts add up to the published 256 M parameters (tied: 228 M).
/// - qwen2.5-vl-3b (Qwen/Qwen2.5-VL-3B-Instruct): text = Qwen2.5-3B shape (hidden 2048, 36 layers, 16 heads, 2 kv
///   heads, ffn 11008, vocab 151936, rope theta 1e6, rms eps 1e-6, context 128000, q/k/v biases, tied embeddings,
///   M-RoPE sections [16, 24, 24]); vision = 32 blocks of 1280 (16 heads, SwiGLU 3420, RMSNorm), windows of 112 px
///   with full attention in blocks 7, 15, 23, 31; merger 4·1280 → 5120 → 2048. 3,754,622,976 parameters, as
///   transformers counts Qwen2_5_VLForConditionalGeneration of that config. Processor: 56² … 12,845,056 pixels.
/// - qwen2-vl-2b (Qwen/Qwen2-VL-2B-Instruct): text = Qwen2-1.5B shape (hidden 1536, 28 layers, 12 heads, 2 kv heads,
///   ffn 8960, vocab 151936, context 32768, tied); vision = 32 blocks of 1280 (16 heads, quick-GELU MLP 5120,
///   LayerNorm); merger 5120 → 5120 → 1536. 2,208,985,600 parameters (transformers' count). Processor: 56² … 28²·1280.
/// - tiny-llava / tiny-smolvlm / tiny-qwen2.5-vl: a few layers of small widths (multiples of 32), for tests and CI.
public struct ModelPreset: Sendable, Equatable {
    public var name: String
    public var summary: String
    public var text: TextParams
    public var vision: VisionParams
    public var projector: ProjectorPreset
    /// LLaVA-NeXT's any-resolution crops (nil: one image per crop at the tower's size).
    public var anyRes: AnyResPreset?
    public var chat: ChatFamily

    /// The prompt format and the special tokens that go with it.
    public enum ChatFamily: String, Sendable, Equatable {
        /// LLaVA-1.5 / Vicuna: "USER: … ASSISTANT:", <s> / </s>, `<image>` as a user-defined token.
        case vicuna
        /// SmolVLM: "<|im_start|>User: …<end_of_utterance>\nAssistant:" (llama.cpp calls it "smolvlm").
        case smolvlm
        /// Qwen2-VL / Qwen2.5-VL: ChatML with a default system prompt; images between <|vision_start|> and
        /// <|vision_end|>.
        case qwenChatML = "qwen-chatml"
    }

    public static let all: [ModelPreset] = [llava15_7b, llava15_13b, llavaNext7b, smolvlm256m, qwen25vl3b, qwen2vl2b,
                                            tinyLlava, tinySmolvlm, tinyQwen25vl]

    public static var names: [String] { all.map(\.name) }

    /// The preset called `name`, or an error listing the known ones.
    public static func named(_ name: String) throws -> ModelPreset {
        guard let p = all.first(where: { $0.name == name.lowercased() }) else {
            throw ConvertError("unknown preset '\(name)'; known presets: \(names.joined(separator: ", "))")
        }
        return p
    }

    // MARK: the presets

    /// A Llama-architecture decoder (llama.cpp's "llama" keys) of uniform layers.
    static func decoder(hidden: Int, layers: Int, heads: Int, kvHeads: Int, feedForward: Int, vocab: Int, context: Int,
                        ropeTheta: Float, rmsEps: Float, tiedEmbeddings: Bool) -> TextParams {
        TextParams(LlamaConfig(architecture: "llama", hidden: hidden, layers: layers, heads: heads, kvHeads: kvHeads,
                               feedForward: feedForward, contextLength: context, ropeBase: ropeTheta, rmsEps: rmsEps),
                   vocab: vocab, tiedEmbeddings: tiedEmbeddings)
    }

    static let vicuna7b = decoder(hidden: 4096, layers: 32, heads: 32, kvHeads: 32, feedForward: 11008, vocab: 32000,
                                     context: 4096, ropeTheta: 10000, rmsEps: 1e-5, tiedEmbeddings: false)

    /// CLIP ViT-L/14 at 336 as LLaVA uses it: hidden_states[−2], so 23 of its 24 layers.
    static let clipL336 = VisionParams(family: .clip, imageSize: 336, patchSize: 14, hidden: 1024, feedForward: 4096,
                                       heads: 16, sourceLayers: 24, featureLayer: -2, featureSelect: "default",
                                       hiddenAct: "quick_gelu", eps: 1e-5, projectionDim: 768,
                                       imageMean: [0.48145466, 0.4578275, 0.40821073],
                                       imageStd: [0.26862954, 0.26130258, 0.27577711])

    public static let llava15_7b = ModelPreset(
        name: "llava-1.5-7b", summary: "LLaVA-1.5 7B: Vicuna-7B + CLIP ViT-L/14-336 + mlp2x_gelu",
        text: vicuna7b, vision: clipL336, projector: .mlp(bias: true), anyRes: nil, chat: .vicuna)

    public static let llava15_13b = ModelPreset(
        name: "llava-1.5-13b", summary: "LLaVA-1.5 13B: Vicuna-13B + CLIP ViT-L/14-336 + mlp2x_gelu",
        text: decoder(hidden: 5120, layers: 40, heads: 40, kvHeads: 40, feedForward: 13824, vocab: 32000,
                         context: 4096, ropeTheta: 10000, rmsEps: 1e-5, tiedEmbeddings: false),
        vision: clipL336, projector: .mlp(bias: true), anyRes: nil, chat: .vicuna)

    public static let llavaNext7b = ModelPreset(
        name: "llava-next-7b", summary: "LLaVA-NeXT (v1.6) Vicuna-7B: LLaVA-1.5-7B shape with AnyRes crops",
        text: vicuna7b, vision: clipL336, projector: .mlp(bias: true),
        anyRes: AnyResPreset(gridPinpoints: [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
                             cropResolution: 336, mergeType: "spatial_unpad"),
        chat: .vicuna)

    public static let smolvlm256m = ModelPreset(
        name: "smolvlm-256m", summary: "SmolVLM-256M-Instruct: SmolLM2-135M shape + SigLIP-B/16-512 + Idefics3 connector",
        text: decoder(hidden: 576, layers: 30, heads: 9, kvHeads: 3, feedForward: 1536, vocab: 49280, context: 8192,
                         ropeTheta: 100_000, rmsEps: 1e-5, tiedEmbeddings: false),
        vision: VisionParams(family: .siglip, imageSize: 512, patchSize: 16, hidden: 768, feedForward: 3072, heads: 12,
                             sourceLayers: 12, featureLayer: nil, featureSelect: "full", hiddenAct: "gelu_pytorch_tanh",
                             eps: 1e-6, projectionDim: 768, imageMean: [0.5, 0.5, 0.5], imageStd: [0.5, 0.5, 0.5]),
        projector: .idefics3(scaleFactor: 4), anyRes: nil, chat: .smolvlm)

    /// A Qwen2-VL decoder: Qwen2 with q/k/v biases and M-RoPE sections over the head's rotary pairs.
    static func qwenDecoder(hidden: Int, layers: Int, heads: Int, kvHeads: Int, feedForward: Int, context: Int,
                            vocab: Int = 151_936, sections: [Int]) -> TextParams {
        var config = LlamaConfig(architecture: "qwen2vl", hidden: hidden, layers: layers, heads: heads, kvHeads: kvHeads,
                                 feedForward: feedForward, contextLength: context, ropeBase: 1_000_000, rmsEps: 1e-6)
        config.ropeSections = sections
        var t = TextParams(config, vocab: vocab, tiedEmbeddings: true)
        t.qkvBias = true
        return t
    }

    /// A Qwen vision tower (image size 560 as llama.cpp records it; the tower takes any multiple of 28 px).
    static func qwenTower(_ family: VisionFamily, hidden: Int, feedForward: Int, heads: Int, layers: Int, textHidden: Int,
                          fullAttention: [Int] = []) -> VisionParams {
        var v = VisionParams(family: family, imageSize: 560, patchSize: 14, hidden: hidden, feedForward: feedForward,
                             heads: heads, sourceLayers: layers, featureLayer: nil, featureSelect: "full",
                             hiddenAct: family == .qwen25vl ? "silu" : "quick_gelu", eps: 1e-6, projectionDim: textHidden,
                             imageMean: clipL336.imageMean, imageStd: clipL336.imageStd)
        v.config.mergeSize = 2
        if family == .qwen25vl { (v.config.windowPatches, v.config.fullAttentionLayers) = (8, fullAttention) }
        return v
    }

    public static let qwen25vl3b = ModelPreset(
        name: "qwen2.5-vl-3b", summary: "Qwen2.5-VL-3B-Instruct: Qwen2.5-3B shape + windowed ViT 1280×32 + 2×2 merger",
        text: qwenDecoder(hidden: 2048, layers: 36, heads: 16, kvHeads: 2, feedForward: 11008, context: 128_000, sections: [16, 24, 24]),
        vision: qwenTower(.qwen25vl, hidden: 1280, feedForward: 3420, heads: 16, layers: 32, textHidden: 2048,
                          fullAttention: [7, 15, 23, 31]),
        projector: .qwenMerger(minPixels: 56 * 56, maxPixels: 12_845_056), anyRes: nil, chat: .qwenChatML)

    public static let qwen2vl2b = ModelPreset(
        name: "qwen2-vl-2b", summary: "Qwen2-VL-2B-Instruct: Qwen2-1.5B shape + ViT 1280×32 + 2×2 merger",
        text: qwenDecoder(hidden: 1536, layers: 28, heads: 12, kvHeads: 2, feedForward: 8960, context: 32768, sections: [16, 24, 24]),
        vision: qwenTower(.qwen2vl, hidden: 1280, feedForward: 5120, heads: 16, layers: 32, textHidden: 1536),
        projector: .qwenMerger(minPixels: 56 * 56, maxPixels: 28 * 28 * 1280), anyRes: nil, chat: .qwenChatML)

    public static let tinyLlava = ModelPreset(
        name: "tiny-llava", summary: "a 2-layer LLaVA-shaped model for tests",
        text: decoder(hidden: 64, layers: 2, heads: 4, kvHeads: 2, feedForward: 128, vocab: 1024, context: 256,
                         ropeTheta: 10000, rmsEps: 1e-5, tiedEmbeddings: false),
        vision: VisionParams(family: .clip, imageSize: 56, patchSize: 14, hidden: 64, feedForward: 128, heads: 4,
                             sourceLayers: 3, featureLayer: -2, featureSelect: "default", hiddenAct: "quick_gelu",
                             eps: 1e-5, projectionDim: 64, imageMean: clipL336.imageMean, imageStd: clipL336.imageStd),
        projector: .mlp(bias: true), anyRes: nil, chat: .vicuna)

    public static let tinySmolvlm = ModelPreset(
        name: "tiny-smolvlm", summary: "a 2-layer SmolVLM-shaped model for tests",
        text: decoder(hidden: 64, layers: 2, heads: 4, kvHeads: 2, feedForward: 128, vocab: 1024, context: 256,
                         ropeTheta: 100_000, rmsEps: 1e-5, tiedEmbeddings: true),
        vision: VisionParams(family: .siglip, imageSize: 128, patchSize: 16, hidden: 64, feedForward: 128, heads: 4,
                             sourceLayers: 2, featureLayer: nil, featureSelect: "full", hiddenAct: "gelu_pytorch_tanh",
                             eps: 1e-6, projectionDim: 64, imageMean: [0.5, 0.5, 0.5], imageStd: [0.5, 0.5, 0.5]),
        projector: .idefics3(scaleFactor: 4), anyRes: nil, chat: .smolvlm)

    public static let tinyQwen25vl = ModelPreset(
        name: "tiny-qwen2.5-vl", summary: "a 2-layer Qwen2.5-VL-shaped model for tests",
        text: qwenDecoder(hidden: 64, layers: 2, heads: 4, kvHeads: 2, feedForward: 128, context: 512, vocab: 1024,
                          sections: [2, 3, 3]),
        vision: qwenTower(.qwen25vl, hidden: 64, feedForward: 128, heads: 4, layers: 2, textHidden: 64, fullAttention: [1]),
        projector: .qwenMerger(minPixels: 56 * 56, maxPixels: 28 * 28 * 64), anyRes: nil, chat: .qwenChatML)
}

/// What maps vision features to text embeddings.
public enum ProjectorPreset: Sendable, Equatable {
    /// LLaVA mlp2x_gelu: mm.0 (vision → text hidden), GELU, mm.2 (text → text hidden).
    case mlp(bias: Bool)
    /// Idefics3 / SmolVLM: pixel shuffle by `scaleFactor` (scale² neighbouring patches concatenated), then one
    /// bias-free linear `mm.model.fc` (vision hidden · scale² → text hidden); llama.cpp's projector_type "idefics3".
    case idefics3(scaleFactor: Int)
    /// Qwen2-VL / Qwen2.5-VL's merger: the tower's ln_q (v.post_ln), 2×2 patches concatenated, mm.0 (4·vision →
    /// 4·vision), GELU, mm.2 (→ text hidden); the processor's pixel bounds with it.
    case qwenMerger(minPixels: Int, maxPixels: Int)
}

/// LLaVA-NeXT any-resolution settings, as llama.cpp's mmproj stores them.
public struct AnyResPreset: Sendable, Equatable, Codable {
    /// (height, width) resolutions the image may be cropped into.
    public var gridPinpoints: [[Int]]
    public var cropResolution: Int
    public var mergeType: String
}

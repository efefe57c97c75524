import Foundation
import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Plans the output files of a Hugging Face directory: which tensors (checked against config.json), their
/// types, and the metadata llama.cpp reads. Nothing is converted here; the plan only points into the mappings.
enum HFPlanner {
    static func plan(directory dir: String, options: ConvertOptions, note: (String) -> Void) throws -> [FilePlan] {
        let config = try HFConfig.load(directory: dir)
        let arch = try HFArchitecture.detect(config, directory: dir)
        if arch.isVLM, options.mmprojOutput == nil {
            throw ConvertError("\(dir) is a vision-language model (\(arch.rawValue)): its vision tower and projector need an mmproj output (--mmproj-out)")
        }
        if !arch.hasVision, let mm = options.mmprojOutput {
            note("mmproj output \(mm) ignored: \(arch.rawValue) has no vision tower")
        }
        if !arch.hasText, let mm = options.mmprojOutput, mm != options.output {
            note("\(arch.rawValue) is a vision encoder only: it is written to \(mm); nothing is written to \(options.output)")
        }
        let checkpoint = try SafeTensorsCheckpoint(path: dir)
        var index = try ComponentIndex(checkpoint: checkpoint, prefixes: HFNamePrefixes.forArchitecture(arch))
        let name = modelName(config, directory: dir)
        var plans: [FilePlan] = []
        // Vision first: if anything about it is wrong we fail before the (bigger) text model is planned.
        if arch.isQwenVL {
            plans.append(try planQwenVision(config, arch, directory: dir, options: options, index: &index, name: name, note: note))
        } else if arch.hasVision {
            plans.append(try planVision(config, arch, directory: dir, options: options, index: &index, name: name, note: note))
        }
        if arch.hasText {
            plans.append(try planText(config, arch, directory: dir, options: options, index: &index, name: name, note: note))
        }

        let unused = index.unused
        if !unused.isEmpty {
            note("skipped \(unused.count) source tensor\(unused.count == 1 ? "" : "s") llama.cpp does not use: "
                + unused.prefix(4).joined(separator: ", ") + (unused.count > 4 ? ", …" : ""))
        }
        return plans
    }

    /// The mmproj: the vision tower up to the feature layer (LLaVA) or whole, and LLaVA's projector.
    private static func planVision(_ config: HFConfig, _ arch: HFArchitecture, directory dir: String, options: ConvertOptions,
                                   index: inout ComponentIndex, name: String, note: (String) -> Void) throws -> FilePlan {
        let policy = options.policy
        let family: VisionFamily = arch == .siglipVision || arch.isIdefics3 ? .siglip : arch == .dinov2 ? .dinov2 : .clip
        let vcfg = arch.isVLM ? (config.visionConfig ?? config.asVision) : config.asVision
        if arch.isLlava, let t = vcfg.modelType, t != "clip_vision_model" {
            throw ConvertError("\(dir)/config.json: LLaVA vision tower '\(t)' is not supported (clip_vision_model only)")
        }
        if arch.isIdefics3, let t = vcfg.modelType, !["idefics3_vision", "smolvlm_vision", "siglip_vision_model"].contains(t) {
            throw ConvertError("\(dir)/config.json: \(arch.rawValue) vision tower '\(t)' is not supported (idefics3_vision, smolvlm_vision)")
        }
        var v = try VisionParams(vcfg, family: family, directory: dir)
        let layers = v.sourceLayers
        var kept = layers
        var featureLayer: Int?
        var featureSelect: String?
        if arch.isLlava {
            // Which encoder tokens feed the projector: the runtime reads this instead of guessing (transformers'
            // default is "default", i.e. the patches without CLS).
            featureSelect = config.visionFeatureSelectStrategy ?? "default"
            guard featureSelect == "default" || featureSelect == "full" else {
                throw ConvertError("\(dir)/config.json: vision_feature_select_strategy '\(featureSelect!)' is not supported (default, full)")
            }
            let fl: Int
            switch config.visionFeatureLayer ?? .single(-2) {
            case let .single(i): fl = i
            case let .list(l): throw ConvertError("\(dir)/config.json: vision_feature_layer \(l) (several layers) is not supported; one index only")
            }
            // hidden_states[i] is the output after i layers (hidden_states[0] = the embeddings); negative i
            // counts from the end of the n + 1 states. Only the layers up to that one are needed.
            kept = fl < 0 ? layers + 1 + fl : fl
            guard kept >= 1, kept <= layers else {
                throw ConvertError("\(dir)/config.json: vision_feature_layer \(fl) is outside the \(layers)-layer vision tower")
            }
            featureLayer = fl
        }
        v.config.blockCount = kept
        var specs = VisionTable.plan(v, keptLayers: kept, postNorm: !arch.isLlava)
        var tensors = try index.resolve(specs, component: .vision, policy: policy, file: options.mmprojOutput ?? options.output, note: note)
        index.markUsed(.vision, layersFrom: kept, blockPrefix: VisionTable.names(family).blockPrefix)
        index.markUsedIfPresent(.vision, "\(VisionTable.names(family).postNorm).weight", "\(VisionTable.names(family).postNorm).bias")
        let pre = try HFPreprocessorConfig.load(directory: dir)
        var familyMeta: [(String, GGUFValue)] = []
        if arch.isVLM {
            let t = try TextParams(config.textConfig ?? config.asText, tiedDefault: config.tieWordEmbeddings, directory: dir)
            if arch.isLlava {
                specs = ProjectorTable.plan(visionHidden: v.hidden, textHidden: t.hidden, bias: config.multimodalProjectorBias ?? true)
            } else {
                let s = try bounded(config.scaleFactor ?? 2, "scale_factor", Limits.scaleFactor, directory: dir)
                guard v.patchesPerSide % s == 0 else {
                    throw ConvertError("\(dir)/config.json: scale_factor \(s) does not divide the \(v.patchesPerSide)×\(v.patchesPerSide) patch grid")
                }
                specs = ProjectorTable.planIdefics3(visionHidden: v.hidden, textHidden: t.hidden, scaleFactor: s)
                familyMeta += [(GGUFKey.Vision.projectorType, .string("idefics3")),
                               (GGUFKey.Vision.projectorScaleFactor, .uint32(UInt32(s)))]
                familyMeta += try idefics3Sizes(pre, tile: v.imageSize, directory: dir)
            }
            tensors += try index.resolve(specs, component: .projector, policy: policy, file: options.mmprojOutput!, note: note)
            if arch == .llavaNext {
                tensors += try index.resolve(ProjectorTable.planNewline(textHidden: t.hidden), component: .newline, policy: policy,
                                             file: options.mmprojOutput!, note: note)
                familyMeta += try pinpoints(config.imageGridPinpoints ?? pre?.imageGridPinpoints, tile: v.imageSize, directory: dir)
            }
        }
        try applyNormalization(pre, to: &v, directory: dir)
        var meta: [(String, GGUFValue)] = [
            (GGUFKey.General.architecture, .string("clip")),
            (GGUFKey.General.name, .string(name)),
            (GGUFKey.General.fileType, .uint32(policy.fileType)),
            (GGUFKey.General.quantizationVersion, .uint32(2)),
            (GGUFKey.Vision.hasTextEncoder, .bool(false)),
            (GGUFKey.Vision.hasVisionEncoder, .bool(true)),
            (GGUFKey.Vision.hasLlavaProjector, .bool(arch.isLlava)),
        ]
        if arch.isLlava { meta.append((GGUFKey.Vision.projectorType, .string("mlp"))) }
        meta += familyMeta
        meta += v.metadata()
        if let featureLayer { meta.append((GGUFKey.VZQ.featureLayer, .int32(Int32(featureLayer)))) }
        if let featureSelect { meta.append((GGUFKey.VZQ.featureSelect, .string(featureSelect))) }
        meta.append((GGUFKey.VZQ.sourceBlockCount, .uint32(UInt32(layers))))
        // clip.use_gelu cannot tell SigLIP's tanh GELU from DINOv2's erf GELU, nor the families apart: the runtime
        // reads these two instead of guessing from the tensor names.
        meta.append((GGUFKey.VZQ.visionFamily, .string(family.rawValue)))
        meta.append((GGUFKey.VZQ.visionHiddenAct, .string(v.hiddenAct)))
        // A standalone encoder has only this file: -o names it unless --mmproj-out does.
        return FilePlan(path: arch.isVLM ? options.mmprojOutput! : (options.mmprojOutput ?? options.output),
                          metadata: meta, tensors: tensors)
    }

    /// preprocessor_config.json's image_mean / image_std (3 finite values each, std non-zero) replace the family's.
    static func applyNormalization(_ pre: HFPreprocessorConfig?, to v: inout VisionParams, directory dir: String) throws {
        for (field, values) in [("image_mean", pre?.imageMean), ("image_std", pre?.imageStd)] {
            guard let values else { continue }
            guard values.count == 3, values.allSatisfy(\.isFinite), field == "image_mean" || !values.contains(0) else {
                throw ConvertError("\(dir)/preprocessor_config.json: \(field) is \(values), expected 3 finite values (std non-zero)")
            }
        }
        if let mean = pre?.imageMean { v.imageMean = mean }
        if let std = pre?.imageStd { v.imageStd = std }
    }

    /// LLaVA-NeXT's AnyRes resolutions, flattened (height, width) pairs as the runtime and llama.cpp's legacy
    /// converter store them, with the patch-merge type llama.cpp expects.
    private static func pinpoints(_ list: [[Int]]?, tile: Int, directory dir: String) throws -> [(String, GGUFValue)] {
        guard let list, !list.isEmpty else {
            throw ConvertError("\(dir)/config.json: a LLaVA-NeXT model needs image_grid_pinpoints")
        }
        guard list.count <= 64, list.allSatisfy({ $0.count == 2 && $0.allSatisfy { $0 >= tile && $0 <= 8192 && $0 % tile == 0 } }) else {
            throw ConvertError("\(dir)/config.json: image_grid_pinpoints \(list) are not [height, width] pairs of multiples of \(tile) (at most 64)")
        }
        return [(GGUFKey.Vision.gridPinpoints, .int32s(list.flatMap { $0.map { Int32($0) } })),
                (GGUFKey.Vision.patchMergeType, .string("spatial_unpad"))]
    }

    /// Idefics3/SmolVLM's processor sizes: the longest edge of step 1 and whether images are split into tiles.
    private static func idefics3Sizes(_ pre: HFPreprocessorConfig?, tile: Int, directory dir: String) throws -> [(String, GGUFValue)] {
        let longest = try bounded(pre?.size?.longestEdge ?? 4 * tile, "preprocessor size.longest_edge", tile...8192, directory: dir)
        if let m = pre?.maxImageSize?.longestEdge, m != tile {
            throw ConvertError("\(dir)/preprocessor_config.json: max_image_size.longest_edge \(m) differs from the tower's image_size \(tile)")
        }
        return [(GGUFKey.Vision.preprocessImageSize, .uint32(UInt32(longest))),
                (GGUFKey.VZQ.imageSplitting, .bool(pre?.doImageSplitting ?? true))]
    }

    /// The text model: decoder tensors, llama.cpp's metadata and the tokenizer.
    private static func planText(_ config: HFConfig, _ arch: HFArchitecture, directory dir: String, options: ConvertOptions,
                                 index: inout ComponentIndex, name: String, note: (String) -> Void) throws -> FilePlan {
        let policy = options.policy
        var t = try TextParams(arch.isVLM ? (config.textConfig ?? config.asText) : config.asText,
                               tiedDefault: arch.isVLM ? config.tieWordEmbeddings : nil, directory: dir)
        guard let embed = index.lookup(.text, "embed_tokens.weight") else {
            throw ConvertError("\(dir): the checkpoint has no token embedding ('embed_tokens.weight' of the text model)")
        }
        if !t.tiedEmbeddings, index.lookup(.lmHead, "weight") == nil {
            // SmolLM2, Llama-3.2-1B and others share the embedding and save no lm_head; convert_hf_to_gguf.py
            // then writes no output.weight either, and llama.cpp uses token_embd for the output.
            note("no lm_head.weight in the checkpoint: the output layer shares token_embd (no output.weight written)")
            t.tiedEmbeddings = true
        }
        let vocab = t.vocab ?? embed.shape.first ?? 0
        var specs = TextTable.plan(t, vocab: vocab)
        let mix = MixContext(tensorNames: specs.map(\.gguf), groupedKV: t.config.kvHeads < t.config.heads)
        // lm_head sits outside the text model's prefix.
        var tensors: [PlannedTensor] = []
        for s in specs where s.gguf == "output.weight" {
            tensors += try index.resolve([s], component: .lmHead, policy: policy, file: options.output, mixContext: mix, note: note)
        }
        specs.removeAll { $0.gguf == "output.weight" }
        tensors = try index.resolve(specs, component: .text, policy: policy, file: options.output, mixContext: mix, note: note) + tensors
        if t.tiedEmbeddings { index.markUsedIfPresent(.lmHead, "weight") }
        index.markUsedIfPresent(.text, "rotary_emb.inv_freq")
        if case let .llama3(factor, low, high, original) = t.ropeScaling {
            // convert_hf_to_gguf.py yields it before the checkpoint's tensors.
            let factors = RopeScaling.llama3FrequencyFactors(headDim: t.headDim, base: t.ropeTheta, factor: factor,
                                                             lowFreqFactor: low, highFreqFactor: high, originalContext: original)
            tensors.insert(PlannedTensor.generated(name: "rope_freqs.weight", values: factors), at: 0)
        }

        let a = t.arch
        var meta: [(String, GGUFValue)] = [
            (GGUFKey.General.architecture, .string(a)),
            (GGUFKey.General.name, .string(name)),
            (GGUFKey.General.fileType, .uint32(policy.fileType)),
            (GGUFKey.General.quantizationVersion, .uint32(2)),
        ]
        meta += t.metadata(vocab: vocab)
        // The token list is padded to the embedding's rows (SentencePiece and GPT-2 vocabularies as
        // llama.cpp does; a byte-fallback tokenizer.json too, which llama.cpp's converter leaves short, making
        // a file its own loader rejects: token_embd must have one row per token).
        let tokenizer = try TokenizerImport.metadata(modelDirectory: dir, vocabSize: vocab)
        if let (_, tokens) = tokenizer.first(where: { $0.key == GGUFKey.Tokenizer.tokens }),
           case let .array(_, list) = tokens, list.count != vocab {
            throw ConvertError("\(dir): the tokenizer has \(list.count) tokens but the model's vocabulary is \(vocab) (embedding rows); llama.cpp would refuse the file")
        }
        meta += tokenizer.map { ($0.key, $0.value) }
        return FilePlan(path: options.output, metadata: meta, tensors: tensors)
    }

    static func modelName(_ config: HFConfig, directory: String) -> String {
        if let n = config.nameOrPath, !n.isEmpty { return (n as NSString).lastPathComponent }
        return URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent
    }
}

/// The checkpoint's tensors split by component, keyed by their name inside it; tracks which were used.
struct ComponentIndex {
    let checkpointPath: String
    private var byComponent: [HFComponent: [String: SafeTensor]] = [:]
    private var used: Set<String> = []
    private var unmatched: [String] = []

    init(checkpoint: SafeTensorsCheckpoint, prefixes: HFNamePrefixes) throws {
        checkpointPath = checkpoint.path
        for full in checkpoint.names {
            guard let (c, local) = prefixes.split(full) else { unmatched.append(full); continue }
            if let other = byComponent[c]?[local] {
                throw ConvertError("\(checkpoint.path): tensors '\(other.name)' and '\(full)' are the same weight under two names")
            }
            byComponent[c, default: [:]][local] = checkpoint.tensors[full]!
        }
    }

    func lookup(_ c: HFComponent, _ local: String) -> SafeTensor? { byComponent[c]?[local] }

    mutating func markUsedIfPresent(_ c: HFComponent, _ locals: String...) {
        for l in locals { if let t = lookup(c, l) { used.insert(t.name) } }
    }

    /// Vision blocks beyond the feature layer are deliberately dropped: not "unused" in the warning sense.
    mutating func markUsed(_ c: HFComponent, layersFrom kept: Int, blockPrefix: String) {
        for (local, t) in byComponent[c] ?? [:] where local.hasPrefix(blockPrefix) {
            let rest = local.dropFirst(blockPrefix.count)
            if let n = Int(rest.prefix { $0.isNumber }), n >= kept { used.insert(t.name) }
        }
    }

    var unused: [String] {
        let all = byComponent.values.flatMap { $0.values.map(\.name) } + unmatched
        return all.filter { !used.contains($0) }.sorted()
    }

    /// Finds each spec's tensor, checks dtype and shape against config.json, and picks the output type.
    mutating func resolve(_ specs: [TensorSpec], component: HFComponent, policy: TypePolicy, file: String,
                          mixContext: MixContext? = nil, note: (String) -> Void) throws -> [PlannedTensor] {
        var out: [PlannedTensor] = []
        for s in specs {
            guard let t = lookup(component, s.hf) else {
                if s.optional { continue }
                throw ConvertError("\(checkpointPath): missing tensor for \(s.gguf) (expected '\(s.hf)' in the \(componentName(component)))")
            }
            guard t.shape == s.shape else {
                throw ConvertError("\(t.file): tensor '\(t.name)' has shape \(t.shape), but config.json implies \(s.shape) (for \(s.gguf))")
            }
            let srcType = try t.quantType()
            var bytes = t.bytes
            if let rows = s.sourceRows, let outer = s.shape.first, outer > 0 {
                // Rows of the outermost dim are contiguous: a slice of the bytes.
                let rowBytes = t.bytes.count / outer
                bytes = UnsafeRawBufferPointer(rebasing: t.bytes[(rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)])
            }
            let dims = s.ggmlDims
            let (type, why) = policy.choose(role: s.role, dims: dims, name: s.gguf, file: mixContext)
            if let why { note("\(s.gguf): \(why)") }
            used.insert(t.name)
            out.append(PlannedTensor(name: s.gguf, dims: dims, type: type,
                                     source: TensorSourceRef(type: srcType, bytes: bytes, owner: t.mapping),
                                     permuteHeads: s.permuteHeads))
        }
        return out
    }

    private func componentName(_ c: HFComponent) -> String {
        switch c {
        case .text: "text model"
        case .lmHead: "lm_head"
        case .vision: "vision tower"
        case .projector: "multi-modal projector"
        case .newline: "image_newline"
        }
    }
}

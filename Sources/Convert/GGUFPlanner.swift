import VZQModels
import VZQText
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// Re-quantizing a GGUF file: every tensor is dequantized from whatever readable type it has and written with
/// the same type policy as a fresh conversion; metadata is copied, with general.file_type (and the quantization
/// version) set for the new types. Tensors keep their names, shapes and order; a llama file's Q/K rows are
/// already in llama.cpp's order, so nothing is permuted.
enum GGUFPlanner {
    static func plan(file path: String, options: ConvertOptions, note: (String) -> Void) throws -> FilePlan {
        let source = try GGUFFile(path: path)
        var meta: [(String, GGUFValue)] = []
        for (k, v) in source.metadata.entries where k != GGUF.alignmentKey {
            switch k {
            case GGUFKey.General.fileType: meta.append((k, .uint32(options.policy.fileType)))
            case GGUFKey.General.quantizationVersion: meta.append((k, .uint32(2)))
            default: meta.append((k, v))
            }
        }
        if !source.metadata.contains(GGUFKey.General.fileType) { meta.append((GGUFKey.General.fileType, .uint32(options.policy.fileType))) }
        if !source.metadata.contains(GGUFKey.General.quantizationVersion) { meta.append((GGUFKey.General.quantizationVersion, .uint32(2))) }

        // A mix's per-tensor rules apply to a text model (not to an mmproj, as llama-quantize).
        var mixContext: MixContext?
        if options.policy.mix != nil, try source.metadata.string(GGUFKey.General.architecture, default: "") != "clip" {
            let decoder = try? LlamaConfig(metadata: source.metadata)
            mixContext = MixContext(tensorNames: source.tensors.map(\.name), groupedKV: decoder.map { $0.kvHeads < $0.heads } ?? false)
        }
        var tensors: [PlannedTensor] = []
        for t in source.tensors {
            let role = TypePolicy.role(ggufName: t.name, dims: t.dims)
            let (type, why) = options.policy.choose(role: role, dims: t.dims, name: t.name, file: mixContext)
            if let why { note("\(t.name): \(why)") }
            tensors.append(PlannedTensor(name: t.name, dims: t.dims, type: type,
                                         source: TensorSourceRef(type: t.type, bytes: source.bytes(of: t), owner: source),
                                         permuteHeads: nil))
        }
        return FilePlan(path: options.output, metadata: meta, tensors: tensors)
    }
}

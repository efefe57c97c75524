// hf: what `vzquant convert DIR` reads from a Hugging Face directory.
//
// Every input goes through both paths: as a safetensors file (every tensor touched and converted) and as JSON
// (config.json → HFConfig → HFArchitecture.detect, TextParams / VisionParams of every family with their GGUF
// metadata and tensor tables; preprocessor_config.json → HFPreprocessorConfig). An input cut by "\n%%%\n" into
// config.json | model.safetensors | preprocessor_config.json is also written to a scratch directory and planned
// by HFPlanner.plan (the converter's checks of the checkpoint against config.json; nothing is written).
import Foundation

private let hfFiles = ["config.json", "model.safetensors", "preprocessor_config.json"]
nonisolated(unsafe) private var hfTokenizerWritten = false
private let hfTokenizer = """
    {"added_tokens": [{"id": 4, "content": "<|endoftext|>", "special": true}],
     "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
     "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]}}
    """

func fuzzHF(_ bytes: UnsafeBufferPointer<UInt8>) {
    if let f = try? SafeTensorsFile(mapping: MappedFile(copying: bytes, name: "fuzz.safetensors")) {
        for t in f.tensors {
            if let first = t.bytes.first, let last = t.bytes.last { blackHole(first &+ last) }
            if t.elementCount <= 1 << 18 { _ = try? t.floats() }
            _ = try? t.quantType()
            blackHole(t.ggmlDims.count &+ Int(t.dtype.quantType?.rawValue ?? 0))
            blackHole(f[t.name]?.description)
        }
        blackHole(f.dataOffset)
        trace("safetensors: \(f.tensors.count) tensors")
    }

    let data = Data(buffer: bytes)
    fuzzConfig(data)
    do {
        let pre = try JSONDecoder().decode(HFPreprocessorConfig.self, from: data)
        blackHole((pre.imageMean?.count ?? 0) &+ (pre.imageStd?.count ?? 0))
    } catch let e as DecodingError {
        blackHole(describeDecodingError(e))
    } catch {}

    let parts = splitParts(bytes)
    guard parts.count >= 2 else { return }
    writeScratchFiles(hfFiles, parts)
    if !hfTokenizerWritten {
        // A fixed GPT-2 tokenizer, so that a text model's plan runs to its end (the tokenizer target fuzzes these files).
        writeScratchFiles(["tokenizer.json"], [ArraySlice(Array(hfTokenizer.utf8))])
        hfTokenizerWritten = true
    }
    let options = ConvertOptions(source: scratchDirectory, output: scratchDirectory + "/out.gguf",
                                 mmprojOutput: scratchDirectory + "/mmproj.gguf", policy: try! TypePolicy(type: .q8_0), threads: 1)
    switch Result(catching: { try HFPlanner.plan(directory: scratchDirectory, options: options, note: { blackHole($0) }) }) {
    case let .success(plans):
        for p in plans { blackHole(p.tensors.count &+ p.metadata.count) }
        trace("planned \(plans.map { $0.tensors.count }) tensors")
    case let .failure(e):
        trace("plan: \(e)")
    }
}

private func fuzzConfig(_ data: Data) {
    let config: HFConfig
    do {
        config = try JSONDecoder().decode(HFConfig.self, from: data)
    } catch let e as DecodingError {
        blackHole(describeDecodingError(e))
        return
    } catch {
        return
    }
    let dir = "fuzz"
    trace("config.json decoded")
    let arch = try? HFArchitecture.detect(config, directory: dir)
    blackHole(HFPlanner.modelName(config, directory: dir))
    if let arch { blackHole(arch.hasText && arch.hasVision) }
    trace("architecture \(arch?.rawValue ?? "-")")

    // The text model as each architecture reads it.
    for (text, tied) in [(config.textConfig ?? config.asText, config.tieWordEmbeddings), (config.asText, nil)] {
        guard let t = try? TextParams(text, tiedDefault: tied, directory: dir) else { continue }
        let vocab = t.vocab ?? 1
        blackHole(TextTable.plan(t, vocab: vocab).count)
        if case let .llama3(factor, low, high, original) = t.ropeScaling {
            blackHole(RopeScaling.llama3FrequencyFactors(headDim: t.headDim, base: t.ropeTheta, factor: factor, lowFreqFactor: low,
                                                         highFreqFactor: high, originalContext: original))
        }
        if let v = try? VisionParams(config.visionConfig ?? config.asVision, family: .clip, directory: dir) {
            blackHole(ProjectorTable.plan(visionHidden: v.hidden, textHidden: t.hidden, bias: config.multimodalProjectorBias ?? true).count)
        }
    }
    // The vision tower of every family, all its layers and the first one (LLaVA keeps those up to its feature
    // layer; HFPlanner.plan resolves that on the multi-file inputs).
    for family in [VisionFamily.clip, .siglip, .dinov2] {
        for vcfg in [config.visionConfig ?? config.asVision, config.asVision] {
            guard let v = try? VisionParams(vcfg, family: family, directory: dir) else { continue }
            let layers = max(1, min(vcfg.numHiddenLayers ?? 12, Limits.layers.upperBound))
            blackHole(VisionTable.plan(v, keptLayers: layers, postNorm: family != .clip).count)
            blackHole(VisionTable.plan(v, keptLayers: 1, postNorm: false).count &+ v.positions)
        }
    }
}

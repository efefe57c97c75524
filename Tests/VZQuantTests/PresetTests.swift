import Foundation
import XCTest
@testable import VZQuant
@testable import VZQSupport
@testable import VZQKernels
@testable import VZQFormats
@testable import VZQModels
@testable import VZQTokenReduction
@testable import VZQText
@testable import VZQImage
@testable import VZQFamilies
@testable import VZQRuntime
@testable import VZQConvert
@testable import VZQBench

/// Synthetic models (ModelPreset, SyntheticModel): the big presets are checked without writing, against parameter
/// counts transformers computes for the same architectures (tools/check_preset.py counts → Fixtures/presets); the
/// tiny ones are written and run through every loader.
final class PresetTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-preset-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temp)
    }

    private func path(_ name: String) -> String { temp.appendingPathComponent(name).path }

    /// {"llava-1.5-7b": {"text": n, "mmproj": n}, …} from transformers modules on the meta device.
    private func referenceCounts() throws -> [String: Any] {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        let data = try Data(contentsOf: root.appendingPathComponent("presets/param_counts.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    // MARK: big presets, planned only

    func testPlannedParameterCountsMatchTransformers() throws {
        let reference = try referenceCounts()
        for preset in [ModelPreset.llava15_7b, .llava15_13b, .llavaNext7b, .smolvlm256m, .qwen25vl3b, .qwen2vl2b] {
            let plan = try SyntheticModel.plan(preset: preset, type: .q4_0)
            let want = try XCTUnwrap(reference[preset.name] as? [String: Int], preset.name)
            XCTAssertEqual(plan.text.parameters, want["text"], "\(preset.name) text")
            XCTAssertEqual(plan.mmproj.parameters, want["mmproj"], "\(preset.name) mmproj")
        }
        // Published totals, independent of transformers: Llama-2-7B / Vicuna-7B 6,738,415,616 and Llama-2-13B
        // 13,015,864,320 (Meta's model cards, "6.74B" / "13.0B"); SmolLM2-135M 134,515,008 with its own tied
        // 49152-token vocabulary (its model card: "135M"); SmolVLM-256M ≈ 256 M in all.
        XCTAssertEqual(try SyntheticModel.plan(preset: .llava15_7b, type: .q8_0).text.parameters, 6_738_415_616)
        XCTAssertEqual(try SyntheticModel.plan(preset: .llava15_13b, type: .q8_0).text.parameters, 13_015_864_320)
        var smolLM2 = ModelPreset.smolvlm256m
        smolLM2.text.vocab = 49152
        smolLM2.text.tiedEmbeddings = true
        XCTAssertEqual(try SyntheticModel.plan(preset: smolLM2, type: .q8_0).text.parameters, reference["smollm2-135m-text"] as? Int)
        XCTAssertEqual(try SyntheticModel.plan(preset: smolLM2, type: .q8_0).text.parameters, 134_515_008)
        // Qwen2.5-VL-3B-Instruct 3.75 B and Qwen2-VL-2B-Instruct 2.21 B in all (their model cards).
        XCTAssertEqual(try SyntheticModel.plan(preset: .qwen25vl3b, type: .q4_0).parameters, 3_754_622_976)
        XCTAssertEqual(try SyntheticModel.plan(preset: .qwen2vl2b, type: .q4_0).parameters, 2_208_985_600)
        let smol = try SyntheticModel.plan(preset: .smolvlm256m, type: .q8_0)
        XCTAssertEqual(Double(smol.parameters) / 1e6, 256.5, accuracy: 0.5)
        // CLIP ViT-L/14-336 (0.30 B, 303,507,456 in transformers) minus the dropped 24th layer and post-norm.
        let clipLayer = 4 * (1024 * 1024 + 1024) + 2 * 2 * 1024 + (1024 * 4096 + 4096) + (4096 * 1024 + 1024)
        XCTAssertEqual(reference["clip-vit-l-14-336-full-tower"] as? Int, 303_507_456)
        let llava = try SyntheticModel.plan(preset: .llava15_7b, type: .q4_0)
        let projector = (1024 * 4096 + 4096) + (4096 * 4096 + 4096)
        XCTAssertEqual(llava.mmproj.parameters, 303_507_456 - clipLayer - 2 * 1024 + projector)
    }

    /// One config per part for presets, converter and runtime: what a preset writes, the runtime reads back as the
    /// very decoder and tower configs the preset was described by (and a converted config.json's decoder too).
    func testDecoderConfigRoundTripsThroughGGUF() throws {
        for preset in ModelPreset.all {
            var m = GGUFMetadata(file: preset.name)
            for (k, v) in try SyntheticModel.plan(preset: preset, type: .q8_0).text.metadata { m.set(k, v) }
            XCTAssertEqual(try LlamaConfig(metadata: m), preset.text.config, preset.name)
            var mm = GGUFMetadata(file: preset.name + "-mmproj")
            for (k, v) in try SyntheticModel.plan(preset: preset, type: .q8_0).mmproj.metadata { mm.set(k, v) }
            XCTAssertEqual(try VisionConfig(metadata: mm), preset.vision.config, preset.name)
        }
        for name in ["qwen2", "llava-4x", "llama-rope-linear"] {
            let dir = try LlavaModelTests.fixture("hf/\(name)").path
            let config = try HFConfig.load(directory: dir)
            let params = try TextParams(config.textConfig ?? config.asText, tiedDefault: nil, directory: dir)
            let out = temp.appendingPathComponent("\(name).gguf").path
            _ = try Converter.run(ConvertOptions(source: dir, output: out, mmprojOutput: name == "llava-4x" ? out + ".mm" : nil,
                                                 policy: try TypePolicy(type: .f32), threads: 1))
            var read = try LlamaConfig(metadata: GGUFFile(path: out).metadata)
            XCTAssertEqual(read.ropeScaling != nil, params.ropeScaling != nil, name)
            read.ropeScaling = nil  // the runtime's reading of the keys the converter wrote from config.json
            XCTAssertEqual(read, params.config, name)
        }
    }

    func testLlava7bLayoutAsLlamaCpp() throws {
        let plan = try SyntheticModel.plan(preset: .llava15_7b, type: .q4_0)
        // llama.cpp loads Llama-2-7B / LLaVA-1.5-7B text GGUFs with 291 tensors (1 + 32·9 + 2) and the LLaVA-1.5
        // mmproj with 377 (23 CLIP blocks · 16 + 5 embedding/pre-norm tensors + 4 projector tensors).
        XCTAssertEqual(plan.text.tensors.count, 291)
        XCTAssertEqual(plan.mmproj.tensors.count, 377)
        let byName = Dictionary(uniqueKeysWithValues: (plan.text.tensors + plan.mmproj.tensors).map { ($0.name, $0) })
        XCTAssertEqual(byName["token_embd.weight"]?.type, .q8_0, "q8_0 token embedding under q4_0, as the converter")
        XCTAssertEqual(byName["token_embd.weight"]?.dims, [4096, 32000])
        XCTAssertEqual(byName["output.weight"]?.type, .q4_0)
        XCTAssertEqual(byName["blk.31.ffn_down.weight"]?.dims, [11008, 4096])
        XCTAssertEqual(byName["blk.0.attn_norm.weight"]?.type, .f32)
        XCTAssertEqual(byName["v.patch_embd.weight"]?.type, .f16)
        XCTAssertEqual(byName["v.patch_embd.weight"]?.dims, [14, 14, 3, 1024])
        XCTAssertEqual(byName["v.position_embd.weight"]?.dims, [1024, 577])
        XCTAssertEqual(byName["mm.0.weight"]?.dims, [1024, 4096])
        XCTAssertNotNil(byName["v.blk.22.ffn_down.weight"])
        XCTAssertNil(byName["v.blk.23.attn_q.weight"], "layers after vision_feature_layer −2 are dropped")
        XCTAssertNil(byName["v.post_ln.weight"])
        // Size: 4-bit blocks of 18 bytes per 32 weights, the q8_0 embedding 34 per 32, 65 f32 norms.
        let embedding = 32000 * 4096, norms = 65 * 4096
        let q4 = 6_738_415_616 - embedding - norms
        XCTAssertEqual(plan.text.tensorBytes, q4 / 32 * 18 + embedding / 32 * 34 + norms * 4)
        let meta = Dictionary(plan.text.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(meta["llama.context_length"], .uint32(4096))
        XCTAssertEqual(meta["llama.attention.head_count_kv"], .uint32(32))
        XCTAssertEqual(meta["general.name"], .string("llava-1.5-7b"))
        XCTAssertEqual(meta["vzquant.synthetic"], .bool(true))
        for p in ModelPreset.all {
            let plan = try SyntheticModel.plan(preset: p, type: .q8_0)
            let m = Dictionary(plan.text.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            guard case let .array(_, tokens)? = m["tokenizer.ggml.tokens"] else { return XCTFail("\(p.name): no tokens") }
            XCTAssertEqual(tokens.count, p.text.vocab, p.name)
        }
    }

    func testAnyResAndIdefics3Metadata() throws {
        let next = try SyntheticModel.plan(preset: .llavaNext7b, type: .q4_0)
        let m = Dictionary(next.mmproj.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(m["clip.vision.image_grid_pinpoints"], .int32s([336, 672, 672, 336, 672, 672, 1008, 336, 336, 1008]))
        XCTAssertEqual(m["clip.vision.image_crop_resolution"], .uint32(336))
        XCTAssertEqual(m["clip.vision.mm_patch_merge_type"], .string("spatial_unpad"))
        let newline = try XCTUnwrap(next.mmproj.tensors.first { $0.name == "v.image_newline" })
        XCTAssertEqual(newline.dims, [4096])
        XCTAssertEqual(newline.type, .f32)

        let smol = try SyntheticModel.plan(preset: .smolvlm256m, type: .q4_0)
        let s = Dictionary(smol.mmproj.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(s["clip.projector_type"], .string("idefics3"))
        XCTAssertEqual(s["clip.vision.projector.scale_factor"], .uint32(4))
        XCTAssertEqual(s["vzquant.vision.family"], .string("siglip"))
        let fc = try XCTUnwrap(smol.mmproj.tensors.first { $0.name == "mm.model.fc.weight" })
        XCTAssertEqual(fc.dims, [768 * 16, 576])
        XCTAssertFalse(smol.mmproj.tensors.contains { $0.name.hasPrefix("mm.model.fc.bias") })
        XCTAssertTrue(smol.mmproj.tensors.contains { $0.name == "v.post_ln.weight" })
        XCTAssertEqual(smol.mmproj.tensors.filter { $0.name.hasSuffix(".attn_q.weight") }.count, 12)
    }

    // MARK: tiny presets, written and loaded

    func testTinyLlavaLoadsAndRuns() throws {
        for type in [QuantType.q4_0, .q8_0, .f16] {
            let text = path("tiny-\(type).gguf"), mmproj = path("tiny-mmproj-\(type).gguf")
            let summary = try SyntheticModel.write(preset: .tinyLlava, type: type, textPath: text, mmprojPath: mmproj, seed: 1)
            XCTAssertEqual(summary.files.count, 2)
            let plan = try SyntheticModel.plan(preset: .tinyLlava, type: type)
            XCTAssertEqual(summary.parameters, plan.parameters)

            let textFile = try GGUFFile(path: text)
            XCTAssertEqual(try textFile.metadata.bool("vzquant.synthetic"), true)
            XCTAssertEqual(try textFile.metadata.string("general.name"), "tiny-llava")
            let tokenizer = try Tokenizer(gguf: textFile)
            let model = try LlamaModel(path: text, maxContext: 128)
            XCTAssertEqual(model.vocab, 1024)
            let mmFile = try GGUFFile(path: mmproj)
            let tower = try VisionEncoder(path: mmproj)
            let projector = try Projector(file: mmFile)
            XCTAssertEqual(projector.outputs, 64)

            // a normalised image: random values in about [−2, 2]
            var rng = SeededRandom(seed: 5)
            let pixels = rng.floats(count: 3 * 56 * 56, scale: 2)
            let features = try tower(pixels: pixels).features
            XCTAssertEqual(features.count, (16 + 1) * 64)
            let image = try projector(features: features)
            XCTAssertEqual(image.count, 16 * 64, "CLS dropped (feature_select default)")

            let ids = tokenizer.encode("USER: <image>\nWhat is in this picture? ASSISTANT:")
            let imageID = try XCTUnwrap(tokenizer.tokens.firstIndex(of: "<image>"))
            XCTAssertEqual(ids.filter { $0 == Int32(imageID) }.count, 1, "<image> is one token")
            XCTAssertEqual(ids.first, tokenizer.bos)
            let at = ids.firstIndex(of: Int32(imageID))!
            let embeddings = try model.embeddings(Array(ids[..<at])) + image + model.embeddings(Array(ids[(at + 1)...]))
            let logits = try model.prefill(embeddings: embeddings, lastOnly: true)
            XCTAssertEqual(logits.count, 1024)
            XCTAssertTrue(logits.allSatisfy(\.isFinite), "\(type): logits not finite")
            XCTAssertGreaterThan(logits.max()! - logits.min()!, 0.01, "\(type): flat logits")
        }
    }

    func testTinySmolvlmLoads() throws {
        let text = path("smol.gguf"), mmproj = path("smol-mmproj.gguf")
        try SyntheticModel.write(preset: .tinySmolvlm, type: .q8_0, textPath: text, mmprojPath: mmproj, seed: 2)
        let textFile = try GGUFFile(path: text)
        let tokenizer = try Tokenizer(gguf: textFile)
        XCTAssertEqual(tokenizer.bos.map { tokenizer.tokens[Int($0)] }, "<|im_start|>")
        XCTAssertEqual(tokenizer.eos.map { tokenizer.tokens[Int($0)] }, "<end_of_utterance>")
        XCTAssertFalse(textFile.tensors.contains { $0.name == "output.weight" }, "tied: no output.weight")
        let model = try LlamaModel(file: textFile, maxContext: 64)
        let ids = tokenizer.encode("<|im_start|>User: hello<end_of_utterance>\nAssistant:", parseSpecial: true)
        XCTAssertEqual(ids.first, tokenizer.bos)
        let logits = try model.prefill(tokens: ids)
        XCTAssertTrue(logits.allSatisfy(\.isFinite))

        let tower = try VisionEncoder(path: mmproj)
        XCTAssertEqual(tower.config.family, .siglip)
        var rng = SeededRandom(seed: 9)
        let out = try tower(pixels: rng.floats(count: 3 * 128 * 128, scale: 1))
        XCTAssertEqual(out.features.count, 64 * 64)
        XCTAssertTrue(try XCTUnwrap(out.normalized).allSatisfy(\.isFinite))
        let mm = try GGUFFile(path: mmproj)
        XCTAssertEqual(mm.tensors.first { $0.name == "mm.model.fc.weight" }?.dims, [64 * 16, 64])
    }

    /// tiny-qwen2.5-vl through every loader: the M-RoPE decoder, the windowed tower, the merger, the family's
    /// resize, and a prompt with an image (VisionZip on) that generates.
    func testTinyQwenLoadsAndRuns() throws {
        let text = path("qwen.gguf"), mmproj = path("qwen-mmproj.gguf")
        try SyntheticModel.write(preset: .tinyQwen25vl, type: .q8_0, textPath: text, mmprojPath: mmproj, seed: 3)
        let config = try LlamaConfig(metadata: GGUFFile(path: text).metadata)
        XCTAssertEqual(config, ModelPreset.tinyQwen25vl.text.config)
        XCTAssertEqual(config.ropeSections, [2, 3, 3])
        let vision = try VisionPipeline(path: mmproj)
        XCTAssertEqual(vision.encoder.config, ModelPreset.tinyQwen25vl.vision.config)
        XCTAssertEqual(vision.encoder.config.windowPatches, 8)
        XCTAssertEqual(vision.encoder.config.fullAttentionLayers, [1])
        XCTAssertEqual(vision.family.name, "qwen2.5-vl")
        let session = try Session(model: text, mmproj: mmproj, options: SessionOptions(contextLength: 256))
        let picture = ModelBench.syntheticImage(width: 300, height: 200)
        // 28²·64 pixels at most: 300×200 → 252×168 px → 9×6 merged rows.
        XCTAssertEqual(vision.tokens(for: picture, visualTokens: .all), 54)
        let image = try vision.encode(picture, visualTokens: .budget(.init(dominant: 8, contextual: 2)))
        XCTAssertEqual(image.tokens, 10)
        let conversation = Conversation(session: session, template: nil)
        let prefill = try conversation.add(user: "What is this?", images: [image])
        XCTAssertEqual(prefill.report.imageTokens, 10)
        let before = session.position
        _ = try conversation.generate(maxTokens: 4, stopTokens: [], sample: { logits, _ in
            Int32(logits.indices.max { logits[$0] < logits[$1] }!)
        })
        XCTAssertEqual(session.position, before + 4)
        XCTAssertTrue(session.lastLogits.allSatisfy(\.isFinite))
    }

    func testSameSeedSameBytes() throws {
        func files(_ seed: UInt64, _ tag: String) throws -> (Data, Data) {
            let t = path("t\(tag).gguf"), m = path("m\(tag).gguf")
            try SyntheticModel.write(preset: .tinyLlava, type: .q4_0, textPath: t, mmprojPath: m, seed: seed, threads: tag == "b" ? 1 : 4)
            return (try Data(contentsOf: URL(fileURLWithPath: t)), try Data(contentsOf: URL(fileURLWithPath: m)))
        }
        let a = try files(7, "a"), b = try files(7, "b"), c = try files(8, "c")
        XCTAssertEqual(a.0, b.0, "same seed, different thread count: same text bytes")
        XCTAssertEqual(a.1, b.1)
        XCTAssertNotEqual(a.0, c.0, "another seed changes the weights")
        XCTAssertNotEqual(a.1, c.1)
        XCTAssertEqual(a.0.count, c.0.count)
    }

    func testQuantizedBlocksHaveTheIntendedScale() throws {
        // Dequantized with CQuant's reference: a matrix row's std is about 1/√(row length).
        let t = SyntheticTensor(name: "w", dims: [4096, 4], type: .q4_0, fill: .random(std: 1 / 64))
        for type in [QuantType.q4_0, .q8_0, .f16, .f32] {
            var u = t
            u.type = type
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: u.byteCount, alignment: 64)
            defer { buffer.deallocate() }
            try SyntheticModel.generate(u, rows: 0..<4, seed: 1, into: buffer.baseAddress!, threads: 2)
            let values = try type.dequantize(UnsafeRawBufferPointer(buffer), count: 4 * 4096)
            let mean = values.reduce(0, +) / Float(values.count)
            let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(values.count)).squareRoot()
            XCTAssertEqual(std, 1 / 64, accuracy: 0.1 / 64, "\(type)")
        }
    }

    func testVocabularyEncodesAnyText() throws {
        let plan = try SyntheticModel.plan(preset: .llava15_7b, type: .q4_0)
        let tokenizer = try Tokenizer(pairs: plan.text.metadata.filter { $0.key.hasPrefix("tokenizer.") })
        XCTAssertEqual(tokenizer.count, 32000)
        let text = "Describe this image, please: Ünïcødé ✓ 🙂 (tabs\tand\nnewlines) 1234"
        let ids = tokenizer.encode(text, addSpecial: false)
        XCTAssertEqual(tokenizer.decode(ids), text)
        XCTAssertLessThan(ids.count, text.utf8.count, "pieces merge beyond single bytes")
        XCTAssertEqual(tokenizer.encode("<image>", addSpecial: false).map { tokenizer.tokens[Int($0)] }, ["<image>"])
    }

    // MARK: bad input

    func testBadInputThrowsAndLeavesNothing() throws {
        XCTAssertThrowsError(try ModelPreset.named("llava-9b")) { XCTAssertTrue("\($0)".contains("llava-1.5-7b")) }
        XCTAssertThrowsError(try SyntheticModel.plan(preset: .tinyLlava, type: .q4_1))
        var odd = ModelPreset.tinySmolvlm
        odd.vision.config.imageSize = 48  // a 3×3 patch grid cannot be pixel-shuffled by 4
        XCTAssertThrowsError(try SyntheticModel.plan(preset: odd, type: .q8_0))
        var small = ModelPreset.tinyLlava
        small.text.vocab = 100
        XCTAssertThrowsError(try SyntheticModel.plan(preset: small, type: .q8_0))
        // The mmproj's directory does not exist: the text file written before it must not stay behind.
        XCTAssertThrowsError(try SyntheticModel.write(preset: .tinyLlava, type: .q8_0, textPath: path("t.gguf"),
                                                      mmprojPath: path("missing/m.gguf")))
        XCTAssertThrowsError(try SyntheticModel.write(preset: .tinyLlava, type: .q8_0, textPath: path("m.gguf"), mmprojPath: path("m.gguf")))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temp.path), [])
    }
}

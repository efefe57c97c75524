import CQuant
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

/// `vzquant convert` on the tiny HF fixtures (tools/make_hf_checkpoints.py): LLaVA in transformers 4.x names
/// (F16) and 5.x names (BF16), and Qwen2 (F32, tied embeddings, q/k/v biases). Files are read back with our
/// GGUFFile and compared value by value with the source; tools/check_convert.py repeats the check independently
/// with gguf-py.
final class ConvertTests: XCTestCase {
    // MARK: fixtures and helpers

    static func hfDirectory(_ name: String) throws -> String {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        return root.appendingPathComponent("hf/\(name)").path
    }

    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-convert-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temp)
    }

    @discardableResult
    func convert(_ source: String, _ type: QuantType, mmproj: Bool = true, tokenEmbedding: QuantType? = nil,
                 tag: String = "", notes: UnsafeMutablePointer<[String]>? = nil) throws -> (text: String, mmproj: String?, summary: ConvertSummary) {
        let base = URL(fileURLWithPath: source).lastPathComponent + tag + "-\(type)"
        let out = temp.appendingPathComponent(base + ".gguf").path
        let mm = mmproj ? temp.appendingPathComponent(base + "-mmproj.gguf").path : nil
        let options = ConvertOptions(source: source, output: out, mmprojOutput: mm,
                                     policy: try TypePolicy(type: type, tokenEmbeddingType: tokenEmbedding), threads: 4)
        var collected: [String] = []
        let summary = try Converter.run(options) { collected.append($0) }
        notes?.pointee = collected
        return (out, mm, summary)
    }

    /// Files left in the temp directory (including hidden temporaries).
    func leftovers() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: temp.path).sorted() }

    /// Checks every value of `t` against `source` (HF order) within the bound of t's type; `heads` undoes the
    /// llama Q/K permutation (output row h·hd + 2i + j holds source row h·hd + j·hd/2 + i).
    func assertClose(_ file: GGUFFile, _ name: String, _ source: [Float], heads: Int? = nil, line: UInt = #line) throws {
        let t = try XCTUnwrap(file.tensorInfo(name), "\(name) missing", line: line)
        XCTAssertEqual(t.elementCount, source.count, name, line: line)
        let got = try file.floats(of: name)
        let rowLength = heads != nil && t.dims.count == 1 ? 1 : t.dims[0]
        let rows = t.elementCount / rowLength
        var expected = source
        if let heads {
            let hd = rows / heads, half = hd / 2
            for r in 0..<rows {
                let src = (r / hd) * hd + (r % hd % 2) * half + (r % hd) / 2
                for c in 0..<rowLength { expected[r * rowLength + c] = source[src * rowLength + c] }
            }
        }
        let raw = file.bytes(of: t)
        var worst = (excess: Float(0), index: -1, bound: Float(0))
        for i in 0..<got.count {
            let x = expected[i]
            let bound: Float
            switch t.type {
            case .f32: bound = 0
            case .f16: bound = abs(x) * 0x1p-11 + 0x1p-24
            case .q8_0, .q4_0, .q5_0, .q4_1, .q5_1:
                let blockBytes = t.type.blockBytes
                let b = i / 32
                func half(_ at: Int) -> Float { abs(cq_fp16_to_fp32(UInt16(raw[b * blockBytes + at]) | UInt16(raw[b * blockBytes + at + 1]) << 8)) }
                let d = half(0), m = t.type == .q4_1 || t.type == .q5_1 ? half(2) : 0
                // half a step where the quantizer rounds (Q8_0, Q4_1, Q5_1), one step where it truncates and clamps
                // (Q4_0, Q5_0), plus the fp16 rounding of the scale (times the largest code) and of the minimum
                let (step, qmax): (Float, Float) = [.q8_0: (0.5, 127), .q4_0: (1, 8), .q5_0: (1, 16), .q4_1: (0.5, 15), .q5_1: (0.5, 31)][t.type]!
                bound = (d * (step + qmax * 0x1p-11) + m * 0x1p-11) * 1.001 + 1e-7
            default: return XCTFail("\(name): unexpected type \(t.type)", line: line)
            }
            let excess = abs(got[i] - x) - bound
            if excess > worst.excess { worst = (excess, i, bound) }
        }
        if worst.index >= 0 {
            XCTFail("\(name) (\(t.type)): value \(worst.index) is \(got[worst.index]), source \(expected[worst.index]), outside ±\(worst.bound)", line: line)
        }
    }

    // MARK: LLaVA

    func testLlavaBothLayoutsAllTypes() throws {
        let checkpoints = [("llava-4x", "language_model.model.", "language_model.lm_head.", "vision_tower.", "multi_modal_projector."),
                           ("llava-5x", "model.language_model.", "lm_head.", "model.vision_tower.", "model.multi_modal_projector.")]
        for type in [QuantType.q4_0, .q8_0, .f16, .f32, .q4_1, .q5_0, .q5_1] {
            var pair: [(GGUFFile, GGUFFile)] = []
            for (dir, text, head, vision, proj) in checkpoints {
                let src = try Self.hfDirectory(dir)
                let ck = try SafeTensorsCheckpoint(path: src)
                let (out, mm, summary) = try convert(src, type)
                let f = try GGUFFile(path: out), v = try GGUFFile(path: mm!)
                pair.append((f, v))
                XCTAssertEqual(summary.files.map(\.path), [mm!, out])
                XCTAssertGreaterThan(summary.peakRSSBytes, 0)

                // Text metadata.
                let m = f.metadata
                XCTAssertEqual(try m.string("general.architecture"), "llama")
                XCTAssertEqual(try m.int("general.file_type"), [QuantType.f32: 0, .f16: 1, .q4_0: 2, .q4_1: 3, .q8_0: 7, .q5_0: 8, .q5_1: 9][type])
                XCTAssertEqual(try m.int("general.quantization_version"), 2)
                XCTAssertEqual(try m.int("llama.block_count"), 2)
                XCTAssertEqual(try m.int("llama.embedding_length"), 64)
                XCTAssertEqual(try m.int("llama.feed_forward_length"), 128)
                XCTAssertEqual(try m.int("llama.attention.head_count"), 4)
                XCTAssertEqual(try m.int("llama.attention.head_count_kv"), 2)
                XCTAssertEqual(try m.int("llama.rope.dimension_count"), 16)
                XCTAssertEqual(try m.int("llama.context_length"), 256)
                XCTAssertEqual(try m.int("llama.vocab_size"), 401)
                XCTAssertEqual(try m.float("llama.rope.freq_base"), 10000)
                XCTAssertEqual(try m.float("llama.attention.layer_norm_rms_epsilon"), 1e-5)
                XCTAssertFalse(m.contains("llama.attention.key_length"), "head_dim = hidden/heads: no key_length")

                // Text tensors: names, dims, types, values.
                let tokType: QuantType = [.q4_0, .q4_1, .q5_0, .q5_1].contains(type) ? .q8_0 : type
                var expectNames = ["token_embd.weight", "output_norm.weight", "output.weight"]
                XCTAssertEqual(f.tensorInfo("token_embd.weight")?.dims, [64, 401])
                XCTAssertEqual(f.tensorInfo("token_embd.weight")?.type, tokType)
                XCTAssertEqual(f.tensorInfo("output.weight")?.type, type)
                XCTAssertEqual(f.tensorInfo("output_norm.weight")?.type, .f32)
                try assertClose(f, "token_embd.weight", ck.tensor(text + "embed_tokens.weight").floats())
                try assertClose(f, "output.weight", ck.tensor(head + "weight").floats())
                try assertClose(f, "output_norm.weight", ck.tensor(text + "norm.weight").floats())
                let layerMap: [(String, String, [Int], Int?)] = [
                    ("attn_norm.weight", "input_layernorm.weight", [64], nil),
                    ("attn_q.weight", "self_attn.q_proj.weight", [64, 64], 4),
                    ("attn_k.weight", "self_attn.k_proj.weight", [64, 32], 2),
                    ("attn_v.weight", "self_attn.v_proj.weight", [64, 32], nil),
                    ("attn_output.weight", "self_attn.o_proj.weight", [64, 64], nil),
                    ("ffn_norm.weight", "post_attention_layernorm.weight", [64], nil),
                    ("ffn_gate.weight", "mlp.gate_proj.weight", [64, 128], nil),
                    ("ffn_up.weight", "mlp.up_proj.weight", [64, 128], nil),
                    ("ffn_down.weight", "mlp.down_proj.weight", [128, 64], nil),
                ]
                for i in 0..<2 {
                    for (g, h, dims, heads) in layerMap {
                        let name = "blk.\(i).\(g)"
                        expectNames.append(name)
                        let info = try XCTUnwrap(f.tensorInfo(name), name)
                        XCTAssertEqual(info.dims, dims, name)
                        XCTAssertEqual(info.type, dims.count == 1 ? .f32 : type, name)
                        try assertClose(f, name, ck.tensor("\(text)layers.\(i).\(h)").floats(), heads: heads)
                    }
                }
                XCTAssertEqual(Set(f.tensors.map(\.name)), Set(expectNames))

                // mmproj: CLIP tower up to vision_feature_layer −2 (2 of 3 layers), no post-norm, projector.
                let vm = v.metadata
                XCTAssertEqual(try vm.string("general.architecture"), "clip")
                XCTAssertEqual(try vm.bool("clip.has_vision_encoder"), true)
                XCTAssertEqual(try vm.bool("clip.has_llava_projector"), true)
                XCTAssertEqual(try vm.string("clip.projector_type"), "mlp")
                XCTAssertEqual(try vm.bool("clip.use_gelu"), false, "quick_gelu")
                XCTAssertEqual(try vm.int("clip.vision.block_count"), 2)
                XCTAssertEqual(vm["vzquant.vision.feature_layer"], .int32(-2))
                XCTAssertEqual(vm["vzquant.vision.source_block_count"], .uint32(3))
                XCTAssertEqual(vm["vzquant.vision.feature_select"], .string("default"))
                XCTAssertEqual(try vm.int("clip.vision.image_size"), 32)
                XCTAssertEqual(try vm.int("clip.vision.patch_size"), 8)
                XCTAssertEqual(try vm.int("clip.vision.embedding_length"), 32)
                XCTAssertEqual(try vm.int("clip.vision.feed_forward_length"), 64)
                XCTAssertEqual(try vm.int("clip.vision.projection_dim"), 32)
                XCTAssertEqual(try vm.int("clip.vision.attention.head_count"), 4)
                XCTAssertEqual(try vm.float("clip.vision.attention.layer_norm_epsilon"), 1e-5)
                XCTAssertEqual(try vm.floats("clip.vision.image_mean"), [0.48145466, 0.4578275, 0.40821073])
                XCTAssertEqual(try vm.floats("clip.vision.image_std"), [0.26862954, 0.26130258, 0.27577711])

                var visionNames: [String] = []
                func vcheck(_ g: String, _ h: String, _ dims: [Int], _ t: QuantType) throws {
                    visionNames.append(g)
                    let info = try XCTUnwrap(v.tensorInfo(g), g)
                    XCTAssertEqual(info.dims, dims, g)
                    XCTAssertEqual(info.type, t, g)
                    try assertClose(v, g, ck.tensor(h).floats())
                }
                try vcheck("v.patch_embd.weight", vision + "embeddings.patch_embedding.weight", [8, 8, 3, 32], type == .f32 ? .f32 : .f16)
                try vcheck("v.class_embd", vision + "embeddings.class_embedding", [32], .f32)
                try vcheck("v.position_embd.weight", vision + "embeddings.position_embedding.weight", [32, 17], .f32)
                for s in ["weight", "bias"] { try vcheck("v.pre_ln.\(s)", vision + "pre_layrnorm.\(s)", [32], .f32) }
                let vLayer: [(String, String, [Int])] = [
                    ("attn_q", "self_attn.q_proj", [32, 32]), ("attn_k", "self_attn.k_proj", [32, 32]),
                    ("attn_v", "self_attn.v_proj", [32, 32]), ("attn_out", "self_attn.out_proj", [32, 32]),
                    ("ln1", "layer_norm1", [32]), ("ln2", "layer_norm2", [32]),
                    ("ffn_up", "mlp.fc1", [32, 64]), ("ffn_down", "mlp.fc2", [64, 32]),
                ]
                for i in 0..<2 {
                    for (g, h, dims) in vLayer {
                        try vcheck("v.blk.\(i).\(g).weight", "\(vision)encoder.layers.\(i).\(h).weight", dims, dims.count == 1 ? .f32 : type)
                        try vcheck("v.blk.\(i).\(g).bias", "\(vision)encoder.layers.\(i).\(h).bias", [dims.last!], .f32)
                    }
                }
                try vcheck("mm.0.weight", proj + "linear_1.weight", [32, 64], type)
                try vcheck("mm.0.bias", proj + "linear_1.bias", [64], .f32)
                try vcheck("mm.2.weight", proj + "linear_2.weight", [64, 64], type)
                try vcheck("mm.2.bias", proj + "linear_2.bias", [64], .f32)
                XCTAssertEqual(Set(v.tensors.map(\.name)), Set(visionNames), "no v.blk.2.*, no v.post_ln")
            }

            // 4.x (F16) and 5.x (BF16) hold the same model: same names, dims, types, metadata; and where both
            // sources round to the same values, the same output bytes (per element for F32/F16, per block else).
            let ck4 = try SafeTensorsCheckpoint(path: Self.hfDirectory("llava-4x"))
            let ck5 = try SafeTensorsCheckpoint(path: Self.hfDirectory("llava-5x"))
            for ((a, b), isVision) in zip([(pair[0].0, pair[1].0), (pair[0].1, pair[1].1)], [false, true]) {
                XCTAssertEqual(a.tensors.map { "\($0.name) \($0.dims) \($0.type)" }, b.tensors.map { "\($0.name) \($0.dims) \($0.type)" })
                XCTAssertEqual(a.metadata.keys, b.metadata.keys)
                for key in a.metadata.keys where key != "general.name" {
                    XCTAssertEqual(a.metadata[key], b.metadata[key], key)
                }
                var identical = 0, compared = 0
                for t in a.tensors where t.name.hasPrefix("blk.") || t.name.hasPrefix("v.blk.") {
                    // Per-tensor source equality, mapped by position in the plan (same order in both files).
                    let hf4 = try sourceName(t.name, vision: isVision, layout4x: true)
                    let s4 = try ck4.tensor(hf4).floats()
                    let s5 = try ck5.tensor(try sourceName(t.name, vision: isVision, layout4x: false)).floats()
                    let unit = t.type.blockElements
                    let bytes4 = a.bytes(of: t), bytes5 = try b.bytes(of: t.name)
                    let permuted = t.name.contains("attn_q") || t.name.contains("attn_k")
                    if permuted && !isVision { continue }  // row order differs from the source; covered by values above
                    for blk in 0..<(t.elementCount / unit) {
                        let range = (blk * unit)..<((blk + 1) * unit)
                        guard s4[range] == s5[range] else { continue }
                        compared += 1
                        let bb = t.type.blockBytes
                        if bytes4[(blk * bb)..<((blk + 1) * bb)].elementsEqual(bytes5[(blk * bb)..<((blk + 1) * bb)]) { identical += 1 }
                    }
                }
                XCTAssertGreaterThan(compared, 0)
                XCTAssertEqual(identical, compared, "\(type): blocks with equal F16/BF16 sources must convert identically")
            }
        }
    }

    /// The HF name behind a written llava tensor (for the 4.x/5.x comparison).
    private func sourceName(_ gguf: String, vision: Bool, layout4x: Bool) throws -> String {
        let p = gguf.split(separator: ".")
        if vision {
            let m = ["attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                     "attn_out": "self_attn.out_proj", "ln1": "layer_norm1", "ln2": "layer_norm2", "ffn_up": "mlp.fc1", "ffn_down": "mlp.fc2"]
            return (layout4x ? "vision_tower." : "model.vision_tower.") + "encoder.layers.\(p[2]).\(m[String(p[3])]!).\(p[4])"
        }
        let m = ["attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"]
        return (layout4x ? "language_model.model." : "model.language_model.") + "layers.\(p[1]).\(m[String(p[2])]!).\(p[3])"
    }

    // MARK: Qwen2

    func testQwen2Q8_0() throws {
        let src = try Self.hfDirectory("qwen2")
        let ck = try SafeTensorsCheckpoint(path: src)
        let (out, _, summary) = try convert(src, .q8_0, mmproj: false)
        XCTAssertEqual(summary.files.count, 1)
        let f = try GGUFFile(path: out)
        let m = f.metadata
        XCTAssertEqual(try m.string("general.architecture"), "qwen2")
        XCTAssertEqual(try m.int("general.file_type"), 7)
        XCTAssertEqual(try m.int("qwen2.block_count"), 2)
        XCTAssertEqual(try m.int("qwen2.feed_forward_length"), 96)
        XCTAssertEqual(try m.int("qwen2.vocab_size"), 400)
        XCTAssertEqual(try m.float("qwen2.rope.freq_base"), 1_000_000)
        XCTAssertEqual(try m.float("qwen2.attention.layer_norm_rms_epsilon"), 1e-6)
        XCTAssertNil(f.tensorInfo("output.weight"), "tied embeddings: no output tensor")
        XCTAssertEqual(f.tensorInfo("token_embd.weight")?.type, .q8_0)
        try assertClose(f, "token_embd.weight", ck.tensor("model.embed_tokens.weight").floats())
        for i in 0..<2 {
            // No permutation for qwen2: rows compare in source order.
            for (g, h) in [("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj")] {
                XCTAssertEqual(f.tensorInfo("blk.\(i).\(g).bias")?.type, .f32)
                try assertClose(f, "blk.\(i).\(g).weight", ck.tensor("model.layers.\(i).self_attn.\(h).weight").floats())
                try assertClose(f, "blk.\(i).\(g).bias", ck.tensor("model.layers.\(i).self_attn.\(h).bias").floats())
            }
            try assertClose(f, "blk.\(i).ffn_down.weight", ck.tensor("model.layers.\(i).mlp.down_proj.weight").floats())
        }
        XCTAssertEqual(f.tensors.count, 1 + 1 + 2 * 12)
    }

    /// The tokenizer keys come from TokenizerImport, in the order it returns them, after the model keys.
    func testTokenizerKeys() throws {
        for (dir, model) in [("qwen2", "gpt2"), ("llava-4x", "llama")] {
            let src = try Self.hfDirectory(dir)
            let expected = try TokenizerImport.metadata(modelDirectory: src)
            let (out, _, _) = try convert(src, .q8_0, mmproj: dir.hasPrefix("llava"))
            let m = try GGUFFile(path: out).metadata
            XCTAssertEqual(try m.string("tokenizer.ggml.model"), model)
            XCTAssertEqual(try m.strings("tokenizer.ggml.tokens").count, dir == "qwen2" ? 400 : 401)
            XCTAssertEqual(Array(m.keys.suffix(expected.count)), expected.map(\.key))
            for (k, v) in expected { XCTAssertEqual(m[k], v, k) }
        }
    }

    // MARK: independent check with gguf-py

    func testGGUFPyIndependentCheck() throws {
        var files: [[String]] = []
        for (dir, type) in [("llava-4x", QuantType.q4_0), ("llava-5x", .f16), ("llava-5x", .q8_0)] {
            let src = try Self.hfDirectory(dir)
            let (out, mm, _) = try convert(src, type)
            files.append([src, out, mm!])
        }
        let qwen = try Self.hfDirectory("qwen2")
        files.append([qwen, try convert(qwen, .q8_0, mmproj: false).text])
        // Llama 3 rope scaling (rope_freqs.weight) and a tied embedding without lm_head.
        let rope = #", "tie_word_embeddings": true, "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 2048}"#
        let llama3 = try writeTinyLlama("llama3-gguf-py", extraConfig: rope).dir
        files.append([llama3, try convert(llama3, .q8_0, mmproj: false).text])
        let yarn = try writeTinyLlama("yarn-gguf-py", extraConfig: #", "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}"#, lmHead: true).dir
        files.append([yarn, try convert(yarn, .q4_0, mmproj: false).text])
        // K-quants: widths 256 and 512 (K blocks) and a 288-wide model (llama.cpp's fallbacks), as llama.cpp's mixes
        // and as single types.
        let wide = try writeTinyLlama("k-wide", lmHead: true, hidden: 256, feedForward: 512, layers: 3).dir
        let odd = try writeTinyLlama("k-odd", hidden: 288, feedForward: 544, layers: 2).dir
        for (dir, name) in [(wide, "q4_k_m"), (wide, "q5_k_s"), (wide, "q6_k"), (wide, "q4_k"), (odd, "q4_k_m"), (odd, "q5_k_m")] {
            let out = temp.appendingPathComponent("\(URL(fileURLWithPath: dir).lastPathComponent)-\(name).gguf").path
            _ = try Converter.run(ConvertOptions(source: dir, output: out, policy: try TypePolicy(named: name), threads: 2)) { _ in }
            files.append([dir, out])
        }
        try Self.requirePython()
        // One interpreter for all checks (gguf-py's import is most of the time).
        let args = ["tools/check_convert.py"] + files.joined(separator: ["--"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        p.currentDirectoryURL = FormatFixtures.repoRoot
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "python3 \(args.joined(separator: " ")):\n\(output)")
        XCTAssertEqual(output.components(separatedBy: "0 problem(s)").count - 1, files.count, output)
    }

    /// Fails (never skips) with the setup command when python3, gguf or numpy is missing.
    static func requirePython(file: StaticString = #filePath, line: UInt = #line) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import gguf, numpy"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        var ok = false
        if (try? p.run()) != nil {
            p.waitUntilExit()
            ok = p.terminationStatus == 0
        }
        if !ok {
            XCTFail("python3 with the gguf and numpy packages is required for tools/check_convert.py: run tools/setup.sh --dev",
                    file: file, line: line)
            throw XCTSkip("python3/gguf/numpy missing (reported as a failure above)")
        }
    }

    // MARK: vision encoders alone (synthetic checkpoints with transformers' tensor names)

    /// Writes an F32 safetensors file of seeded pseudo-random values; returns the values by name.
    @discardableResult
    func writeCheckpoint(_ dir: String, config: String, tensors: [(String, [Int])]) throws -> [String: [Float]] {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        var header: [String: Any] = [:]
        var data = Data()
        var values: [String: [Float]] = [:]
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for (name, shape) in tensors {
            let n = shape.reduce(1, *)
            var v = [Float](repeating: 0, count: n)
            for i in 0..<n {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                v[i] = Float(Int32(truncatingIfNeeded: seed >> 33)) / Float(1 << 31) * 0.1
            }
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [data.count, data.count + 4 * n]]
            v.withUnsafeBytes { data.append(contentsOf: $0) }
            values[name] = v
        }
        let json = try JSONSerialization.data(withJSONObject: header)
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(data)
        try file.write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        return values
    }

    func testVisionEncoders() throws {
        let D = 32, F = 64, P = 8
        let common = "\"hidden_size\": \(D), \"intermediate_size\": \(F), \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"image_size\": 32, \"patch_size\": \(P)"
        // family → (config, [(HF name, shape, GGUF name)]); per-layer names expanded for layers 0 and 1.
        func layer(_ i: Int, _ pre: String, _ names: [(String, String)], ff: Int) -> [(String, [Int], String)] {
            var out: [(String, [Int], String)] = []
            for (h, g) in names {
                let shape: [Int] = g == "ffn_up" ? [ff, D] : g == "ffn_down" ? [D, ff] : g.hasPrefix("ln") ? [D] : [D, D]
                if g.hasPrefix("ls") { out.append(("\(pre)\(i).\(h)", [D], "v.blk.\(i).\(g).weight")); continue }
                out.append(("\(pre)\(i).\(h).weight", shape, "v.blk.\(i).\(g).weight"))
                out.append(("\(pre)\(i).\(h).bias", [shape[0]], "v.blk.\(i).\(g).bias"))
            }
            return out
        }
        let clipLayer = [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                         ("self_attn.out_proj", "attn_out"), ("layer_norm1", "ln1"), ("layer_norm2", "ln2"),
                         ("mlp.fc1", "ffn_up"), ("mlp.fc2", "ffn_down")]
        let dinoLayer = [("attention.attention.query", "attn_q"), ("attention.attention.key", "attn_k"),
                         ("attention.attention.value", "attn_v"), ("attention.output.dense", "attn_out"),
                         ("norm1", "ln1"), ("norm2", "ln2"), ("mlp.fc1", "ffn_up"), ("mlp.fc2", "ffn_down"),
                         ("layer_scale1.lambda1", "ls1"), ("layer_scale2.lambda1", "ls2")]
        let cases: [(String, String, [(String, [Int], String)], [Float], Bool)] = [
            ("CLIPVisionModel", "{\"architectures\": [\"CLIPVisionModel\"], \"model_type\": \"clip_vision_model\", \(common)}",
             [("vision_model.embeddings.class_embedding", [D], "v.class_embd"),
              ("vision_model.embeddings.patch_embedding.weight", [D, 3, P, P], "v.patch_embd.weight"),
              ("vision_model.embeddings.position_embedding.weight", [17, D], "v.position_embd.weight"),
              ("vision_model.pre_layrnorm.weight", [D], "v.pre_ln.weight"), ("vision_model.pre_layrnorm.bias", [D], "v.pre_ln.bias"),
              ("vision_model.post_layernorm.weight", [D], "v.post_ln.weight"), ("vision_model.post_layernorm.bias", [D], "v.post_ln.bias")]
                + layer(0, "vision_model.encoder.layers.", clipLayer, ff: F) + layer(1, "vision_model.encoder.layers.", clipLayer, ff: F),
             [0.48145466, 0.4578275, 0.40821073], false),
            ("SiglipVisionModel", "{\"architectures\": [\"SiglipVisionModel\"], \"model_type\": \"siglip_vision_model\", \(common)}",
             [("embeddings.patch_embedding.weight", [D, 3, P, P], "v.patch_embd.weight"),
              ("embeddings.patch_embedding.bias", [D], "v.patch_embd.bias"),
              ("embeddings.position_embedding.weight", [16, D], "v.position_embd.weight"),
              ("post_layernorm.weight", [D], "v.post_ln.weight"), ("post_layernorm.bias", [D], "v.post_ln.bias"),
              ("head.probe", [1, 1, D], "")]
                + layer(0, "encoder.layers.", clipLayer, ff: F) + layer(1, "encoder.layers.", clipLayer, ff: F),
             [0.5, 0.5, 0.5], true),
            ("Dinov2Model", "{\"architectures\": [\"Dinov2Model\"], \"model_type\": \"dinov2\", \"mlp_ratio\": 4, \(common)}",
             [("embeddings.cls_token", [1, 1, D], "v.class_embd"), ("embeddings.mask_token", [1, D], ""),
              ("embeddings.patch_embeddings.projection.weight", [D, 3, P, P], "v.patch_embd.weight"),
              ("embeddings.patch_embeddings.projection.bias", [D], "v.patch_embd.bias"),
              ("embeddings.position_embeddings", [1, 17, D], "v.position_embd.weight"),
              ("layernorm.weight", [D], "v.post_ln.weight"), ("layernorm.bias", [D], "v.post_ln.bias")]
                + layer(0, "encoder.layer.", dinoLayer, ff: 4 * D) + layer(1, "encoder.layer.", dinoLayer, ff: 4 * D),
             [0.485, 0.456, 0.406], true),
        ]
        for (arch, config, tensors, mean, gelu) in cases {
            let dir = temp.appendingPathComponent(arch).path
            let values = try writeCheckpoint(dir, config: config, tensors: tensors.map { ($0.0, $0.1) })
            var notes: [String] = []
            let (out, _, _) = try convert(dir, .q8_0, mmproj: false, notes: &notes)
            let f = try GGUFFile(path: out)
            XCTAssertEqual(try f.metadata.string("general.architecture"), "clip", arch)
            XCTAssertEqual(try f.metadata.bool("clip.has_llava_projector"), false, arch)
            XCTAssertEqual(try f.metadata.int("clip.vision.block_count"), 2, arch)
            XCTAssertEqual(try f.metadata.bool("clip.use_gelu"), gelu, arch)
            XCTAssertEqual(try f.metadata.string("vzquant.vision.family"),
                           ["CLIPVisionModel": "clip", "SiglipVisionModel": "siglip", "Dinov2Model": "dinov2"][arch], arch)
            XCTAssertEqual(try f.metadata.string("vzquant.vision.hidden_act"),
                           ["CLIPVisionModel": "quick_gelu", "SiglipVisionModel": "gelu_pytorch_tanh", "Dinov2Model": "gelu"][arch], arch)
            XCTAssertEqual(try f.metadata.floats("clip.vision.image_mean"), mean, arch)
            XCTAssertNil(f.metadata["vzquant.vision.feature_layer"], "standalone encoders keep every layer")
            let written = tensors.filter { !$0.2.isEmpty }
            XCTAssertEqual(Set(f.tensors.map(\.name)), Set(written.map(\.2)), arch)
            for (h, _, g) in written { try assertClose(f, g, values[h]!) }
            XCTAssertEqual(f.tensorInfo("v.class_embd")?.dims ?? [D], [D], "DINOv2's [1, 1, D] class token is stored as [D]")
            XCTAssertEqual(notes.contains { $0.contains("skipped 1 source tensor") }, tensors.contains { $0.2.isEmpty }, "\(arch): \(notes)")
        }
    }

    // MARK: Llama-family checkpoints made here (Llama 3 rope scaling, tied embeddings, padded vocabularies)

    /// A one-layer LlamaForCausalLM (hidden 64, 4 heads, 2 KV heads, head_dim 16) with `extraConfig` members
    /// added to config.json and the tokenizer files of fixture `tokenizer`; lm_head only when `lmHead`.
    @discardableResult
    func writeTinyLlama(_ name: String, extraConfig: String = "", vocab: Int = 400, tokenizer: String = "qwen2",
                        lmHead: Bool = false, hidden h: Int = 64, feedForward f: Int = 128,
                        layers: Int = 1) throws -> (dir: String, values: [String: [Float]]) {
        let dir = temp.appendingPathComponent(name).path
        let config = """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": \(h), "intermediate_size": \(f),
             "num_hidden_layers": \(layers), "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": \(vocab),
             "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 10000.0\(extraConfig)}
            """
        var tensors: [(String, [Int])] = [("model.embed_tokens.weight", [vocab, h])]
        let layer: [(String, [Int])] = [
            ("input_layernorm.weight", [h]), ("self_attn.q_proj.weight", [h, h]), ("self_attn.k_proj.weight", [h / 2, h]),
            ("self_attn.v_proj.weight", [h / 2, h]), ("self_attn.o_proj.weight", [h, h]),
            ("post_attention_layernorm.weight", [h]), ("mlp.gate_proj.weight", [f, h]),
            ("mlp.up_proj.weight", [f, h]), ("mlp.down_proj.weight", [h, f]),
        ]
        for i in 0..<layers { tensors += layer.map { ("model.layers.\(i).\($0.0)", $0.1) } }
        tensors.append(("model.norm.weight", [h]))
        if lmHead { tensors.append(("lm_head.weight", [vocab, h])) }
        let values = try writeCheckpoint(dir, config: config, tensors: tensors)
        let from = try Self.hfDirectory(tokenizer)
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: from + "/" + f, toPath: dir + "/" + f)
        }
        return (dir, values)
    }

    /// Llama 3.1/3.2 rope scaling: no rope.scaling keys, a rope_freqs.weight F32 tensor of head_dim/2 factors,
    /// checked against the formula evaluated here in double precision.
    func testLlama3RopeFreqs() throws {
        let (factor, low, high, original, base) = (8.0, 1.0, 4.0, 2048, 10000.0)
        for key in ["rope_scaling", "rope_parameters"] {
            let rope = """
                "\(key)": {"rope_type": "llama3", "factor": \(factor), "low_freq_factor": \(low), "high_freq_factor": \(high), \
                "original_max_position_embeddings": \(original)\(key == "rope_parameters" ? ", \"rope_theta\": \(base)" : "")}
                """
            let (dir, _) = try writeTinyLlama("llama3-\(key)", extraConfig: ", \"tie_word_embeddings\": true, " + rope)
            let (out, _, _) = try convert(dir, .q8_0, mmproj: false)
            let f = try GGUFFile(path: out)
            let info = try XCTUnwrap(f.tensorInfo("rope_freqs.weight"), key)
            XCTAssertEqual(info.type, .f32)
            XCTAssertEqual(info.dims, [8])
            XCTAssertEqual(f.tensors.first?.name, "rope_freqs.weight", "written first, as convert_hf_to_gguf.py does")
            XCTAssertFalse(f.metadata.keys.contains { $0.hasPrefix("llama.rope.scaling") },
                           "llama.cpp asserts on an unknown rope.scaling.type such as 'llama3': \(f.metadata.keys)")
            let got = try f.floats(of: "rope_freqs.weight")
            // Independent evaluation: θ_k = base^(−2k/d), λ_k = 2π/θ_k; keep 1 below original/high, factor above
            // original/low, interpolate smoothly in between.
            var expected: [Double] = []
            for k in 0..<8 {
                let wavelength = 2 * Double.pi * pow(base, Double(2 * k) / 16)
                if wavelength < Double(original) / high {
                    expected.append(1)
                } else if wavelength > Double(original) / low {
                    expected.append(factor)
                } else {
                    let s = (Double(original) / wavelength - low) / (high - low)
                    expected.append(1 / ((1 - s) / factor + s))
                }
            }
            // With these numbers: λ = 6.3 … 198.7 keep 1, 628 and 1987 fall in the smooth band, 6283 and 19869 get 8.
            XCTAssertEqual(expected.filter { $0 != 1 && $0 != factor }.count, 2, "the test covers the smooth band")
            for (g, e) in zip(got, expected) { XCTAssertEqual(Double(g), e, accuracy: e * 2e-6, key) }
        }
    }

    /// linear and yarn scaling: the keys and types gguf-py's writer uses (…rope.scaling.type/factor/
    /// original_context_length and the yarn extras); no rope_freqs tensor. Unknown types write nothing.
    func testRopeScalingMetadata() throws {
        let cases: [(String, String, [(String, GGUFValue)])] = [
            ("linear", #""rope_scaling": {"type": "linear", "factor": 2.0}"#,
             [("type", .string("linear")), ("factor", .float32(2))]),
            ("yarn", #""rope_scaling": {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 32768, "beta_fast": 32, "beta_slow": 1, "attention_factor": 1.25}"#,
             [("type", .string("yarn")), ("factor", .float32(4)), ("original_context_length", .uint32(32768)),
              ("yarn_attn_factor", .float32(1.25)), ("yarn_beta_fast", .float32(32)), ("yarn_beta_slow", .float32(1))]),
            ("dynamic", #""rope_scaling": {"type": "dynamic", "factor": 2.0}"#, []),
            ("default", #""rope_scaling": {"rope_type": "default"}"#, []),
            ("null", #""rope_scaling": null"#, []),
        ]
        for (name, rope, want) in cases {
            let (dir, _) = try writeTinyLlama("rope-\(name)", extraConfig: ", \"tie_word_embeddings\": true, " + rope)
            let (out, _, _) = try convert(dir, .f16, mmproj: false)
            let f = try GGUFFile(path: out)
            let keys = f.metadata.keys.filter { $0.hasPrefix("llama.rope.scaling.") }
            XCTAssertEqual(keys, want.map { "llama.rope.scaling." + $0.0 }, name)
            for (k, v) in want { XCTAssertEqual(f.metadata["llama.rope.scaling." + k], v, "\(name) \(k)") }
            XCTAssertNil(f.tensorInfo("rope_freqs.weight"), name)
        }
        let (dir, _) = try writeTinyLlama("rope-longrope", extraConfig: #", "rope_scaling": {"type": "longrope", "factor": 2.0}"#)
        try assertFails(dir, mmproj: false, contains: ["longrope"])
        let (yarn, _) = try writeTinyLlama("rope-yarn-noctx", extraConfig: #", "rope_scaling": {"type": "yarn", "factor": 2.0}"#)
        try assertFails(yarn, mmproj: false, contains: ["yarn", "original_max_position_embeddings"])
    }

    /// SmolLM2 / Llama-3.2-1B: tie_word_embeddings true and no lm_head.weight → no output.weight (llama.cpp then
    /// uses token_embd). A config that does not say so but has no lm_head is treated the same way, with a note.
    func testTiedEmbeddingsWithoutLmHead() throws {
        for (name, extra, expectNote) in [("tied", #", "tie_word_embeddings": true"#, false), ("unsaid", "", true)] {
            let (dir, values) = try writeTinyLlama("smol-\(name)", extraConfig: extra)
            var notes: [String] = []
            let (out, _, _) = try convert(dir, .q8_0, mmproj: false, notes: &notes)
            let f = try GGUFFile(path: out)
            XCTAssertNil(f.tensorInfo("output.weight"), name)
            XCTAssertEqual(f.tensors.count, 1 + 9 + 1, name)
            try assertClose(f, "token_embd.weight", values["model.embed_tokens.weight"]!)
            try assertClose(f, "blk.0.attn_q.weight", values["model.layers.0.self_attn.q_proj.weight"]!, heads: 4)
            try assertClose(f, "blk.0.attn_k.weight", values["model.layers.0.self_attn.k_proj.weight"]!, heads: 2)
            XCTAssertEqual(notes.contains { $0.contains("no lm_head.weight") }, expectNote, "\(name): \(notes)")
            XCTAssertFalse(notes.contains { $0.contains("skipped") }, "\(name): \(notes)")
        }
        // Untied with an lm_head: output.weight is its copy.
        let (dir, values) = try writeTinyLlama("untied", lmHead: true)
        let f = try GGUFFile(path: try convert(dir, .f32, mmproj: false).text)
        try assertClose(f, "output.weight", values["lm_head.weight"]!)
        // Tied but the checkpoint saved lm_head anyway: not written, not reported as unused.
        let (both, _) = try writeTinyLlama("tied-with-head", extraConfig: #", "tie_word_embeddings": true"#, lmHead: true)
        var notes: [String] = []
        let g = try GGUFFile(path: try convert(both, .f32, mmproj: false, notes: &notes).text)
        XCTAssertNil(g.tensorInfo("output.weight"))
        XCTAssertFalse(notes.contains { $0.contains("skipped") }, "\(notes)")
    }

    /// A byte-fallback BPE tokenizer.json (LlamaHfVocab) with fewer tokens than the embedding has rows (LLaVA-1.5
    /// has 32002 tokens for 32064 rows): llama.cpp's converter writes the 401 tokens and its loader then rejects
    /// token_embd; we pad to the rows with [PADi] (type unused, score -1000) so the file loads.
    func testByteFallbackVocabularyPaddedToEmbeddingRows() throws {
        let (dir, _) = try writeTinyLlama("padded", extraConfig: #", "tie_word_embeddings": true"#, vocab: 416,
                                          tokenizer: "llava-4x")
        XCTAssertEqual(try TokenizerImport.metadata(modelDirectory: dir).first { $0.key == "tokenizer.ggml.tokens" }
            .map { if case let .array(_, l) = $0.value { l.count } else { -1 } }, 401, "llama.cpp's own list: not padded")
        let (out, _, _) = try convert(dir, .q8_0, mmproj: false)
        let m = try GGUFFile(path: out).metadata
        let tokens = try m.strings("tokenizer.ggml.tokens")
        XCTAssertEqual(tokens.count, 416)
        XCTAssertEqual(try m.int("llama.vocab_size"), 416)
        XCTAssertEqual(tokens[400], "<image>")
        XCTAssertEqual(Array(tokens[401...]), (401..<416).map { "[PAD\($0)]" })
        guard case let .array(_, types)? = m["tokenizer.ggml.token_type"], case let .array(_, scores)? = m["tokenizer.ggml.scores"] else {
            return XCTFail("no token types / scores")
        }
        XCTAssertEqual(types.count, 416)
        XCTAssertEqual(Array(types[401...]), Array(repeating: .int32(5), count: 15))
        XCTAssertEqual(scores.count, 416)
        XCTAssertEqual(scores.last, .float32(-1000))
        XCTAssertEqual(try GGUFFile(path: out).tensorInfo("token_embd.weight")?.dims, [64, 416])

        // More tokens than rows cannot be fixed: one clear error.
        let (small, _) = try writeTinyLlama("too-small", extraConfig: #", "tie_word_embeddings": true"#, vocab: 400,
                                            tokenizer: "llava-4x")
        try assertFails(small, mmproj: false, contains: ["401 tokens", "400"])
    }

    // MARK: sharded checkpoints

    /// The qwen2 fixture split over two safetensors shards + model.safetensors.index.json converts to the same
    /// GGUF: same metadata (but general.name, which comes from the directory), tensor infos and tensor bytes.
    func testShardedCheckpointSameAsSingleFile() throws {
        let src = try Self.hfDirectory("qwen2")
        let sharded = temp.appendingPathComponent("qwen2-sharded").path
        try FileManager.default.createDirectory(atPath: sharded, withIntermediateDirectories: true)
        for f in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: src + "/" + f, toPath: sharded + "/" + f)
        }
        // Split the tensors in turn over two shards, written here: u64 header length, JSON header, data.
        let data = try Data(contentsOf: URL(fileURLWithPath: src + "/model.safetensors"))
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
        let names = header.keys.filter { $0 != "__metadata__" }.sorted()
        XCTAssertGreaterThan(names.count, 2)
        var weightMap: [String: String] = [:]
        for shard in 0..<2 {
            let file = "model-0000\(shard + 1)-of-00002.safetensors"
            var h: [String: Any] = ["__metadata__": ["format": "pt"]]
            var body = Data()
            for (i, name) in names.enumerated() where i % 2 == shard {
                var e = try XCTUnwrap(header[name] as? [String: Any])
                let off = try XCTUnwrap(e["data_offsets"] as? [Int])
                let bytes = data.subdata(in: (8 + n + off[0])..<(8 + n + off[1]))
                e["data_offsets"] = [body.count, body.count + bytes.count]
                body.append(bytes)
                h[name] = e
                weightMap[name] = file
            }
            let json = try JSONSerialization.data(withJSONObject: h, options: [.sortedKeys])
            var out = Data()
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
            out.append(json)
            out.append(body)
            try out.write(to: URL(fileURLWithPath: sharded + "/" + file))
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": data.count - 8 - n], "weight_map": weightMap],
                                               options: [.sortedKeys])
        try index.write(to: URL(fileURLWithPath: sharded + "/model.safetensors.index.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: sharded + "/model.safetensors"))

        for type in [QuantType.q4_0, .f16] {
            let a = try GGUFFile(path: try convert(src, type, mmproj: false).text)
            let b = try GGUFFile(path: try convert(sharded, type, mmproj: false).text)
            XCTAssertEqual(a.metadata.keys, b.metadata.keys)
            for k in a.metadata.keys where k != "general.name" { XCTAssertEqual(a.metadata[k], b.metadata[k], k) }
            XCTAssertEqual(a.tensors.map { "\($0.name) \($0.dims) \($0.type)" }, b.tensors.map { "\($0.name) \($0.dims) \($0.type)" })
            for t in a.tensors {
                XCTAssertTrue(a.bytes(of: t).elementsEqual(try b.bytes(of: t.name)), "\(type) \(t.name): bytes differ")
            }
        }
    }

    // MARK: re-quantizing a GGUF

    func testRequantizeGGUF() throws {
        let src = try Self.hfDirectory("llava-4x")
        let (f16, mm16, _) = try convert(src, .f16)
        let q4 = temp.appendingPathComponent("requant-q4_0.gguf").path
        _ = try Converter.run(ConvertOptions(source: f16, output: q4, policy: TypePolicy(type: .q4_0), threads: 3))
        let a = try GGUFFile(path: f16), b = try GGUFFile(path: q4)
        XCTAssertEqual(try b.metadata.int("general.file_type"), 2)
        XCTAssertEqual(a.tensors.map { "\($0.name) \($0.dims)" }, b.tensors.map { "\($0.name) \($0.dims)" })
        for key in a.metadata.keys where key != "general.file_type" { XCTAssertEqual(a.metadata[key], b.metadata[key], key) }
        for t in b.tensors {
            XCTAssertEqual(t.type, t.dims.count == 1 ? .f32 : t.name == "token_embd.weight" ? .q8_0 : .q4_0, t.name)
            // Already permuted in the source file: compared in place.
            try assertClose(b, t.name, a.floats(of: t.name))
        }
        // The mmproj re-quantizes too (patch embedding stays f16, position embedding f32).
        let mmq8 = temp.appendingPathComponent("requant-mmproj-q8_0.gguf").path
        _ = try Converter.run(ConvertOptions(source: mm16!, output: mmq8, policy: TypePolicy(type: .q8_0)))
        let v = try GGUFFile(path: mmq8)
        XCTAssertEqual(v.tensorInfo("v.patch_embd.weight")?.type, .f16)
        XCTAssertEqual(v.tensorInfo("v.position_embd.weight")?.type, .f32)
        XCTAssertEqual(v.tensorInfo("mm.0.weight")?.type, .q8_0)
        XCTAssertEqual(v.metadata["vzquant.vision.feature_layer"], .int32(-2))
    }

    // MARK: type policy

    func testTypePolicy() throws {
        let p = try TypePolicy(type: .q4_0)
        XCTAssertEqual(p.choose(role: .matrix, dims: [64, 10]).0, .q4_0)
        let (t, note) = p.choose(role: .matrix, dims: [48, 10])
        XCTAssertEqual(t, .f16)
        XCTAssertNotNil(note)
        XCTAssertEqual(p.choose(role: .tokenEmbedding, dims: [64, 10]).0, .q8_0)
        XCTAssertEqual(try TypePolicy(type: .q4_0, tokenEmbeddingType: .q4_0).choose(role: .tokenEmbedding, dims: [64, 10]).0, .q4_0)
        XCTAssertEqual(p.choose(role: .vector, dims: [64]).0, .f32)
        XCTAssertEqual(p.choose(role: .positionEmbedding, dims: [64, 17]).0, .f32)
        XCTAssertEqual(p.choose(role: .patchEmbedding, dims: [8, 8, 3, 64]).0, .f16)
        XCTAssertEqual(try TypePolicy(type: .f32).choose(role: .patchEmbedding, dims: [8, 8, 3, 64]).0, .f32)
        XCTAssertThrowsError(try TypePolicy(type: .bf16))

        // --token-embedding-type reaches the file.
        let (out, _, _) = try convert(try Self.hfDirectory("qwen2"), .q4_0, mmproj: false, tokenEmbedding: .f16)
        XCTAssertEqual(try GGUFFile(path: out).tensorInfo("token_embd.weight")?.type, .f16)
    }

    // MARK: errors: one clear line, nothing left behind

    /// A copy of a fixture directory that the test may corrupt.
    func copyFixture(_ name: String) throws -> String {
        let dst = temp.appendingPathComponent("src-\(name)")
        try FileManager.default.copyItem(atPath: try Self.hfDirectory(name), toPath: dst.path)
        return dst.path
    }

    func assertFails(_ source: String, mmproj: Bool = true, contains: [String], line: UInt = #line) throws {
        let outDir = temp.appendingPathComponent("out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
        let options = ConvertOptions(source: source, output: outDir.appendingPathComponent("m.gguf").path,
                                     mmprojOutput: mmproj ? outDir.appendingPathComponent("mm.gguf").path : nil,
                                     policy: try TypePolicy(type: .q4_0))
        XCTAssertThrowsError(try Converter.run(options), line: line) { error in
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", line: line)
            for c in contains { XCTAssertTrue(text.contains(c), "'\(c)' not in: \(text)", line: line) }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outDir.path), [], "no output left", line: line)
    }

    func testUnknownArchitecture() throws {
        let dir = try copyFixture("qwen2")
        let cfg = dir + "/config.json"
        let text = try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: "Qwen2ForCausalLM", with: "GPT2LMHeadModel")
        try text.write(toFile: cfg, atomically: true, encoding: .utf8)
        try assertFails(dir, contains: ["GPT2LMHeadModel", "LlavaForConditionalGeneration", "Dinov2Model"])
    }

    func testMissingConfig() throws {
        let dir = try copyFixture("qwen2")
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        try assertFails(dir, contains: ["config.json"])
    }

    func testTruncatedSafetensors() throws {
        let dir = try copyFixture("llava-5x")
        let path = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 1000).write(to: URL(fileURLWithPath: path))
        try assertFails(dir, contains: ["model.safetensors", "runs past the end"])
    }

    func testWrongTensorShape() throws {
        // Same bytes, another shape: q_proj [64, 64] relabelled [32, 128] (the header is rewritten).
        let dir = try copyFixture("llava-4x")
        let path = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
        let name = "language_model.model.layers.1.self_attn.q_proj.weight"
        var entry = try XCTUnwrap(header[name] as? [String: Any])
        entry["shape"] = [32, 128]
        header[name] = entry
        let json = try JSONSerialization.data(withJSONObject: header)
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(data.subdata(in: (8 + n)..<data.count))
        try out.write(to: URL(fileURLWithPath: path))
        try assertFails(dir, contains: [name, "[32, 128]", "[64, 64]"])
    }

    func testMissingTensor() throws {
        let dir = try copyFixture("qwen2")
        let path = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any])
        header.removeValue(forKey: "model.layers.1.mlp.up_proj.weight")
        let json = try JSONSerialization.data(withJSONObject: header)
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(data.subdata(in: (8 + n)..<data.count))
        try out.write(to: URL(fileURLWithPath: path))
        try assertFails(dir, contains: ["blk.1.ffn_up.weight", "layers.1.mlp.up_proj.weight"])
    }

    func testLlavaNeedsMmprojOut() throws {
        try assertFails(try Self.hfDirectory("llava-4x"), mmproj: false, contains: ["mmproj output", "LlavaForConditionalGeneration"])
    }

    /// Every shape is checked against config.json before anything is written: a bad text config fails the pair.
    func testTextShapeErrorWritesNeitherFile() throws {
        let dir = try copyFixture("llava-5x")
        let cfg = dir + "/config.json"
        let text = try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: "\"intermediate_size\": 128", with: "\"intermediate_size\": 96")
        try text.write(toFile: cfg, atomically: true, encoding: .utf8)
        try assertFails(dir, contains: ["mlp.gate_proj.weight", "[96, 64]"])
    }

    /// The mmproj is written (to a temporary) first; when writing the text model then fails, the mmproj
    /// temporary is removed and neither file appears.
    func testNoPartialPairWhenTextWriteFails() throws {
        let outDir = temp.appendingPathComponent("pair")
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
        let options = ConvertOptions(source: try Self.hfDirectory("llava-4x"),
                                     output: temp.appendingPathComponent("no-such-dir/m.gguf").path,
                                     mmprojOutput: outDir.appendingPathComponent("mm.gguf").path, policy: try TypePolicy(type: .q8_0))
        XCTAssertThrowsError(try Converter.run(options)) { XCTAssertFalse("\($0)".contains("\n")) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outDir.path), [])
    }
}

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

/// The model graph beyond LLaVA's basics: memory while loading, projector types, pruned and rope-scaled decoders.
final class ModelGraphTests: XCTestCase {
    // MARK: memory

    /// kB figures of /proc/self/status (Linux only).
    static func status(_ key: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return Int(line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    struct LoadMemory { var anonGrowth = 0, fileGrowth = 0, weights = 0, arena = 0, hwm = 0 }

    /// Growth of anonymous and file-backed RSS (bytes) while loading `path` as a LlamaModel, with or without giving
    /// the file's pages back. The two are apart because only file pages depend on the release; anonymous memory
    /// also carries what the allocator kept from earlier tests.
    func loadMemory(_ path: String, release: Bool) throws -> LoadMemory {
        GGUFWeights.releasesFilePages = release
        defer { GGUFWeights.releasesFilePages = true }
        let anon0 = try XCTUnwrap(Self.status("RssAnon")), file0 = try XCTUnwrap(Self.status("RssFile"))
        let lm = try LlamaModel(path: path, maxContext: 64, maxBatch: 16)
        let anon1 = try XCTUnwrap(Self.status("RssAnon")), file1 = try XCTUnwrap(Self.status("RssFile"))
        return LoadMemory(anonGrowth: (anon1 - anon0) * 1024, fileGrowth: (file1 - file0) * 1024, weights: lm.weightBytes,
                          arena: lm.arenaBytes, hwm: try XCTUnwrap(Self.status("VmHWM")) * 1024)
    }

    /// Loading keeps one copy of the weights: the packed one. SmolLM2's Q4_1 file (98 MB) is packed at its size; the
    /// mapped pages of each tensor are given back after packing, so the file adds (almost) nothing to RSS.
    func testLoadingKeepsOneCopyOfWeights() throws {
        #if os(Linux)
        guard let path = SmolLM2Tests.modelPath() else { throw XCTSkip("\(SmolLM2Tests.fileName) not found (tools/setup.sh --dev)") }
        let fileBytes = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        let released = try loadMemory(path, release: true)
        let kept = try loadMemory(path, release: false)
        let mb = { (b: Int) in String(format: "%.1f MB", Double(b) / 1e6) }
        print("smollm2 load (file \(mb(fileBytes))): packed weights \(mb(released.weights)), arena \(mb(released.arena)); "
              + "file-backed RSS growth \(mb(kept.fileGrowth)) keeping pages, \(mb(released.fileGrowth)) giving them back; "
              + "anonymous growth \(mb(released.anonGrowth)); VmHWM \(mb(released.hwm))")
        // Without the release every page of the file stays mapped in; with it, at most a few partial pages do.
        XCTAssertGreaterThan(Double(kept.fileGrowth), 0.5 * Double(fileBytes))
        XCTAssertLessThan(Double(released.fileGrowth), 0.05 * Double(fileBytes))
        XCTAssertLessThan(Double(released.anonGrowth + released.fileGrowth), 1.3 * Double(released.weights) + Double(released.arena))
        #else
        throw XCTSkip("reads /proc/self/status")
        #endif
    }

    /// The KV cache is reserved, not committed: a cache for 400,000 positions costs resident memory only for the
    /// positions filled (the arena is an anonymous mapping; before, it was zero-filled at load).
    func testKVCacheIsCommittedOnlyAsPositionsFill() throws {
        #if os(Linux)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-kv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("llava-f32.gguf").path
        _ = try Converter.run(ConvertOptions(source: try LlavaModelTests.fixture("hf/llava-4x").path, output: out,
                                             mmprojOutput: dir.appendingPathComponent("mmproj.gguf").path, policy: try TypePolicy(type: .f32), threads: 2))
        let before = try XCTUnwrap(MemoryProbe.rssBytes())
        let model = try LlamaModel(path: out, maxContext: 400_000, maxBatch: 16)
        XCTAssertGreaterThan(model.kvCacheBytes, 100_000_000, "the planned cache is large")
        _ = try model.prefill(embeddings: try model.embeddings([Int32](repeating: 5, count: 16)), lastOnly: true)
        let after = try XCTUnwrap(MemoryProbe.rssBytes())
        print("KV cache planned \(model.kvCacheBytes / 1_000_000) MB for 400000 positions; RSS grew \((after - before) / 1_000_000) MB after 16")
        XCTAssertLessThan(after - before, model.kvCacheBytes / 10)
        #else
        throw XCTSkip("reads /proc/self/status")
        #endif
    }

    /// The converted tiny LLaVA text model, for the record only: its tensors are a few pages, so the release
    /// (whole pages inside a tensor) has little to give back.
    func testLoadingTinyLlavaMemoryReport() throws {
        #if os(Linux)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-graph-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("llava-f32.gguf").path
        _ = try Converter.run(ConvertOptions(source: try LlavaModelTests.fixture("hf/llava-4x").path, output: out,
                                             mmprojOutput: dir.appendingPathComponent("mmproj.gguf").path, policy: try TypePolicy(type: .f32), threads: 2))
        let released = try loadMemory(out, release: true)
        let kept = try loadMemory(out, release: false)
        print("llava-4x f32 load: packed weights \(released.weights) B, arena \(released.arena) B; file-backed RSS growth "
              + "\(kept.fileGrowth) B keeping pages, \(released.fileGrowth) B giving them back")
        XCTAssertLessThanOrEqual(released.fileGrowth, kept.fileGrowth)
        #else
        throw XCTSkip("reads /proc/self/status")
        #endif
    }
}

// MARK: - projectors

extension ModelGraphTests {
    static func graph(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: LlavaModelTests.fixture("models/graph/\(name).bin"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func maxAbs(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(a.count, b.count, "sizes", file: file, line: line)
        return a.count == b.count ? zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } : .infinity
    }

    /// Idefics3's connector from a file written by the gguf package with llama.cpp's keys, against transformers'
    /// Idefics3Connector: the pixel shuffle exactly, the projection within 1e-4.
    func testIdefics3ConnectorMatchesTransformers() throws {
        for (s, width, out) in [(2, 32, 48), (3, 32, 40)] {
            let file = try GGUFFile(path: LlavaModelTests.fixture("models/graph/idefics3_s\(s).gguf").path)
            let projector = try Projector(file: file)
            XCTAssertEqual(projector.kind, .idefics3)
            XCTAssertEqual(projector.scaleFactor, s)
            XCTAssertEqual(projector.inputs, width)
            XCTAssertEqual(projector.projectionInputs, width * s * s)
            XCTAssertEqual(projector.outputs, out)
            XCTAssertFalse(projector.dropsClassToken)
            XCTAssertEqual(projector.tokens(forPatches: 36), 36 / (s * s))
            XCTAssertEqual(projector.tokens(gridRows: 6, gridColumns: 6), 36 / (s * s))

            let features = try Self.graph("idefics3_s\(s)_features")
            let shuffled = try projector.shuffle(features: features, gridRows: 6, gridColumns: 6)
            XCTAssertEqual(shuffled, try Self.graph("idefics3_s\(s)_shuffled"))
            let reference = try Self.graph("idefics3_s\(s)_output")
            let e = maxAbs(try projector(features: features), reference)
            let eShuffled = maxAbs(try projector.projectShuffled(shuffled), reference)
            print("idefics3 s=\(s): max abs \(e), weights \(projector.weightBytes) B, scratch \(projector.scratchBytes) B")
            XCTAssertLessThanOrEqual(e, 1e-4)
            XCTAssertLessThanOrEqual(eShuffled, 1e-4)
            XCTAssertEqual(projector.weightBytes, width * s * s * out * 4)

            // A subset of groups (what VisionZip keeps) projects to the same rows.
            let g = width * s * s
            let picked = Array(shuffled[g ..< 2 * g]) + Array(shuffled[0 ..< g])
            let rows = try projector.projectShuffled(picked)
            XCTAssertLessThanOrEqual(maxAbs(rows, Array(reference[out ..< 2 * out]) + Array(reference[0 ..< out])), 1e-4)

            // Bad shapes throw.
            XCTAssertThrowsError(try projector.shuffle(features: features, gridRows: 4, gridColumns: 9))  // 4 % 3, 9 % 2
            XCTAssertThrowsError(try projector.shuffle(features: Array(features.dropLast()), gridRows: 6, gridColumns: 6))
            XCTAssertThrowsError(try projector(features: Array(features.prefix(5 * width))))  // 5 patches: no square
            XCTAssertThrowsError(try projector.projectShuffled(Array(shuffled.dropLast())))
        }
    }

    /// A non-square grid against the layout formula the script checks against transformers on squares.
    func testPixelShuffleNonSquareGrid() throws {
        let w = GGUFWriter()
        w.metadata.set("clip.projector_type", .string("idefics3"))
        w.metadata.set("clip.vision.projector.scale_factor", .uint32(2))
        try w.addTensor(name: "mm.model.fc.weight", dims: [32, 3], type: .f32)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-shuffle-\(UUID().uuidString).gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path, data: ["mm.model.fc.weight": [UInt8](repeating: 0, count: 32 * 3 * 4)])
        let projector = try Projector(file: try GGUFFile(path: path))
        XCTAssertEqual(projector.inputs, 8)
        let shuffled = try projector.shuffle(features: try Self.graph("shuffle_4x6_s2_features"), gridRows: 4, gridColumns: 6)
        XCTAssertEqual(shuffled, try Self.graph("shuffle_4x6_s2_shuffled"))
        XCTAssertEqual(projector.tokens(gridRows: 4, gridColumns: 6), 6)
    }

    /// The LLaVA mmproj with mm.2 removed (llama.cpp reads that as one linear layer), and the same declared
    /// "linear": y = mm.0(x), against transformers' multi_modal_projector.linear_1.
    func testLinearProjectorMatchesLlavaLinear1() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-linear-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("llava.gguf").path, mm = dir.appendingPathComponent("mmproj.gguf").path
        _ = try Converter.run(ConvertOptions(source: try LlavaModelTests.fixture("hf/llava-4x").path, output: text,
                                             mmprojOutput: mm, policy: try TypePolicy(type: .f32), threads: 2))
        let source = try GGUFFile(path: mm)
        let features = try LlavaModelTests.floats("llava", "feature_hidden")
        let reference = try Self.graph("llava_linear1")
        for declared in ["mlp", "linear"] {
            let w = GGUFWriter()
            for (k, v) in source.metadata.entries where k != GGUF.alignmentKey { w.metadata.set(k, v) }
            w.metadata.set("clip.projector_type", .string(declared))
            var data: [String: [UInt8]] = [:]
            for t in source.tensors where !t.name.hasPrefix("mm.2.") {
                try w.addTensor(name: t.name, dims: t.dims, type: t.type)
                data[t.name] = [UInt8](source.bytes(of: t))
            }
            let path = dir.appendingPathComponent("linear-\(declared).gguf").path
            try w.write(to: path, data: data)
            let projector = try Projector(file: try GGUFFile(path: path))
            XCTAssertEqual(projector.kind, .linear)
            XCTAssertTrue(projector.dropsClassToken)
            XCTAssertEqual(projector.tokens(forPatches: 16), 16)
            let e = maxAbs(try projector(features: features), reference)
            print("linear projector (\(declared) without mm.2): max abs \(e)")
            XCTAssertLessThanOrEqual(e, 1e-4)
        }
        // The mlp projector: weights and scratch are reported, and a bigger input grows the scratch once.
        let mlp = try Projector(file: source, maxRows: 2)
        XCTAssertEqual(mlp.kind, .mlp)
        let small = mlp.scratchBytes
        _ = try mlp(features: features)
        XCTAssertGreaterThan(mlp.scratchBytes, small)
        XCTAssertEqual(mlp.weightBytes, (32 * 64 + 64 * 64) * 4)
        let tower = try VisionEncoder(file: source)
        // F32 matrices and the F16 patch embedding pack to exactly their bytes in the file.
        let matrices = source.tensors.filter { ($0.name.hasPrefix("v.blk.") || $0.name.hasPrefix("v.patch_embd")) && $0.dims.count >= 2 }
        XCTAssertEqual(tower.weightBytes, matrices.reduce(0) { $0 + $1.byteCount })
        XCTAssertGreaterThan(tower.scratchBytes, 0)
    }

    /// Unknown projector types and missing keys throw.
    func testProjectorBadFilesThrow() throws {
        func file(_ type: String, scale: Int?) throws -> String {
            let w = GGUFWriter()
            w.metadata.set("clip.projector_type", .string(type))
            if let scale { w.metadata.set("clip.vision.projector.scale_factor", .uint32(UInt32(scale))) }
            try w.addTensor(name: "mm.model.fc.weight", dims: [36, 4], type: .f32)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-proj-\(UUID().uuidString).gguf").path
            try w.write(to: path, data: ["mm.model.fc.weight": [UInt8](repeating: 0, count: 36 * 4 * 4)])
            return path
        }
        for (type, scale) in [("resampler", 2), ("idefics3", nil), ("idefics3", 0), ("idefics3", 4)] as [(String, Int?)] {
            let path = try file(type, scale: scale)
            defer { try? FileManager.default.removeItem(atPath: path) }
            XCTAssertThrowsError(try Projector(file: try GGUFFile(path: path)), "\(type) \(String(describing: scale))")
        }
    }
}

// MARK: - pruned and rope-scaled decoders

extension ModelGraphTests {
    static func graphIDs(_ name: String) throws -> [Int32] {
        let data = try Data(contentsOf: LlavaModelTests.fixture("models/graph/\(name).bin"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    }

    /// Prefill of all but the last `decoded` ids, then cached decode steps: logits of every row.
    func run(_ lm: LlamaModel, _ ids: [Int32], decoded: Int, kvCache: KVCacheType = .f32) throws -> [Float] {
        var logits = try lm.prefill(tokens: Array(ids.dropLast(decoded)))
        for id in ids.suffix(decoded) { logits += Array(try lm.decode(token: id)) }
        return logits
    }

    /// Copies `source` with metadata edited by `edit` (tensors unchanged).
    func rewrite(_ source: GGUFFile, to path: String, _ edit: (inout GGUFMetadata) -> Void) throws {
        let w = GGUFWriter()
        for (k, v) in source.metadata.entries where k != GGUF.alignmentKey { w.metadata.set(k, v) }
        edit(&w.metadata)
        var data: [String: [UInt8]] = [:]
        for t in source.tensors {
            try w.addTensor(name: t.name, dims: t.dims, type: t.type)
            data[t.name] = [UInt8](source.bytes(of: t))
        }
        try w.write(to: path, data: data)
    }

    /// A structurally pruned Llama (per-layer head, KV head and FFN counts as GGUF arrays, written by the gguf
    /// package) against transformers' unpruned model with the removed parts zeroed, F32 and F16 KV caches.
    func testPerLayerPrunedLlamaMatchesTransformers() throws {
        let path = try LlavaModelTests.fixture("models/graph/pruned.gguf").path
        let file = try GGUFFile(path: path)
        let config = try LlamaConfig(metadata: file.metadata)
        XCTAssertEqual(config.layerHeads, [2, 2, 4])
        XCTAssertEqual(config.layerKVHeads, [2, 1, 2])
        XCTAssertEqual(config.layerFeedForward, [48, 64, 32])
        XCTAssertEqual([config.heads, config.kvHeads, config.feedForward], [4, 2, 64])
        XCTAssertEqual(config.kvDim(layer: 1), 8)
        let ids = try Self.graphIDs("pruned_input_ids")
        let reference = try Self.graph("pruned_logits")
        for kv in [KVCacheType.f32, .f16] {
            let lm = try LlamaModel(file: file, maxContext: 16, maxBatch: 4, kvCache: kv)  // prefill in 2 chunks
            XCTAssertEqual(lm.kvCacheBytes, kv == .f32 ? 2 * 16 * (16 + 8 + 16) * 4 : 2 * 16 * (16 + 8 + 16) * 2 + 2 * 16 * 16 * 4)
            let e = maxAbs(try run(lm, ids, decoded: 3), reference)
            print("pruned llama (\(kv) KV): max abs logits error \(e)")
            XCTAssertLessThanOrEqual(e, kv == .f32 ? 1e-3 : 2e-2)
        }
    }

    /// Per-layer arrays of the wrong length, or heads that do not split into KV heads, throw.
    func testPerLayerArraysValidated() throws {
        let source = try GGUFFile(path: try LlavaModelTests.fixture("models/graph/pruned.gguf").path)
        let edits: [(String, GGUFValue)] = [
            ("llama.attention.head_count", .array(.int32, [.int32(2), .int32(2)])),
            ("llama.feed_forward_length", .array(.int32, [.int32(48), .int32(64), .int32(32), .int32(8)])),
            ("llama.attention.head_count_kv", .array(.int32, [.int32(2), .int32(2), .int32(3)])),
            ("llama.attention.head_count", .array(.string, [.string("2"), .string("2"), .string("4")])),
        ]
        for (key, value) in edits {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-pruned-\(UUID().uuidString).gguf").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            try rewrite(source, to: path) { $0.set(key, value) }
            XCTAssertThrowsError(try LlamaModel(path: path, maxContext: 8), "\(key) = \(value)") { print("  \($0)") }
        }
    }

    /// Linear and yarn RoPE scaling: tiny Llama checkpoints converted here (the converter writes rope.scaling.*
    /// from config.json's rope_parameters) against transformers; without the keys the logits are far off.
    func testRopeScalingMatchesTransformers() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-rope-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, kind) in [("rope-linear", LlamaConfig.RopeScaling.Kind.linear), ("rope-yarn", .yarn)] {
            let out = dir.appendingPathComponent("\(name).gguf").path
            _ = try Converter.run(ConvertOptions(source: try LlavaModelTests.fixture("hf/llama-\(name)").path, output: out,
                                                 mmprojOutput: nil, policy: try TypePolicy(type: .f32), threads: 2))
            let file = try GGUFFile(path: out)
            let config = try LlamaConfig(metadata: file.metadata)
            XCTAssertEqual(config.ropeScaling?.kind, kind)
            let ids = try Self.graphIDs("\(name)_input_ids")
            let reference = try Self.graph("\(name)_logits")
            let e = maxAbs(try run(try LlamaModel(file: file, maxContext: 32, maxBatch: 8), ids, decoded: 2), reference)

            let plainPath = dir.appendingPathComponent("\(name)-plain.gguf").path
            try rewrite(file, to: plainPath) { $0.set("llama.rope.scaling.type", .string("none")) }
            let ePlain = maxAbs(try run(try LlamaModel(path: plainPath, maxContext: 32, maxBatch: 8), ids, decoded: 2), reference)
            print("\(name): max abs logits error \(e) (\(ePlain) without the scaling)")
            XCTAssertLessThanOrEqual(e, 1e-3)
            XCTAssertGreaterThan(ePlain, 1e-2)

            let badPath = dir.appendingPathComponent("\(name)-bad.gguf").path
            try rewrite(file, to: badPath) { $0.set("llama.rope.scaling.type", .string("longrope")) }
            XCTAssertThrowsError(try LlamaModel(path: badPath, maxContext: 8))
        }
    }
}

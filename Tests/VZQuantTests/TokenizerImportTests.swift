import Foundation
import XCTest
@testable import VZQuant

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

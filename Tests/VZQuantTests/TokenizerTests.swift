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

/// The runtime tokenizers (Sources/VZQuant/Text/) against Hugging Face's: tools/make_tokenizer_parity.py encoded a
/// varied corpus with transformers/tokenizers for three fixture tokenizers and committed the ids; here each
/// fixture's tokenizer goes through TokenizerImport (the GGUF metadata our converter writes) into a Tokenizer, which
/// must give the same ids for every string.
final class TokenizerTests: XCTestCase {
    static let fixtures: URL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")

    struct Case {
        let text: String
        let ids: [Int32]
        let idsSpecial: [Int32]
    }

    func load(_ name: String) throws -> (tokenizer: Tokenizer, cases: [Case]) {
        let url = Self.fixtures.appendingPathComponent("tokenizer_parity/\(name).json")
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let source = try XCTUnwrap(root["source"] as? String)
        let cases = try XCTUnwrap(root["cases"] as? [[String: Any]]).map {
            Case(text: $0["text"] as! String, ids: ($0["ids"] as! [NSNumber]).map(\.int32Value),
                 idsSpecial: ($0["ids_special"] as! [NSNumber]).map(\.int32Value))
        }
        let kv = try TokenizerImport.metadata(modelDirectory: Self.fixtures.appendingPathComponent(source).path)
        return (try Tokenizer(pairs: kv), cases)
    }

    /// decode(encode(s)) for the corpus: s itself, except that a SentencePiece text's leading space is dropped
    /// (HF's Metaspace puts no second ▁ before it and the decoder strips one space) and Qwen2's normaliser
    /// makes the text NFC.
    func expectedRoundTrip(_ s: String, _ t: Tokenizer) -> String {
        if t.model == .sentencePiece, s.utf8.first == 0x20 { return String(decoding: s.utf8.dropFirst(), as: UTF8.self) }
        if t.pre == "qwen2" { return s.precomposedStringWithCanonicalMapping }
        return s
    }

    func parity(_ name: String, bosAddedByUs: Bool = false) throws {
        let (t, cases) = try load(name)
        var matched = 0, ids = 0
        var failures: [String] = []
        for c in cases {
            let got = t.encode(c.text, addSpecial: false, parseSpecial: true)
            if got == c.ids {
                matched += 1
                ids += got.count
            } else {
                failures.append("\(name) \(c.text.debugDescription):\n  got  \(got)\n  want \(c.ids)")
            }
            let withSpecial = t.encode(c.text, addSpecial: true, parseSpecial: true)
            // llava-4x's tokenizer.json has a TemplateProcessing without BOS, so HF adds nothing; the GGUF has no
            // add_bos_token key and llama.cpp (and we) default to BOS for SentencePiece vocabularies.
            let wantSpecial = bosAddedByUs ? [t.bos!] + c.idsSpecial : c.idsSpecial
            XCTAssertEqual(withSpecial, wantSpecial, "\(name) add_special \(c.text.debugDescription)")

            let back = t.decode(got)
            let want = expectedRoundTrip(c.text, t)
            XCTAssertEqual(Array(back.utf8), Array(want.utf8), "\(name) round trip \(c.text.debugDescription) → \(back.debugDescription)")
        }
        print("tokenizer parity \(name): \(matched)/\(cases.count) strings, \(ids) ids identical to Hugging Face")
        XCTAssertEqual(matched, cases.count, failures.prefix(6).joined(separator: "\n"))
    }

    func testParityLlava4x() throws { try parity("llava-4x", bosAddedByUs: true) }
    func testParityQwen2() throws { try parity("qwen2") }
    func testParityLlama3() throws { try parity("llama3-bpe") }

    /// A real SentencePiece model (scores from training, not LlamaHfVocab's constant -1000) against the
    /// sentencepiece library, on the corpus strings whose whitespace sentencepiece does not rewrite.
    func testParitySentencePieceModel() throws {
        let url = Self.fixtures.appendingPathComponent("tokenizer_parity/spm.json")
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try XCTUnwrap(root["cases"] as? [[String: Any]])
        let kv = try TokenizerImport.metadata(modelDirectory: Self.fixtures.appendingPathComponent("tokenizer/spm").path)
        let t = try Tokenizer(pairs: kv)
        var matched = 0, ids = 0
        for c in cases {
            let text = c["text"] as! String
            let want = (c["ids"] as! [NSNumber]).map(\.int32Value)
            let got = t.encode(text, addSpecial: false, parseSpecial: true)
            XCTAssertEqual(got, want, "spm \(text.debugDescription)")
            if got == want { matched += 1; ids += got.count }
            XCTAssertEqual(t.decode(got), text)
            XCTAssertEqual(t.encode(text, addSpecial: true).first, t.bos)
        }
        print("tokenizer parity spm: \(matched)/\(cases.count) strings, \(ids) ids identical to sentencepiece")
    }

    /// The splitters alone against tokenizers' pre-tokenizers (offsets in Unicode scalars).
    func testPreTokenizerSplits() throws {
        let url = Self.fixtures.appendingPathComponent("tokenizer_parity/pretokenize.json")
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let splits = try XCTUnwrap(root["splits"] as? [String: [[String: Any]]])
        let kinds: [String: PreTokenizerKind] = ["qwen2": .qwen2, "llama3": .llama3, "gpt2": .gpt2, "smollm": .smollm]
        XCTAssertEqual(Set(splits.keys), Set(kinds.keys))
        for (name, cases) in splits.sorted(by: { $0.key < $1.key }) {
            let kind = try XCTUnwrap(kinds[name])
            var matched = 0
            for c in cases {
                let text = c["text"] as! String
                let want = (c["pieces"] as! [[NSNumber]]).map { $0[0].intValue ..< $0[1].intValue }
                let got = PreTokenizer.split(Array(text.unicodeScalars), kind: kind)
                XCTAssertEqual(got, want, "\(name) \(text.debugDescription)")
                if got == want { matched += 1 }
            }
            print("pre-tokenizer \(name): \(matched)/\(cases.count) strings split as tokenizers does")
        }
    }

    /// Through a real file: the metadata written with GGUFWriter (no tensors) and read back by GGUFFile.
    func testFromGGUFFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["llava-4x", "qwen2", "llama3-bpe"] {
            let (fromPairs, cases) = try load(name)
            let source = name == "llama3-bpe" ? "tokenizer/llama3-bpe" : "hf/\(name)"
            let w = GGUFWriter()
            for (k, v) in try TokenizerImport.metadata(modelDirectory: Self.fixtures.appendingPathComponent(source).path) {
                w.metadata.set(k, v)
            }
            let path = dir.appendingPathComponent("\(name).gguf").path
            try w.write(to: path, data: [:])
            let t = try Tokenizer(gguf: GGUFFile(path: path))
            for c in cases {
                XCTAssertEqual(t.encode(c.text, addSpecial: true, parseSpecial: true),
                               fromPairs.encode(c.text, addSpecial: true, parseSpecial: true), "\(name) \(c.text.debugDescription)")
            }
        }
    }

    /// Without parseSpecial, control tokens in the text are plain text; user-defined tokens are still matched.
    func testParseSpecialOff() throws {
        let (t, _) = try load("llama3-bpe")
        let ids = t.encode("<|eot_id|> [tool]", addSpecial: false, parseSpecial: false)
        XCTAssertFalse(ids.contains(401))
        XCTAssertTrue(ids.contains(403))
        XCTAssertEqual(t.decode(ids), "<|eot_id|> [tool]")
        XCTAssertEqual(t.encode("<|eot_id|>", addSpecial: false, parseSpecial: true), [401])
        XCTAssertEqual(t.decode([400, 401], skipSpecial: true), "")
        XCTAssertEqual(t.piece(401), "<|eot_id|>")
    }

    /// llama.cpp's space-prefix rule: ▁ after every special token, and before a leading space too.
    func testLlamaCppSpacePrefix() throws {
        var (t, _) = try load("llava-4x")
        let hf = t.encode("<image>\nWhat", addSpecial: false, parseSpecial: true)
        t.spacePrefix = .llamaCpp
        let lc = t.encode("<image>\nWhat", addSpecial: false, parseSpecial: true)
        XCTAssertEqual(lc.first, 400)
        XCTAssertNotEqual(hf, lc)
        XCTAssertEqual(t.decode(Array(lc.dropFirst())), "\nWhat")
        XCTAssertEqual(t.decode(t.encode(" x", addSpecial: false)), " x")
    }

    /// Byte fallback: characters with no token become <0xNN> tokens and decode back to the same UTF-8.
    func testByteFallback() throws {
        let (t, _) = try load("llava-4x")
        let s = "ʬ\u{1F9EA}"
        let ids = t.encode(s, addSpecial: false)
        XCTAssertTrue(ids.contains { t.types[Int($0)] == .byte })
        XCTAssertEqual(t.decode(ids), s)
    }

    /// Long texts: the merge loops are O(n log n), the pre-tokenizers linear. Reports tokens per second; asserts
    /// only the outcome (shared machines are too noisy for time limits).
    func testLongTextThroughput() throws {
        let sample = """
        The quick brown fox jumps over the lazy dog. I'm sure it's 1234567 times 3.14159!
        def f(x):\n    return x * 2\n\t日本語のテキスト 🙂 👨‍👩‍👧‍👦 Édouard — naïve café.   
        """
        var text = ""
        while text.utf8.count < 100_000 { text += sample }
        for name in ["llava-4x", "qwen2", "llama3-bpe"] {
            let (t, _) = try load(name)
            let start = Date()
            let ids = t.encode(text, addSpecial: false)
            let dt = Date().timeIntervalSince(start)
            print(String(format: "tokenizer speed \(name): %d bytes → %d tokens in %.3f s (%.0f tokens/s)",
                         text.utf8.count, ids.count, dt, Double(ids.count) / max(dt, 1e-9)))
            XCTAssertEqual(t.decode(ids), expectedRoundTrip(text, t))
        }
        // one giant symbol run / one giant pre-tokenizer piece
        let (spm, _) = try load("llava-4x")
        let a = String(repeating: "ab", count: 50_000)
        XCTAssertEqual(spm.decode(spm.encode(a, addSpecial: false)), a)
        let (bpe, _) = try load("qwen2")
        let spaces = String(repeating: " ", count: 100_000) + "x"
        XCTAssertEqual(bpe.decode(bpe.encode(spaces, addSpecial: false)), spaces)
    }
}

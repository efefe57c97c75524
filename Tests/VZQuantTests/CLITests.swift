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

/// The `vzquant` executable (built next to the test bundle by `swift build --build-tests`) on the tiny LLaVA
/// fixture: run --json, chat's per-turn prefill, tokenize, and one-line errors for bad input.
final class CLITests: XCTestCase {
    var temp: URL!
    var tool: URL!

    override func setUpWithError() throws {
        let products = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
        tool = products.appendingPathComponent("vzquant")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: tool.path), "no vzquant binary next to the tests (swift build --build-tests)")
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { if let temp { try? FileManager.default.removeItem(at: temp) } }

    /// Runs the tool; returns (status, stdout, stderr).
    func vzquant(_ args: [String], stdin: String? = nil) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = tool
        p.arguments = args
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func llava() throws -> (String, String) { try LlavaModelTests.convertLlava(.f32, into: temp) }

    func testRunJSONWithImage() throws {
        let (text, mm) = try llava()
        let image = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("images/photo64x48_444.jpg").path
        let map = temp.appendingPathComponent("map.png").path
        let (status, out, err) = try vzquant(["run", "-m", text, "--mmproj", mm, "--image", image, "-p", "Describe <image> please",
                                              "--visual-tokens", "6", "--temp", "0", "-n", "4", "--json", "--visionzip-map", map])
        XCTAssertEqual(status, 0, err)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        XCTAssertEqual((json["tokens"] as? [Int])?.count, 4)
        XCTAssertEqual(json["stop_reason"] as? String, "max_tokens")
        let images = try XCTUnwrap(json["images"] as? [[String: Any]])
        let zip = try XCTUnwrap(images.first?["visionzip"] as? [String: Any])
        XCTAssertEqual(zip["tokens_before"] as? Int, 17)
        XCTAssertEqual(zip["tokens_after"] as? Int, 6)
        XCTAssertEqual((zip["dominant"] as? [Int])?.first, 0, "CLS is always kept")
        XCTAssertEqual((zip["dominant"] as? [Int])?.count, 5)
        XCTAssertEqual((zip["contextual"] as? [[String: Any]])?.count, 1)
        XCTAssertEqual((json["prefill_tokens"] as? Int).map { $0 - (json["prompt_tokens"] as? Int ?? 0) }, 6)
        let timings = try XCTUnwrap(json["timings"] as? [String: Any])
        for key in ["load_ms", "vision_ms", "visionzip_ms", "projector_ms", "prefill_ms", "ttft_ms", "decode_tokens_per_s"] {
            XCTAssertNotNil(timings[key] as? Double, key)
        }
        XCTAssertEqual(try ImageDecoder.decode(file: map).width, 32, "the map is the 32×32 crop the encoder saw")

        // The same greedy run streamed as text prints the JSON's text.
        let (s2, streamed, _) = try vzquant(["run", "-m", text, "--mmproj", mm, "--image", image, "-p", "Describe <image> please",
                                             "--visual-tokens", "6", "--temp", "0", "-n", "4"])
        XCTAssertEqual(s2, 0)
        XCTAssertEqual(streamed, (json["text"] as? String ?? "") + "\n")
    }

    /// The second turn prefills only its own tokens; the image (encoded once) stays in the cache.
    func testChatPrefillsOnlyTheNewTurn() throws {
        let (text, mm) = try llava()
        let image = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("images/rgb37x23.png").path
        let (status, _, err) = try vzquant(["chat", "-m", text, "--mmproj", mm, "--image", image, "--visual-tokens", "all",
                                            "--temp", "0", "-n", "3", "-v", "--chat-template", "chatml"],
                                           stdin: "What is it?\nAnd now?\n")
        XCTAssertEqual(status, 0, err)
        let prefills = err.split(separator: "\n").filter { $0.hasPrefix("[prefill") }
        XCTAssertEqual(prefills.count, 2, err)
        func numbers(_ line: Substring) -> [Int] { line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) } }
        let first = numbers(prefills[0]), second = numbers(prefills[1])
        XCTAssertEqual(first[1], 16, "the first turn carries the 16 image rows")
        XCTAssertEqual(second[1], 0, "the second turn has no image rows")
        // cache position after turn 2 = turn 1's prefill + 3 generated + turn 2's prefill (Vicuna: no rebuild)
        XCTAssertEqual(second[second.count - 2], first[0] + 3 + second[0], err)
    }

    /// Vicuna (the LLaVA file's own template) too: the reply's tokens stay in the cache as sampled, even when the
    /// random model's reply does not start with a space, so the second turn never prefills the conversation again.
    func testChatOnVicunaPrefillsOnlyTheNewTurn() throws {
        let (text, mm) = try llava()
        let image = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("images/rgb37x23.png").path
        let (status, _, err) = try vzquant(["chat", "-m", text, "--mmproj", mm, "--image", image, "--visual-tokens", "all",
                                            "--temp", "0", "-n", "8", "-v"], stdin: "What is it?\nAnd now?\nOnce more?\n")
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(err.contains("template vicuna"), err)
        XCTAssertFalse(err.contains("prefilling the whole conversation again"), err)
        let prefills = err.split(separator: "\n").filter { $0.hasPrefix("[prefill") }
        let generated = err.split(separator: "\n").filter { $0.hasPrefix("[") && $0.contains(" tokens, ") }
        XCTAssertEqual(prefills.count, 3, err)
        XCTAssertEqual(generated.count, 3, err)
        func numbers(_ line: Substring) -> [Int] { line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) } }
        XCTAssertEqual(numbers(prefills[0])[1], 16)
        var position = numbers(prefills[0])[numbers(prefills[0]).count - 2]
        for turn in 1 ..< 3 {
            let p = numbers(prefills[turn]), reply = numbers(generated[turn - 1])[0]
            XCTAssertEqual(p[1], 0, "turn \(turn + 1) has no image rows")
            // (a reply ended by a stop string keeps fewer tokens; this greedy random model hits max tokens or EOS)
            XCTAssertEqual(p[p.count - 2], position + reply + p[0], "turn \(turn + 1): \(err)")
            position = p[p.count - 2]
        }
    }

    func testTokenizeAndErrors() throws {
        let (text, _) = try llava()
        let (status, out, _) = try vzquant(["tokenize", "-m", text, "--json", "hello world"])
        XCTAssertEqual(status, 0)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: text))
        XCTAssertEqual(json["ids"] as? [Int], tokenizer.encode("hello world").map(Int.init))

        // Bad input: one line on stderr, status 1, never a crash.
        let junk = temp.appendingPathComponent("junk.gguf").path
        try Data("GGUF nonsense".utf8).write(to: URL(fileURLWithPath: junk))
        for args in [["run", "-m", junk, "-p", "x"], ["run", "-m", text, "-p", "x", "--image", junk, "--mmproj", text],
                     ["run", "-m", text, "--mmproj", text, "-p", "x", "--image", "/nonexistent.png"]] {
            let (s, _, e) = try vzquant(args)
            XCTAssertEqual(s, 1, "\(args): \(e)")
            XCTAssertTrue(e.hasPrefix("error: "), e)
        }
        let (s, _, e) = try vzquant(["run", "-m", text, "-p", "x", "--visual-tokens", "lots"])
        XCTAssertNotEqual(s, 0)
        XCTAssertTrue(e.contains("visual-tokens"), e)
    }
}

import Foundation
import XCTest
@testable import VZQServe
@testable import VZQRuntime
@testable import VZQText

/// The server's request parser and guards, without HTTP (Tests/serve drives the running server).
final class ServeTests: XCTestCase {
    let limits = RequestLimits(maxTokens: 64, maxImageBytes: 4096, localFilesRoot: nil, acceptsImages: true,
                               defaultVisualTokens: try! VisualTokens("64"))

    func parse(_ json: String, limits: RequestLimits? = nil) throws -> ChatJobRequest {
        try ChatJobRequest.parse(Data(json.utf8), limits: limits ?? self.limits)
    }

    /// The APIError a body gives.
    func refusal(_ json: String, limits: RequestLimits? = nil, file: StaticString = #filePath, line: UInt = #line) -> APIError? {
        do {
            _ = try parse(json, limits: limits)
            XCTFail("accepted: \(json)", file: file, line: line)
        } catch let e as APIError {
            XCTAssertFalse(e.message.contains("\n"), file: file, line: line)
            return e
        } catch {
            XCTFail("not an APIError: \(error)", file: file, line: line)
        }
        return nil
    }

    let pixel = "data:image/png;base64," + Data([0x89, 0x50, 0x4E, 0x47]).base64EncodedString()

    func testMessagesBecomeTemplateMessages() throws {
        let r = try parse("""
            {"model": "x", "messages": [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "image_url", "image_url": {"url": "\(pixel)"}},
                                           {"type": "text", "text": "this?"}]},
              {"role": "assistant", "content": "A cat."},
              {"role": "user", "content": "Sure?"}],
             "unknown_field": {"anything": [1, 2]}, "user": "someone"}
            """)
        XCTAssertEqual(r.system, "Be brief.")
        XCTAssertEqual(r.history, [.user("<image>\nWhat is\nthis?"), .assistant("A cat."), .user("Sure?")])
        XCTAssertEqual(r.images, [Data([0x89, 0x50, 0x4E, 0x47])])
        XCTAssertEqual(r.maxTokens, 64)  // the cap is the default
        XCTAssertEqual(r.sampling.temperature, 0.8)
        XCTAssertEqual(r.visualTokens, try VisualTokens("64"))
        XCTAssertFalse(r.stream)
        // An image marker in the text places the image there, as `vzquant run` does.
        let placed = try parse(#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "A <image> B"}, {"type": "image_url", "image_url": "\#(pixel)"}]}]}"#)
        XCTAssertEqual(placed.history, [.user("A <image> B")])
    }

    func testFieldsAreRead() throws {
        let r = try parse("""
            {"messages": [{"role": "developer", "content": "Rules"}, {"role": "user", "content": "Hi"}], "max_completion_tokens": 7,
             "temperature": 0, "top_p": 0.5, "top_k": 3, "min_p": 0.1, "repeat_penalty": 1.2, "seed": -1, "stop": "END",
             "stream": true, "stream_options": {"include_usage": true}, "visual_tokens": "all", "token_reducer": "visionzip"}
            """)
        XCTAssertEqual(r.system, "Rules")
        XCTAssertEqual(r.maxTokens, 7)
        XCTAssertEqual(r.sampling, SamplingParameters(temperature: 0, topK: 3, topP: 0.5, minP: 0.1, repeatPenalty: 1.2, seed: UInt64.max))
        XCTAssertEqual(r.stop, ["END"])
        XCTAssertTrue(r.stream && r.includeUsage)
        XCTAssertEqual(r.visualTokens, .all)
        XCTAssertEqual(try parse(#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2.0, "stop": ["a", "b"]}"#).maxTokens, 2)
    }

    func testBadRequestsNameTheirField() throws {
        let cases: [(String, Int, String?)] = [
            ("{", 400, nil),
            (#"{"messages": "hi"}"#, 400, "messages"),
            (#"{}"#, 400, "messages"),
            (#"{"messages": []}"#, 400, "messages"),
            (#"{"messages": [{"role": "user"}]}"#, 400, "messages[0].content"),
            (#"{"messages": [{"role": "user", "content": 5}]}"#, 400, "messages[0].content"),
            (#"{"messages": [{"role": "user", "content": [{"type": "text"}]}]}"#, 400, "messages[0].content[0]"),
            (#"{"messages": [{"role": "user", "content": [{"type": "audio"}]}]}"#, 400, "messages[0].content[0].type"),
            (#"{"messages": [{"role": "function", "content": "x"}]}"#, 400, "messages[0].role"),
            (#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#, 400, "messages"),
            (#"{"messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": "\#(pixel)"}]}, {"role": "user", "content": "x"}]}"#,
             400, "messages[0].content[0]"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5}"#, 400, "max_tokens"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}"#, 400, "max_tokens"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}"#, 400, "max_tokens"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "seed": 1e30}"#, 400, "seed"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "temperature": 2.5}"#, 400, "temperature"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}"#, 400, "top_p"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "top_k": -1}"#, 400, "top_k"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "stop": [""]}"#, 400, "stop"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "stop": 3}"#, 400, "stop"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "n": 3}"#, 400, "n"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "visual_tokens": 0}"#, 400, "visual_tokens"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "token_reducer": "x"}"#, 400, "token_reducer"),
            (#"{"messages": [{"role": "user", "content": "<image>"}]}"#, 400, "messages[0].content"),
            (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://a/b.png"}}]}]}"#,
             400, "messages[0].content[0].image_url"),
            (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]}]}"#,
             400, "messages[0].content[0].image_url"),
            (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/html;base64,AAAA"}}]}]}"#,
             400, "messages[0].content[0].image_url"),
            (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]}"#,
             400, "messages[0].content[0].image_url"),
            (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,\#(String(repeating: "A", count: 8000))"}}]}]}"#,
             413, "messages[0].content[0].image_url"),
        ]
        for (json, status, param) in cases {
            guard let e = refusal(json) else { continue }
            XCTAssertEqual(e.status, status, json)
            XCTAssertEqual(e.param, param, "\(json): \(e.message)")
            XCTAssertEqual(e.type, status == 413 ? "request_too_large" : "invalid_request_error")
        }
        let textOnly = RequestLimits(maxTokens: 8, maxImageBytes: 10, localFilesRoot: nil, acceptsImages: false, defaultVisualTokens: .all)
        let e = refusal(#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "\#(pixel)"}]}]}"#, limits: textOnly)
        XCTAssertTrue(e?.message.contains("--mmproj") ?? false, e?.message ?? "")
    }

    func testErrorBodyIsOpenAIs() throws {
        let e = APIError(HTTPStatus.unavailable, "busy", code: "queue_full")
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: e.body) as? [String: Any])
        let error = try XCTUnwrap(object["error"] as? [String: Any])
        XCTAssertEqual(error["message"] as? String, "busy")
        XCTAssertEqual(error["type"] as? String, "server_overloaded")
        XCTAssertEqual(error["code"] as? String, "queue_full")
        XCTAssertTrue(error["param"] is NSNull)
    }

    func testLocalFilesOnlyBelowTheAllowedDirectory() throws {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("vzq-serve-\(UUID().uuidString)")
        let allowed = root.appendingPathComponent("images"), outside = root.appendingPathComponent("secret")
        try fm.createDirectory(at: allowed, withIntermediateDirectories: true)
        try fm.createDirectory(at: outside, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: root) }
        try Data([1, 2, 3]).write(to: allowed.appendingPathComponent("a.png"))
        try Data([4, 5, 6]).write(to: outside.appendingPathComponent("b.png"))
        try fm.createSymbolicLink(at: allowed.appendingPathComponent("link.png"), withDestinationURL: outside.appendingPathComponent("b.png"))
        let base = allowed.resolvingSymlinksInPath().path
        let local = RequestLimits(maxTokens: 8, maxImageBytes: 100, localFilesRoot: base, acceptsImages: true, defaultVisualTokens: .all)
        XCTAssertEqual(try ImageInput.bytes(base + "/a.png", limits: local, param: "p"), Data([1, 2, 3]))
        XCTAssertEqual(try ImageInput.bytes("file://" + base + "/a.png", limits: local, param: "p"), Data([1, 2, 3]))
        for escape in [base + "/../secret/b.png", base + "/link.png", base + "/", base + "/missing.png", base + "x/a.png"] {
            XCTAssertThrowsError(try ImageInput.bytes(escape, limits: local, param: "p"), escape) { error in
                XCTAssertEqual((error as? APIError)?.status, 400, escape)
            }
        }
        // Without --allow-local-files no path is read.
        XCTAssertThrowsError(try ImageInput.bytes(base + "/a.png", limits: limits, param: "p"))
    }

    func testAPIKeyComparison() {
        XCTAssertTrue(APIKeyMiddleware.equalInConstantTime("sesame", "sesame"))
        for other in ["", "sesam", "sesame!", "Sesame", "sesamf", "\u{0}sesame"] {
            XCTAssertFalse(APIKeyMiddleware.equalInConstantTime(other, "sesame"), other)
            XCTAssertFalse(APIKeyMiddleware.equalInConstantTime("sesame", other), other)
        }
    }
}

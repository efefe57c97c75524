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

/// The library's conversation API on the tiny LLaVA fixture, for every chat-template family: the KV cache is the
/// source of truth. A second message prefills only the template's text after the reply; the reply's tokens stay
/// as they were sampled (a reply cut by max tokens mid-word, ended by a stop string — whose tokens leave the
/// cache — or by the end-of-turn token); and the cache then gives the logits a fresh prefill of the same ids gives.
final class ConversationTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-conv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { if let temp { try? FileManager.default.removeItem(at: temp) } }

    enum Ending: CaseIterable { case maxTokensMidWord, stopString, endOfTurn }

    /// A sampler that writes `ids` in order, then `then` forever.
    final class Script {
        var ids: [Int32]
        let then: Int32
        init(_ ids: [Int32], then: Int32) { (self.ids, self.then) = (ids, then) }
        func next() -> Int32 { ids.isEmpty ? then : ids.removeFirst() }
    }

    func testEveryTemplateExtendsTheCacheWithTheTokensAsSampled() throws {
        let (text, mm) = try LlavaModelTests.convertLlava(.f32, into: temp)
        let session = try Session(model: text, mmproj: mm, options: SessionOptions(contextLength: 512, batch: 64))
        let picture = try ImageDecoder.decode(file: LlavaModelTests.fixture("images/rgb37x23.png").path)
        let image = try session.vision!.encode(picture, visualTokens: .all)
        let eos = try XCTUnwrap(session.tokenizer.eos)
        var checked = 0
        for family in ChatTemplate.Family.allCases {
            for ending in Ending.allCases {
                let template = family == .raw ? nil : ChatTemplate(family: family)
                let system: String? = family == .raw ? nil : "Be brief."
                let chat = Conversation(session: session, template: template, system: system)
                let first = try chat.add(user: "What is it?", images: [image])
                XCTAssertTrue(first.wholeConversation)
                XCTAssertEqual(first.report.imageTokens, image.tokens)
                let promptEnd = session.position

                // The reply: "<word> wor" cut mid-word, or text then a stop string, or text then the end token.
                let stop = template?.stopStrings.first ?? "STOP"
                let replyText: String
                switch ending {
                case .maxTokensMidWord: replyText = " Hello wor"
                case .stopString: replyText = " Hi there" + stop + " and more"
                case .endOfTurn: replyText = " Fine."
                }
                let replyIds = session.tokenizer.encode(replyText, addSpecial: false, parseSpecial: false)
                let script = Script(replyIds, then: ending == .endOfTurn ? eos : replyIds.last!)
                let maxTokens = ending == .maxTokensMidWord ? replyIds.count : replyIds.count + 4
                let reply = try chat.generate(maxTokens: maxTokens, stopStrings: family == .raw ? [stop] : [],
                                              sample: { _, _ in script.next() })
                let cachedReply = Array(session.history[promptEnd...])
                switch ending {
                case .maxTokensMidWord, .endOfTurn:
                    XCTAssertEqual(cachedReply, replyIds, "\(family) \(ending): the reply's tokens stay as sampled")
                case .stopString:
                    XCTAssertEqual(reply.report.stopReason, .stopString, "\(family)")
                    XCTAssertTrue(reply.text.hasSuffix("Hi there"), "\(family): \(reply.text)")
                    XCTAssertEqual(cachedReply, Array(replyIds.prefix(cachedReply.count)), "\(family): a prefix of the sampled ids")
                    let kept = String(decoding: cachedReply.flatMap { session.tokenizer.pieceBytes($0) }, as: UTF8.self)
                    XCTAssertFalse(kept.contains(stop), "\(family): the stop string left the cache (\(kept))")
                    XCTAssertTrue(" Hi there".hasPrefix(kept), "\(family): \(kept)")
                }
                XCTAssertEqual(reply.cachedTokens, cachedReply.count)

                // The second message: only the template's text after the reply.
                let before = session.history
                let second = try chat.add(user: "And now?")
                XCTAssertFalse(second.wholeConversation, "\(family) \(ending)")
                XCTAssertEqual(second.report.imageTokens, 0, "the image stays in the cache")
                XCTAssertEqual(Array(session.history.prefix(before.count)), before, "nothing already cached changes")
                let delta: String
                if let template {
                    let history = (system.map { [ChatMessage.system($0)] } ?? []) + [.user("<image>\nWhat is it?")]
                    delta = try XCTUnwrap(template.textAfterReply(history: history, next: [.user("And now?")]), "\(family)")
                } else {
                    delta = "And now?"
                }
                // A later turn continues the conversation's text: no first-only space prefix (as one tokenization of the
                // whole rendered conversation gives).
                XCTAssertEqual(Array(session.history[before.count...]), session.tokenize(delta, continuing: true), "\(family) \(ending)")

                // The cache gives what a fresh prefill of the same rows gives.
                let fresh = try Session(model: text, options: SessionOptions(contextLength: 512, batch: 64))
                let ids = session.history
                let imageStart = try XCTUnwrap(ids.firstIndex(of: -1))
                _ = try fresh.prefill([.tokens(Array(ids[..<imageStart])), .image(image),
                                       .tokens(Array(ids[(imageStart + image.tokens)...]))], addBOS: false)
                XCTAssertEqual(fresh.history, ids)
                let maxDiff = zip(fresh.lastLogits, session.lastLogits).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertLessThan(maxDiff, 1e-4, "\(family) \(ending): cached and fresh logits")
                checked += 1
            }
        }
        XCTAssertEqual(checked, ChatTemplate.Family.allCases.count * Ending.allCases.count)
    }

    /// An image's layout (what its family writes around each crop's rows) is what the prompt gets: text pieces
    /// tokenized in place, crops' rows in the layout's order.
    func testImageLayoutPlacesTextAndCropRows() throws {
        let (text, mm) = try LlavaModelTests.convertLlava(.f32, into: temp)
        let session = try Session(model: text, mmproj: mm, options: SessionOptions(contextLength: 256, batch: 64))
        let picture = try ImageDecoder.decode(file: LlavaModelTests.fixture("images/rgb37x23.png").path)
        let one = try session.vision!.encode(picture, visualTokens: .budget(.init(dominant: 3, contextual: 1)))
        XCTAssertEqual(one.layout, [.crop(0)], "LLaVA-1.5: the rows alone")
        // Two crops (the same image twice), laid out in reverse with text around them.
        let d = session.model.hidden, n = one.tokens
        var two = EncodedImage(embeddings: one.embeddings + one.embeddings.map { $0 * 0.5 }, tokens: 2 * n,
                               crops: one.crops + one.crops, timings: .init(), merge: .sum,
                               layout: [.text("<a>"), .crop(1), .text("\n"), .crop(0)])
        try session.prefill([.image(two)], addBOS: false)
        // The text after rows continues the prompt: no first-only space prefix.
        let a = session.tokenize("<a>"), nl = session.tokenize("\n", continuing: true)
        XCTAssertEqual(session.history, a + [Int32](repeating: -1, count: n) + nl + [Int32](repeating: -1, count: n))
        let fresh = try Session(model: text, options: SessionOptions(contextLength: 256, batch: 64))
        let second = EncodedImage(embeddings: Array(two.embeddings[(n * d)...]), tokens: n, crops: [one.crops[0]], timings: .init(), merge: .sum)
        try fresh.prefill([.tokens(a), .image(second), .tokens(nl), .image(one)], addBOS: false)
        XCTAssertEqual(fresh.lastLogits, session.lastLogits)
        two.layout = [.crop(2)]
        XCTAssertThrowsError(try session.prefill([.image(two)], addBOS: false))
    }

    /// A message the cache cannot take leaves the conversation as it was; the next one prefills it all again.
    func testARefusedMessageLeavesTheConversationAsItWas() throws {
        let (text, _) = try LlavaModelTests.convertLlava(.f32, into: temp)
        let session = try Session(model: text, options: SessionOptions(contextLength: 64, batch: 8))
        let chat = Conversation(session: session, template: ChatTemplate(family: .vicuna))
        try chat.add(user: "Hi")
        let script = Script(session.tokenizer.encode(" Yo", addSpecial: false), then: session.tokenizer.eos!)
        _ = try chat.generate(maxTokens: 4, sample: { _, _ in script.next() })
        let messages = chat.messages
        XCTAssertThrowsError(try chat.add(user: String(repeating: "long words here ", count: 20))) { XCTAssertTrue($0 is ContextFull) }
        XCTAssertEqual(chat.messages, messages)
        let again = try chat.add(user: "Ok")
        XCTAssertTrue(again.wholeConversation)
        XCTAssertEqual(session.history.first, session.tokenizer.bos)
        XCTAssertEqual(chat.messages.map(\.role), [.user, .assistant, .user])
    }
}

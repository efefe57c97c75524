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

/// ChatTemplate against transformers: tools/make_chat_template_fixtures.py rendered the real chat templates of
/// llava-1.5-7b-hf, Qwen2-0.5B-Instruct, SmolLM2-135M-Instruct (from its GGUF), Meta-Llama-3-8B-Instruct and
/// Llama-2-7b-chat with transformers' own Jinja helper, for every prefix of several conversations, with and
/// without the generation prompt. The template texts are in the fixture too, so detect() sees the real ones.
final class ChatTemplateTests: XCTestCase {
    struct Case {
        let conversation: String
        let messages: [ChatMessage]
        let addGenerationPrompt: Bool
        let text: String?  // nil: transformers raised (the template refuses the conversation)
    }

    struct Template {
        let name: String
        let family: String
        let architecture: String
        let text: String
        let cases: [Case]
    }

    func loadFixture() throws -> [Template] {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
            .appendingPathComponent("chat_templates/renders.json")
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        return try XCTUnwrap(root["templates"] as? [[String: Any]]).map { t in
            let cases = (t["cases"] as! [[String: Any]]).map { c in
                Case(conversation: c["conversation"] as! String,
                     messages: (c["messages"] as! [[String: String]]).map {
                         ChatMessage(role: ChatMessage.Role(rawValue: $0["role"]!)!, content: $0["content"]!)
                     },
                     addGenerationPrompt: c["add_generation_prompt"] as! Bool,
                     text: c["text"] as? String)
            }
            return Template(name: t["name"] as! String, family: t["family"] as! String,
                            architecture: t["architecture"] as! String, text: t["template"] as! String, cases: cases)
        }
    }

    func testDetectRealTemplates() throws {
        let templates = try loadFixture()
        XCTAssertEqual(templates.count, 5)
        for t in templates {
            let detected = ChatTemplate.detect(templateText: t.text, architecture: t.architecture)
            XCTAssertEqual(detected.family.rawValue, t.family, t.name)
        }
        let byName = Dictionary(uniqueKeysWithValues: templates.map { ($0.name, $0) })
        let qwen = ChatTemplate.detect(templateText: byName["qwen2"]!.text, architecture: "qwen2")
        XCTAssertEqual(qwen.defaultSystemPrompt, "You are a helpful assistant.")
        let smol = ChatTemplate.detect(templateText: byName["smollm2"]!.text, architecture: "llama")
        XCTAssertEqual(smol.defaultSystemPrompt, ChatTemplate.smolLMSystemPrompt)
    }

    /// Our rendering is transformers' rendering, byte for byte, for every case of every template.
    func testRenderMatchesTransformers() throws {
        var compared = 0
        for t in try loadFixture() {
            let template = ChatTemplate.detect(templateText: t.text, architecture: t.architecture)
            for c in t.cases {
                let label = "\(t.name) \(c.conversation)[:\(c.messages.count)] gen=\(c.addGenerationPrompt)"
                if let want = c.text {
                    let got = try template.render(c.messages, addGenerationPrompt: c.addGenerationPrompt)
                    XCTAssertEqual(Array(got.utf8), Array(want.utf8), "\(label)\n got  \(got.debugDescription)\n want \(want.debugDescription)")
                } else {
                    XCTAssertThrowsError(try template.render(c.messages, addGenerationPrompt: c.addGenerationPrompt), label)
                }
                compared += 1
            }
        }
        print("chat templates: \(compared) renderings compared with transformers")
        XCTAssertGreaterThan(compared, 150)
    }

    /// The image marker stays where the user wrote it.
    func testImageMarkerKeptInPlace() throws {
        for family in ChatTemplate.Family.allCases {
            let text = try ChatTemplate(family: family).render([.user("Look: <image>\nand <image> too")], addGenerationPrompt: true)
            XCTAssertTrue(text.contains("Look: \(ChatTemplate.imageMarker)\nand \(ChatTemplate.imageMarker) too"), family.rawValue)
        }
    }

    /// Multi-turn: with transformers' renderings, render(history + reply + next, gen) is render(history, gen),
    /// the space vicuna/llama2 write before a reply (which SentencePiece models write as part of their first
    /// token), the reply as the template renders it (llama2/llama3 trim it), and exactly textAfterReply().
    func testContinuationDelta() throws {
        var checked = 0
        for t in try loadFixture() {
            let template = ChatTemplate.detect(templateText: t.text, architecture: t.architecture)
            func rendering(_ messages: [ChatMessage]) -> String? {
                t.cases.first { $0.messages == messages && $0.addGenerationPrompt }?.text
            }
            for c in t.cases where c.addGenerationPrompt {
                let ms = c.messages
                guard ms.count >= 3, ms[ms.count - 2].role == .assistant, ms.last!.role == .user else { continue }
                let history = Array(ms.dropLast(2))
                let content = ms[ms.count - 2].content
                let next = [ms.last!]
                let before = try XCTUnwrap(rendering(history))
                let after = try XCTUnwrap(rendering(ms))
                // the reply as the model writes it: SentencePiece chat formats put the space after the prompt's
                // "ASSISTANT:" / "[/INST]" into the reply's first token
                let spaced = t.family == "vicuna" || t.family == "llama2"
                let reply = spaced ? " " + content : content
                let label = "\(t.name) \(c.conversation)[:\(ms.count)]"
                let delta = try XCTUnwrap(try template.textAfterReply(history: history, next: next), label)
                if c.conversation == "whitespace", t.family == "llama3" || t.family == "llama2" {
                    // the template trims the reply: the cache keeps the reply as generated, the rest is the same
                    XCTAssertFalse(after.hasPrefix(before + reply), label)
                    let trimmed = (spaced ? " " : "") + ChatTemplate.trim(content)
                    XCTAssertEqual(before + trimmed + delta, after, label)
                    continue
                }
                XCTAssertTrue(after.hasPrefix(before + reply), label)
                XCTAssertEqual(before + reply + delta, after, label)
                XCTAssertEqual(try template.render(history + [.assistant(content)] + next, addGenerationPrompt: true), after, label)
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 15)
    }

    func testDetectFallbacksAndMetadata() throws {
        XCTAssertEqual(ChatTemplate.detect(templateText: nil, architecture: "llama").family, .vicuna)
        XCTAssertEqual(ChatTemplate.detect(templateText: nil, architecture: "qwen2"), ChatTemplate(family: .chatml))
        XCTAssertEqual(ChatTemplate.detect(templateText: "{{ messages }}", architecture: "gemma").family, .raw)

        var m = GGUFMetadata(file: "<test>")
        m.set("general.architecture", .string("llama"))
        m.set("tokenizer.ggml.model", .string("gpt2"))
        XCTAssertEqual(try ChatTemplate.detect(metadata: m).family, .raw)  // byte-level llama without template
        m.set("tokenizer.ggml.model", .string("llama"))
        XCTAssertEqual(try ChatTemplate.detect(metadata: m).family, .vicuna)
        for t in try loadFixture() {
            m.set("tokenizer.chat_template", .string(t.text))
            XCTAssertEqual(try ChatTemplate.detect(metadata: m).family.rawValue, t.family, t.name)
        }
        m.set("tokenizer.chat_template", .uint32(3))
        XCTAssertThrowsError(try ChatTemplate.detect(metadata: m))
    }

    /// Qwen2.5's template writes its default system prompt in an if/else with the Jinja escape "\n".
    func testChatMLDefaultSystemPromptExtraction() {
        let qwen25Part = #"{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}"#
        XCTAssertEqual(ChatTemplate.chatMLDefaultSystemPrompt(in: qwen25Part),
                       "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        XCTAssertNil(ChatTemplate.chatMLDefaultSystemPrompt(in: "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}"))
        let t = ChatTemplate.detect(templateText: qwen25Part, architecture: "qwen2")
        XCTAssertEqual(t.family, .chatml)
        XCTAssertEqual(try t.render([.user("Hi")], addGenerationPrompt: true),
                       "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    /// SmolVLM's format (llama.cpp's "smolvlm"; HF's SmolVLM template writes the same for text and image-first
    /// turns), written out by hand.
    func testSmolVLM() throws {
        let t = try ChatTemplate(name: "smolvlm")
        let text = try t.render([.user("<image>What is this?"), .assistant("A cat."), .user("Sure?")], addGenerationPrompt: true)
        XCTAssertEqual(text, "<|im_start|>User:<image>What is this?<end_of_utterance>\nAssistant: A cat.<end_of_utterance>\n"
                             + "User: Sure?<end_of_utterance>\nAssistant:")
        XCTAssertTrue(t.textIncludesBOS)
        XCTAssertEqual(t.stopStrings, ["<end_of_utterance>"])
        let detected = ChatTemplate.detect(templateText: "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}: …<end_of_utterance>\n{% endfor %}",
                                           architecture: "llama")
        XCTAssertEqual(detected.family, .smolvlm)
        let delta = try XCTUnwrap(t.textAfterReply(history: [.user("Hi")], next: [.user("Bye")]))
        XCTAssertEqual(delta, "<end_of_utterance>\nUser: Bye<end_of_utterance>\nAssistant:")
    }

    func testNamesStopsAndBOS() throws {
        for family in ChatTemplate.Family.allCases {
            XCTAssertEqual(try ChatTemplate(name: family.rawValue).family, family)
            XCTAssertEqual(family == .raw, ChatTemplate(family: family).stopStrings.isEmpty)
        }
        XCTAssertThrowsError(try ChatTemplate(name: "alpaca")) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("alpaca") && text.contains("chatml") && text.contains("vicuna"), text)
        }
        XCTAssertTrue(ChatTemplate(family: .llama3).textIncludesBOS)
        XCTAssertTrue(try ChatTemplate(family: .llama3).render([.user("x")], addGenerationPrompt: true).hasPrefix("<|begin_of_text|>"))
        XCTAssertFalse(ChatTemplate(family: .chatml).textIncludesBOS)
        XCTAssertTrue(ChatTemplate(family: .chatml).stopStrings.contains("<|im_end|>"))
        XCTAssertTrue(ChatTemplate(family: .llama3).stopStrings.contains("<|eot_id|>"))
    }

    /// With a real file (SmolLM2-135M-Instruct Q4_1, skipped when absent): detect() from its metadata, the
    /// rendered prompt tokenizes as the chat loop feeds it (prompt, reply tokens, then the tokens of the text
    /// after the reply give the same ids as the whole conversation), and greedy Sampler + TextStream answer and stop at <|im_end|>.
    func testSmolLM2EndToEnd() throws {
        guard let path = SmolLM2Tests.modelPath() else { throw XCTSkip("\(SmolLM2Tests.fileName) not found") }
        let file = try GGUFFile(path: path)
        let template = try ChatTemplate.detect(metadata: file.metadata)
        XCTAssertEqual(template.family, .smollm)
        XCTAssertEqual(template.defaultSystemPrompt, ChatTemplate.smolLMSystemPrompt)
        let tokenizer = try Tokenizer(gguf: file)

        // (the 135M model wanders with its default system prompt; a plain one keeps the answer short)
        let history: [ChatMessage] = [.system("You are a helpful assistant."), .user("What is the capital of France?")]
        let prompt = try template.render(history, addGenerationPrompt: true)
        let promptIds = tokenizer.encode(prompt, addSpecial: !template.textIncludesBOS, parseSpecial: true)
        XCTAssertEqual(tokenizer.decode(promptIds), prompt)

        let lm = try LlamaModel(file: file, maxContext: promptIds.count + 32)
        var sampler = try Sampler(.greedy)
        var stream = TextStream(tokenizer: tokenizer, stopStrings: template.stopStrings)
        let logits = try lm.prefill(tokens: promptIds)
        var next = Array(logits[(promptIds.count - 1) * lm.vocab ..< promptIds.count * lm.vocab])
            .withUnsafeBufferPointer { sampler.sample(logits: $0, history: promptIds) }
        var replyIds: [Int32] = [], answer = ""
        while true {
            answer += stream.push(next)
            if stream.stopped { break }
            replyIds.append(next)
            if replyIds.count == 24 { break }
            next = sampler.sample(logits: try lm.decode(token: next), history: promptIds + replyIds)
        }
        answer += stream.finish()
        print("smollm2 chat: \(answer.debugDescription), stop \(stream.stop ?? "none")")
        XCTAssertEqual(stream.stop, "<|im_end|>")
        XCTAssertTrue(answer.contains("Paris"), answer)
        XCTAssertEqual(answer, tokenizer.decode(replyIds))

        let next2: [ChatMessage] = [.user("And of Italy?")]
        let delta = try XCTUnwrap(try template.textAfterReply(history: history, next: next2))
        let whole = try template.render(history + [.assistant(answer)] + next2, addGenerationPrompt: true)
        XCTAssertEqual(promptIds + replyIds + tokenizer.encode(delta, addSpecial: false, parseSpecial: true),
                       tokenizer.encode(whole, addSpecial: !template.textIncludesBOS, parseSpecial: true))
    }
}

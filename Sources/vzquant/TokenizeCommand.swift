import ArgumentParser
import Foundation
import VZQuant

/// `vzquant tokenize -m MODEL.gguf [--json] TEXT`: the ids (and pieces) the model's tokenizer gives.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids (and pieces) of a text with a GGUF model's tokenizer.",
        discussion: """
            BOS/EOS are added as the file's tokenizer.ggml.add_bos_token/add_eos_token say (--no-special: never). \
            Special tokens written in the text (<|im_start|>, <s>, …) become their ids unless --no-parse-special.
            """
    )

    @Option(name: [.customShort("m"), .long], help: "GGUF model file (only its metadata is read).")
    var model: String

    @Argument(help: "The text to tokenize.")
    var text: String

    @Flag(name: .long, help: "Print one JSON object {\"ids\": […], \"pieces\": […]}.")
    var json = false

    @Flag(name: .customLong("no-special"), help: "Do not add BOS/EOS.")
    var noSpecial = false

    @Flag(name: .customLong("no-parse-special"), help: "Tokenize special-token texts as plain text.")
    var noParseSpecial = false

    func run() throws {
        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer(gguf: GGUFFile(path: model))
        } catch {
            fail("\(error)")
        }
        let ids = tokenizer.encode(text, addSpecial: !noSpecial, parseSpecial: !noParseSpecial)
        let pieces = ids.map { tokenizer.piece($0) }
        if json {
            let object: [String: Any] = ["ids": ids.map(Int.init), "pieces": pieces, "count": ids.count]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for (id, piece) in zip(ids, pieces) { print("\(id)\t\(piece.debugDescription)") }
            print("(\(ids.count) tokens)")
        }
    }
}

/// Prints "error: …" on stderr and exits with status 1 (bad input is a message, never a crash).
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    Foundation.exit(1)
}

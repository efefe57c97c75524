import ArgumentParser
import Foundation
import VZQuant

/// `vzquant chat -m MODEL.gguf [--mmproj MMPROJ.gguf --image IMG]`: an interactive conversation. The KV cache
/// keeps every turn (and every image, encoded and VisionZip-compressed once), so a turn prefills only its own text.
struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Talk with a model; images are encoded once and stay in the cache for later turns.",
        discussion: """
            Type a message and press Enter. Commands: /image PATH (attach an image to your next message), \
            /reset (forget the conversation), /quit (or Ctrl-D). Ctrl-C stops the answer being generated; at the \
            prompt it quits. --verbose prints the tokens each turn prefills and the speeds.
            """
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var compute: ComputeOptions

    @OptionGroup var templateOptions: TemplateOptions

    @Flag(name: [.customShort("v"), .long], help: "Prefill tokens per turn and speeds on stderr.")
    var verbose = false

    func validate() throws {
        if !imageOptions.image.isEmpty, modelOptions.mmproj == nil {
            throw ValidationError("--image needs the vision file: --mmproj MMPROJ.gguf")
        }
    }

    func run() throws {
        try compute.apply()
        do {
            try loop()
        } catch {
            fail("\(error)")
        }
    }

    private func loop() throws {
        let visualTokens = try imageOptions.parsedVisualTokens()
        let session = try Session(model: modelOptions.model, mmproj: modelOptions.mmproj, options: modelOptions.sessionOptions)
        let template = try templateOptions.template(for: session)
        let chat = Conversation(session: session, template: template, system: templateOptions.system)
        var sampler = try Sampler(sampling.parameters)
        var pending: [EncodedImage] = []

        func attach(_ path: String) {
            do {
                let (encoded, _) = try session.encodeImage(path: path, visualTokens: visualTokens, merge: imageOptions.mergeMode, reducer: imageOptions.reducer,
                                                           options: imageOptions.decodeOptions)
                pending.append(encoded)
                note(RunCommand.imageLine(path, encoded))
            } catch {
                note("error: \(error)")
            }
        }
        for path in imageOptions.image { attach(path) }

        let interactive = isatty(0) != 0
        note("vzquant chat · \(modelOptions.model) · template \(template.name) · context \(session.contextLength)"
             + (interactive ? " · /image PATH, /reset, /quit" : ""))
        Interrupt.install()
        while true {
            if interactive { FileHandle.standardError.write(Data("\n> ".utf8)) }
            Interrupt.atPrompt = true
            guard let line = readLine(strippingNewline: true) else { break }
            Interrupt.atPrompt = false
            let input = line.trimmingCharacters(in: .whitespaces)
            if input.isEmpty { continue }
            if input == "/quit" || input == "/exit" { break }
            if input == "/reset" {
                chat.reset()
                pending.removeAll()
                note("(conversation cleared)")
                continue
            }
            if input.hasPrefix("/image") {
                let path = input.dropFirst("/image".count).trimmingCharacters(in: .whitespaces)
                if path.isEmpty { note("usage: /image PATH") } else if session.vision == nil {
                    note("error: images need the vision file (--mmproj MMPROJ.gguf)")
                } else { attach(path) }
                continue
            }
            do {
                try answer(input, images: pending, chat: chat, sampler: &sampler)
                pending.removeAll()
            } catch let full as ContextFull {
                // The conversation is as before the message; its images stay attached for the next one.
                note("\(full) (raise --ctx-size, or /reset)")
            }
        }
    }

    /// Prefills the message (only what the cache lacks), then streams the answer.
    private func answer(_ text: String, images: [EncodedImage], chat: Conversation, sampler: inout Sampler) throws {
        let session = chat.session
        let prefill = try chat.add(user: text, images: images)
        if verbose {
            if prefill.wholeConversation, chat.messages.filter({ $0.role == .user }).count > 1 {
                note("(prefilling the whole conversation again)")
            }
            note("[prefill \(prefill.report.tokens) tokens (\(prefill.report.imageTokens) visual) in \(fmt(prefill.report.milliseconds)) ms;"
                 + " cache \(session.position)/\(session.contextLength)]")
        }
        Interrupt.requested = 0
        let reply = try chat.generate(maxTokens: sampling.maxTokens, stopStrings: sampling.stop,
                                      sample: { logits, history in sampler.sample(logits: logits, history: history) },
                                      onText: emit, interrupted: Interrupt.take)
        emit("\n")
        if reply.report.stopReason == .contextFull || session.position >= session.contextLength {
            note("(context full: \(session.contextLength) positions; /reset to start over, or raise --ctx-size)")
        } else if reply.report.stopReason == .interrupted {
            note("(stopped)")
        }
        if verbose {
            note("[\(reply.report.tokens.count) tokens, \(reply.report.stopReason.rawValue), \(fmt(reply.report.decodeTokensPerSecond)) tok/s]")
        }
    }
}

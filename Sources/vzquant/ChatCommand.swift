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

    /// The conversation so far. The cache holds `render(messages, addGenerationPrompt: true)` followed by
    /// `lastReply` (the model's reply as generated, not yet in `messages`).
    private struct Conversation {
        var messages: [ChatMessage] = []
        var lastReply: String?
        /// Images in message order (each encoded once).
        var images: [EncodedImage] = []
        /// Images already in the cache.
        var cachedImages = 0
        /// The cache may hold part of a refused turn: the next turn prefills the whole conversation again.
        var cacheIsStale = false
    }

    private func loop() throws {
        let visualTokens = try imageOptions.parsedVisualTokens()
        let session = try Session(model: modelOptions.model, mmproj: modelOptions.mmproj, options: modelOptions.sessionOptions)
        let template = try templateOptions.template(for: session)
        let stops = template.stopStrings + sampling.stop
        let endTokens = session.endOfGenerationTokens(extraTexts: template.stopStrings)
        var sampler = try Sampler(sampling.parameters)
        var chat = Conversation()
        var pending: [EncodedImage] = []

        func attach(_ path: String) {
            do {
                let (encoded, _) = try session.encodeImage(path: path, visualTokens: visualTokens, merge: imageOptions.mergeMode,
                                                           options: imageOptions.decodeOptions)
                pending.append(encoded)
                note(RunCommand.imageLine(path, encoded))
            } catch {
                note("error: \(error)")
            }
        }
        func startOver() {
            session.reset()
            chat = Conversation()
            if let system = templateOptions.system { chat.messages.append(.system(system)) }
        }
        startOver()
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
                startOver()
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

            // The new user message: pending images first, as markers.
            var content = input
            if !pending.isEmpty, !content.contains(ChatTemplate.imageMarker) {
                content = String(repeating: ChatTemplate.imageMarker + "\n", count: pending.count) + content
            }
            let (savedChat, savedPending) = (chat, pending)
            chat.images += pending
            pending.removeAll()
            do {
                try answer(.user(content), session: session, template: template, chat: &chat, sampler: &sampler,
                           stops: stops, endTokens: endTokens)
            } catch let full as ContextFull {
                note("\(full)")
                (chat, pending) = (savedChat, savedPending)
                chat.cacheIsStale = true
            }
        }
    }

    /// Prefills what the cache lacks for `message`, then streams the answer.
    private func answer(_ message: ChatMessage, session: Session, template: ChatTemplate, chat: inout Conversation,
                        sampler: inout Sampler, stops: [String], endTokens: Set<Int32>) throws {
        var delta: String
        if !chat.cacheIsStale, let reply = chat.lastReply,
           let c = try template.continuation(history: chat.messages, reply: reply, next: [message]) {
            chat.messages += [c.reply, message]
            delta = c.text
        } else {
            // First turn, or the template rewrites text the cache holds: prefill the whole conversation.
            if let reply = chat.lastReply { chat.messages.append(.assistant(reply)) }
            chat.messages.append(message)
            if session.position > 0, verbose { note("(prefilling the whole conversation again)") }
            session.reset()
            chat.cachedImages = 0
            chat.cacheIsStale = false
            delta = try template.render(chat.messages, addGenerationPrompt: true)
        }
        chat.lastReply = nil
        let pieces = try PromptPiece.splice(delta, images: Array(chat.images[chat.cachedImages...]), marker: ChatTemplate.imageMarker)
        let prefill = try session.prefill(pieces, addBOS: session.position == 0 && !template.textIncludesBOS)
        chat.cachedImages = chat.images.count
        if verbose {
            note("[prefill \(prefill.tokens) tokens (\(prefill.imageTokens) visual) in \(fmt(prefill.milliseconds)) ms;"
                 + " cache \(session.position)/\(session.contextLength)]")
        }

        var stream = TextStream(tokenizer: session.tokenizer, stopStrings: stops)
        Interrupt.requested = 0
        let budget = min(sampling.maxTokens, session.contextLength - session.position)
        let report = try session.generate(
            maxTokens: budget, stopTokens: endTokens, keepInCache: true,
            sample: { logits, history in sampler.sample(logits: logits, history: history) },
            onToken: { token in
                let piece = stream.push(token)
                emit(piece)
                return stream.stopped
            },
            interrupted: Interrupt.take)
        emit(stream.finish() + "\n")
        // The reply as its tokens spell it (SentencePiece's leading space kept): what the cache holds.
        chat.lastReply = stream.generatedText
        if report.stopReason == .contextFull || session.position >= session.contextLength {
            note("(context full: \(session.contextLength) positions; /reset to start over, or raise --ctx-size)")
        } else if report.stopReason == .interrupted {
            note("(stopped)")
        }
        if verbose {
            note("[\(report.tokens.count) tokens, \(report.stopReason.rawValue), \(fmt(report.decodeTokensPerSecond)) tok/s]")
        }
    }
}

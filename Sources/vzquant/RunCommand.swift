import ArgumentParser
import Foundation
import VZQuant

/// `vzquant run -m MODEL.gguf [--mmproj MMPROJ.gguf --image IMG …] -p PROMPT …`: one prompt, streamed answer.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Answer one prompt (with images), streaming the text as it is generated.",
        discussion: """
            The chat template comes from the file's tokenizer.chat_template (vicuna/LLaVA, ChatML, SmolLM, Llama-3, \
            Llama-2) unless --chat-template names one; --raw feeds the prompt exactly as given (BOS as the file \
            says), like llama.cpp's completion tool. Images go where the prompt says <image>, else before the \
            prompt. --json prints one object instead of streaming: generated ids, text, VisionZip's choice per \
            image and the time of each phase.
            """
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var compute: ComputeOptions

    @Option(name: [.customShort("p"), .long], help: "The prompt.")
    var prompt: String

    @OptionGroup var templateOptions: TemplateOptions

    @Flag(name: .long, help: "No chat template: the prompt as given.")
    var raw = false

    @Flag(name: .long, help: "Print one JSON object (ids, text, VisionZip report, timings) instead of streaming.")
    var json = false

    @Flag(name: [.customShort("v"), .long], help: "Timings and token counts on stderr.")
    var verbose = false

    func validate() throws {
        if raw, templateOptions.chatTemplate != nil { throw ValidationError("--raw and --chat-template exclude each other") }
        if !imageOptions.image.isEmpty, modelOptions.mmproj == nil {
            throw ValidationError("--image needs the vision file: --mmproj MMPROJ.gguf")
        }
    }

    func run() throws {
        try compute.apply()
        do {
            try generate()
        } catch let e as ValidationError {
            throw e
        } catch let full as ContextFull {
            fail("\(full) (raise --ctx-size)")
        } catch {
            fail("\(error)")
        }
    }

    private func generate() throws {
        let visualTokens = try imageOptions.parsedVisualTokens()
        // A bad output path is reported before minutes of loading and encoding, not after.
        if let map = imageOptions.visionZipMap { try OutputPath.validate(map) }
        let session = try Session(model: modelOptions.model, mmproj: modelOptions.mmproj, options: modelOptions.sessionOptions)
        let template = raw ? nil : try templateOptions.template(for: session)
        var timings = RunReport.Timings()
        timings.loadMs = session.loadMs

        // Images first: their time counts towards the first token.
        let start = monotonicMilliseconds()
        var images: [EncodedImage] = []
        var imageReports: [RunReport.Image] = []
        for path in imageOptions.image {
            let (encoded, decodeMs) = try session.encodeImage(path: path, visualTokens: visualTokens, merge: imageOptions.mergeMode, reducer: imageOptions.reducer,
                                                             options: imageOptions.decodeOptions,
                                                             keepCrops: imageOptions.visionZipMap != nil)
            timings.imageDecodeMs += decodeMs
            timings.preprocessMs += encoded.timings.preprocessMs
            timings.visionMs += encoded.timings.visionMs
            timings.visionzipMs += encoded.timings.visionZipMs
            timings.projectorMs += encoded.timings.projectorMs
            images.append(encoded)
            imageReports.append(RunReport.Image(path: path, encoded: encoded))
            if verbose { note(Self.imageLine(path, encoded)) }
        }
        if let mapPath = imageOptions.visionZipMap, let first = images.first {
            try VisionZipMap.write(VisionZipMap.render(first), to: mapPath)
            if verbose { note("VisionZip map: \(mapPath)") }
        }

        // One message: the template around it (none with --raw), the images where it says <image> or first.
        let conversation = Conversation(session: session, template: template, system: template == nil ? nil : templateOptions.system)
        let prefill = try conversation.add(user: prompt, images: images).report
        timings.prefillMs = prefill.milliseconds
        timings.prefillTokensPerS = prefill.tokensPerSecond
        if verbose { note("prefill: \(prefill.tokens) tokens (\(prefill.imageTokens) visual) in \(fmt(prefill.milliseconds)) ms") }

        // Generation, streamed.
        var sampler = try Sampler(sampling.parameters)
        var output = ""
        var firstTokenMs: Double?
        Interrupt.install()
        let reply = try conversation.generate(
            maxTokens: sampling.maxTokens, stopStrings: sampling.stop, keepInCache: false,
            sample: { logits, history in
                // The first token's time is when its logits are sampled, as before.
                let token = sampler.sample(logits: logits, history: history)
                if firstTokenMs == nil { firstTokenMs = monotonicMilliseconds() - start }
                return token
            },
            onText: { piece in
                output += piece
                if !json { emit(piece) }
            },
            interrupted: Interrupt.take)
        let report = reply.report
        if !json { emit("\n") }
        if report.stopReason == .contextFull { note("stopped: context full (\(session.contextLength) positions; raise --ctx-size)") }
        if report.stopReason == .interrupted { note("stopped: interrupted") }

        timings.ttftMs = firstTokenMs ?? (monotonicMilliseconds() - start)
        timings.decodeMs = report.decodeMs
        timings.decodeTokensPerS = report.decodeTokensPerSecond
        if verbose {
            note("generated \(report.tokens.count) tokens (\(report.stopReason.rawValue)); time to first token \(fmt(timings.ttftMs)) ms;"
                 + " decode \(fmt(report.decodeTokensPerSecond)) tok/s")
        }
        if json {
            let r = RunReport(model: modelOptions.model, mmproj: modelOptions.mmproj,
                              visualTokens: images.isEmpty ? nil : visualTokens.description,
                              promptTokens: prefill.tokens - prefill.imageTokens, prefillTokens: prefill.tokens,
                              images: imageReports, tokens: report.tokens, text: output,
                              stopReason: report.stopReason, timings: timings)
            print(try r.json())
        }
    }

    static func imageLine(_ path: String, _ e: EncodedImage) -> String {
        let before = e.crops.map(\.tokensBefore).reduce(0, +)
        let t = e.timings
        return "\(path): \(e.crops.count) crop(s), \(before) encoder tokens → \(e.tokens) visual tokens;"
            + " preprocess \(fmt(t.preprocessMs)) ms, encoder \(fmt(t.visionMs)) ms, VisionZip \(fmt(t.visionZipMs)) ms,"
            + " projector \(fmt(t.projectorMs)) ms"
    }
}

func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

// request: a `POST /v1/chat/completions` body as `vzquant serve` reads it: ChatJobRequest.parse (JSON, messages,
// content parts, data: URLs, sampling and vzquant fields) under small limits, then every image the request carries
// through ImageDecoder, and the chat template rendering of its messages.
import Foundation

func fuzzRequest(_ bytes: UnsafeBufferPointer<UInt8>) {
    let salt = inputSalt(bytes)
    let limits = RequestLimits(maxTokens: 1 + salt % 512, maxImageBytes: 1 << 20, localFilesRoot: nil,
                               acceptsImages: salt & 1 == 0, defaultVisualTokens: .all)
    let request: ChatJobRequest
    do {
        request = try ChatJobRequest.parse(Data(buffer: bytes), limits: limits)
    } catch let e as APIError {
        blackHole(e.body.count)
        return
    } catch {
        return
    }
    trace("request: \(request.history.count) message(s), \(request.images.count) image(s), max_tokens \(request.maxTokens)")
    blackHole(request.stop.count &+ Int(request.sampling.seed & 0xff))
    for data in request.images {
        if let image = try? ImageDecoder.decode(data: data, name: "request.img", options: .init(maxPixels: 1 << 20, maxFileBytes: 1 << 20)) {
            blackHole(image.pixels.count)
        }
    }
    let families: [ChatTemplate.Family] = [.vicuna, .chatml, .llama3, .llama2, .smolvlm]
    let template = ChatTemplate(family: families[salt % families.count])
    let messages = (request.system.map { [ChatMessage.system($0)] } ?? []) + request.history
    if let text = try? template.render(messages, addGenerationPrompt: true) { blackHole(text.utf8.count) }
}

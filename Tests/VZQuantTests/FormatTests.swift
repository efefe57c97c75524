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

/// The file-format layer: GGUF reader/writer and safetensors reader, against themselves, against gguf-py in
/// both directions, and against hostile inputs (which must throw FormatError, never trap).
final class FormatTests: XCTestCase {
    // MARK: - GGUF round trip

    func testGGUFRoundTripEveryValueTypeAndTensorType() throws {
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("roundtrip.gguf").path
        let sample = try SampleGGUF.make()
        try sample.write(to: path)

        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(f.metadata, sample.writer.metadata)
        XCTAssertEqual(f.metadata.keys, sample.writer.metadata.keys)
        XCTAssertEqual(f.tensors, sample.writer.tensors)
        XCTAssertEqual(f.dataOffset % 32, 0)
        for t in f.tensors {
            XCTAssertEqual(t.offset % 32, 0, t.name)
            XCTAssertEqual(Array(f.bytes(of: t)), sample.data[t.name], t.name)
            XCTAssertEqual(try f.floats(of: t.name), sample.values[t.name], t.name)
        }
        // The file length is padded to the alignment, like gguf-py's output.
        XCTAssertEqual(f.mapping.count % 32, 0)

        // Typed getters.
        let m = f.metadata
        XCTAssertEqual(try m.string("general.name"), "héllo ✓ 日本")
        XCTAssertEqual(try m.int("test.u64"), 123)
        XCTAssertEqual(try m.int("test.u32"), Int(UInt32.max))
        XCTAssertThrowsError(try m.int("test.u64.max")) { XCTAssertTrue("\($0)".contains("fits in Int"), "\($0)") }
        XCTAssertEqual(try m.int("test.i8"), -128)
        XCTAssertEqual(try m.int("test.i64"), Int(Int64.min))
        XCTAssertEqual(try m.float("test.f32"), 0.1)
        XCTAssertEqual(try m.double("test.f64"), 2.718281828459045)
        XCTAssertEqual(try m.bool("test.bool"), true)
        XCTAssertEqual(try m.strings("tokenizer.ggml.tokens"), ["<s>", "</s>", "▁a", "ü", ""])
        XCTAssertEqual(try m.ints("test.ints"), [1, -2, 3, Int(Int32.max)])
        XCTAssertEqual(try m.floats("test.floats"), [0.5, -1.25, 3e-5])
        XCTAssertEqual(try m.int("absent.key", default: 7), 7)
        XCTAssertThrowsError(try m.string("absent.key")) {
            XCTAssertEqual("\($0)", "<GGUFWriter>: metadata key 'absent.key' is missing".replacingOccurrences(of: "<GGUFWriter>", with: path))
        }
        XCTAssertThrowsError(try m.string("test.u8")) { XCTAssertTrue("\($0)".contains("'test.u8' is a UINT8 (255), expected a STRING"), "\($0)") }
        XCTAssertThrowsError(try m.strings("test.ints")) { XCTAssertTrue("\($0)".contains("an array of 4 INT32"), "\($0)") }
        XCTAssertThrowsError(try m.int("general.name", default: 1))
        XCTAssertThrowsError(try f.bytes(of: "no.such.tensor"))
    }

    func testGGUFWriterStreamsAndAppliesAlignment() throws {
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a128.gguf").path
        let w = GGUFWriter(alignment: 128)
        try w.addTensor(name: "a", dims: [3], type: .f32)
        try w.addTensor(name: "b", dims: [32, 2], type: .q8_0)
        try w.addTensor(name: "empty", dims: [0, 4], type: .f16)
        let b = try QuantType.q8_0.quantize((0..<64).map { Float($0) / 7 })
        var calls: [String] = []
        try w.write(to: path) { info, sink in
            calls.append(info.name)
            switch info.name {
            case "a": try sink.write(floats: [1, 2, 3])
            case "b":  // in pieces: the sink only counts
                try sink.write(Array(b[0..<5]))
                try sink.write(Array(b[5...]))
            default: break
            }
        }
        XCTAssertEqual(calls, ["a", "b", "empty"])
        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.alignment, 128)
        XCTAssertEqual(f.metadata[GGUF.alignmentKey], .uint32(128))
        XCTAssertEqual(f.tensors.map(\.offset), [0, 128, 256])
        XCTAssertEqual(f.dataOffset % 128, 0)
        XCTAssertEqual(try f.floats(of: "a"), [1, 2, 3])
        XCTAssertEqual(Array(try f.bytes(of: "b")), b)
        XCTAssertEqual(try f.bytes(of: "empty").count, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["a128.gguf"])
    }

    /// A failed write leaves nothing at the final path (and an older file there untouched) and no temp file.
    func testGGUFWriterFailuresLeaveNoPartialFile() throws {
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.gguf").path
        func writer() throws -> GGUFWriter {
            let w = GGUFWriter()
            w.metadata.set("general.name", .string("x"))
            try w.addTensor(name: "t", dims: [4, 2], type: .f32)
            try w.addTensor(name: "u", dims: [4], type: .f32)
            return w
        }
        struct Boom: Error {}
        let cases: [(String, (GGUFTensorInfo, GGUFDataSink) throws -> Void, String)] = [
            ("too few bytes", { _, s in try s.write(floats: [1]) }, "4 bytes were written, expected"),
            ("too many bytes", { i, s in try s.write(floats: [Float](repeating: 0, count: i.elementCount + 1)) }, "more than its"),
            ("closure throws", { i, _ in if i.name == "u" { throw Boom() } }, ""),
        ]
        for (label, body, message) in cases {
            XCTAssertThrowsError(try writer().write(to: path, tensorData: body), label) { error in
                if !message.isEmpty { XCTAssertTrue("\(error)".contains(message), "\(label): \(error)") }
            }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], label)
        }
        // An existing file survives a failed rewrite.
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try writer().write(to: path) { _, _ in throw Boom() })
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.gguf"])
        // Declaration errors.
        let w = try writer()
        XCTAssertThrowsError(try w.addTensor(name: "t", dims: [4], type: .f32)) { XCTAssertTrue("\($0)".contains("duplicate"), "\($0)") }
        XCTAssertThrowsError(try w.addTensor(name: "q", dims: [33], type: .q8_0)) { XCTAssertTrue("\($0)".contains("block size 32"), "\($0)") }
        XCTAssertThrowsError(try w.addTensor(name: "5d", dims: [1, 1, 1, 1, 1], type: .f32))
        XCTAssertThrowsError(try w.addTensor(name: "huge", dims: [1 << 40, 1 << 40], type: .f32))
        // Mixed array element types are refused at write time, with the key named.
        w.metadata.set("bad.array", .array(.int32, [.int32(1), .uint8(2)]))
        XCTAssertThrowsError(try w.write(to: path, data: [:])) { XCTAssertTrue("\($0)".contains("'bad.array'"), "\($0)") }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
    }

    // MARK: - GGUF interop with gguf-py

    /// A file written by gguf.GGUFWriter (tools/make_format_fixtures.py) reads back exactly as gguf-py saw it.
    func testReadsGGUFWrittenByPython() throws {
        let dir = try FormatFixtures.directory()
        let f = try GGUFFile(path: dir.appendingPathComponent("python_writer.gguf").path)
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("python_writer.json"))) as! [String: Any]
        XCTAssertEqual(f.alignment, expected["alignment"] as? Int)
        let meta = expected["metadata"] as! [[String: Any]]
        XCTAssertEqual(f.metadata.keys, meta.map { $0["key"] as! String })
        for m in meta {
            let key = m["key"] as! String
            XCTAssertEqual(f.metadata[key], try FormatFixtures.value(fromJSON: m["value"]!), key)
        }
        let tensors = expected["tensors"] as! [[String: Any]]
        XCTAssertEqual(f.tensors.map(\.name), tensors.map { $0["name"] as! String })
        for (t, e) in zip(f.tensors, tensors) {
            XCTAssertEqual(t.type, QuantType(name: e["type"] as! String), t.name)
            XCTAssertEqual(t.dims, e["dims"] as! [Int], t.name)
            XCTAssertEqual(t.offset % 64, 0)
            let want = (e["values"] as! [Double]).map { Float($0) }
            XCTAssertEqual(try f.floats(of: t.name), want, t.name)
        }
        XCTAssertEqual(try f.metadata.strings("test.strings"), ["<s>", "</s>", "▁the", "ü", ""])
        XCTAssertThrowsError(try f.metadata.int("test.u64", default: 0), "u64.max does not fit in Int")
        XCTAssertEqual(try f.metadata.ints("test.nested.0", default: []), [])
    }

    /// A file written by our writer passes gguf-py's reader (tools/gguf_verify.py): names, dims, types,
    /// metadata of every type and dequantized values.
    func testPythonGGUFReaderReadsOurFile() throws {
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ours.gguf").path
        let expectedPath = dir.appendingPathComponent("ours.json").path
        let sample = try SampleGGUF.make()
        try sample.write(to: path)
        try sample.expectedJSON(alignment: 32).write(toFile: expectedPath, atomically: true, encoding: .utf8)
        try FormatFixtures.runPython(["tools/gguf_verify.py", path, expectedPath])
    }

    // MARK: - GGUF hostile inputs

    func testGGUFEveryTruncationThrows() throws {
        let bytes = try SampleGGUF.make().bytes()
        let full = try GGUFFile(mapping: MappedFile(copying: bytes, name: "full.gguf"))
        // Past the last tensor's data only end padding remains; any shorter prefix must fail.
        let needed = full.dataOffset + full.tensors.map { $0.offset + $0.byteCount }.max()!
        for n in 0..<needed {
            XCTAssertThrowsError(try GGUFFile(mapping: MappedFile(copying: bytes[0..<n], name: "cut.gguf")), "prefix \(n)") {
                XCTAssertTrue($0 is FormatError, "prefix \(n): \($0)")
            }
        }
        XCTAssertNoThrow(try GGUFFile(mapping: MappedFile(copying: bytes[0..<needed], name: "cut.gguf")))
    }

    func testGGUFHostileHeaders() throws {
        let f32Tensor: (inout GGUFBuilder) -> Void = { $0.tensor("t", dims: [4], type: 0, offset: 0) }
        let cases: [(String, GGUFBuilder, String)] = [
            ("empty file", GGUFBuilder(raw: []), "too short for the magic"),
            ("bad magic", GGUFBuilder(magic: Array("GGML".utf8)), "magic is 'GGML', expected 'GGUF'"),
            ("version 1", GGUFBuilder(version: 1), "unsupported GGUF version 1"),
            ("version 4", GGUFBuilder(version: 4), "unsupported GGUF version 4"),
            ("big-endian", GGUFBuilder(version: UInt32(3).byteSwapped), "big-endian"),
            ("huge tensor count", GGUFBuilder(tensorCount: 1 << 60), "tensor count 1152921504606846976 at offset 8 is impossible"),
            ("huge kv count", GGUFBuilder(kvCount: 1 << 60), "metadata count 1152921504606846976 at offset 16 is impossible"),
            ("huge string", GGUFBuilder(kvCount: 1).u64(1 << 40).raw([UInt8](repeating: 97, count: 64)), "metadata key #0 length 1099511627776 at offset 24 runs past the end"),
            ("bad utf-8 key", GGUFBuilder(kvCount: 1).u64(2).raw([0xFF, 0xFE]).u32(4).u32(1), "metadata key #0 at offset 24 is not valid UTF-8"),
            ("bad utf-8 string value", GGUFBuilder(kvCount: 1).string("k").u32(8).u64(1).raw([0xC3]), "metadata key 'k' at offset 37 is not valid UTF-8"),
            ("unknown value type", GGUFBuilder(kvCount: 1).string("k").u32(13).u32(0), "metadata key 'k' has unknown value type 13"),
            ("bool 2", GGUFBuilder(kvCount: 1).string("k").u32(7).u8(2), "BOOL with value 2"),
            ("huge array", GGUFBuilder(kvCount: 1).string("k").u32(9).u32(4).u64(1 << 60).u32(0), "array length 1152921504606846976"),
            ("huge string array", GGUFBuilder(kvCount: 1).string("k").u32(9).u32(8).u64(3).u64(1 << 62).raw([UInt8](repeating: 0, count: 32)), "k'[0] length 4611686018427387904"),
            ("unknown element type", GGUFBuilder(kvCount: 1).string("k").u32(9).u32(99).u64(0), "unknown array element type 99"),
            ("deep nesting", GGUFBuilder.nested(depth: 20), "nests arrays deeper than 8"),
            ("duplicate key", GGUFBuilder(kvCount: 2).string("k").u32(4).u32(1).string("k").u32(4).u32(2), "duplicate metadata key 'k'"),
            ("alignment 48", GGUFBuilder(kvCount: 1).string("general.alignment").u32(4).u32(48), "general.alignment is 48, expected a power of two"),
            ("alignment 0", GGUFBuilder(kvCount: 1).string("general.alignment").u32(4).u32(0), "expected a power of two"),
            ("alignment string", GGUFBuilder(kvCount: 1).string("general.alignment").u32(8).string("32"), "expected a power of two"),
            ("unknown ggml type", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [32], type: 5, offset: 0) }, "tensor 't' has unknown or unsupported ggml type 5"),
            ("ggml type 2^31", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [32], type: 1 << 31, offset: 0) }, "unknown or unsupported ggml type 2147483648"),
            ("n_dims 5", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [1, 1, 1, 1, 1], type: 0, offset: 0) }, "tensor 't' has 5 dimensions, at most 4"),
            ("n_dims 2^32-1", GGUFBuilder(tensorCount: 1).string("t").u32(.max).raw([UInt8](repeating: 0, count: 32)), "4294967295 dimensions"),
            ("dim 2^62+1 (wraps in cq_row_bytes)", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [(1 << 62) + 1], type: 0, offset: 0); $0.pad(); $0.zeros(64) }, "overflow"),
            ("dims overflow", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [1 << 32, 1 << 32, 1 << 32], type: 0, offset: 0) }, "overflow"),
            ("dim 2^64-1", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [.max], type: 0, offset: 0) }, "dim 0 is 18446744073709551615, too large"),
            ("row not whole blocks", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [33, 2], type: 8, offset: 0) }, "innermost dim 33 is not a multiple of the block size 32"),
            ("offset past end", GGUFBuilder(tensorCount: 1).building { $0.tensor("blk.0.attn_q.weight", dims: [1024], type: 0, offset: 64); $0.pad(); $0.zeros(100) },
             "tensor 'blk.0.attn_q.weight' data [offset 64, 4096 bytes] runs past the end of the file"),
            ("offset 2^64-1", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [4], type: 0, offset: .max) }, "offset 18446744073709551615 is too large"),
            ("offset near Int.max", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [4], type: 0, offset: UInt64(Int.max) - 31) }, "runs past the end"),
            ("misaligned", GGUFBuilder(tensorCount: 1).building { $0.tensor("t", dims: [4], type: 0, offset: 4); $0.pad(); $0.zeros(64) }, "offset 4 is not a multiple of the alignment 32"),
            ("duplicate tensor", GGUFBuilder(tensorCount: 2).building { $0.tensor("t", dims: [4], type: 0, offset: 0); $0.tensor("t", dims: [4], type: 0, offset: 32); $0.pad(); $0.zeros(64) }, "duplicate tensor name 't'"),
            ("overlap", GGUFBuilder(tensorCount: 2).building { $0.tensor("a", dims: [16], type: 0, offset: 0); $0.tensor("b", dims: [4], type: 0, offset: 32); $0.pad(); $0.zeros(64) }, "tensors 'a' [offset 0, 64 bytes] and 'b' [offset 32] overlap"),
            ("tensor data missing", GGUFBuilder(tensorCount: 1).building(f32Tensor), "runs past the end of the file"),
        ]
        for (label, builder, message) in cases {
            let name = "\(label).gguf"
            XCTAssertThrowsError(try GGUFFile(mapping: MappedFile(copying: builder.bytes, name: name)), label) { error in
                guard let e = error as? FormatError else { return XCTFail("\(label): not a FormatError: \(error)") }
                XCTAssertEqual(e.file, name, label)
                XCTAssertTrue(e.message.contains(message), "\(label): got «\(e)», expected it to contain «\(message)»")
                XCTAssertFalse(e.description.contains("\n"), "\(label): one line")
            }
        }
        // Sanity: the builder makes valid files when nothing is wrong.
        var ok = GGUFBuilder(tensorCount: 1, kvCount: 1).string("general.alignment").u32(4).u32(64)
        ok.tensor("t", dims: [4, 2], type: 0, offset: 0)
        ok.pad(64)
        ok.zeros(32)
        let f = try GGUFFile(mapping: MappedFile(copying: ok.bytes, name: "ok.gguf"))
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.dataOffset % 64, 0)
        XCTAssertEqual(try f.bytes(of: "t").count, 32)
        // Version 2 has the same layout.
        XCTAssertNoThrow(try GGUFFile(mapping: MappedFile(copying: GGUFBuilder(version: 2).bytes, name: "v2.gguf")))
    }

    func testMissingFilesAndDirectories() throws {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) {
            XCTAssertEqual("\($0)", "/nonexistent/model.gguf: cannot open: No such file or directory")
        }
        XCTAssertThrowsError(try GGUFFile(path: NSTemporaryDirectory())) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty.gguf").path
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        XCTAssertThrowsError(try GGUFFile(path: empty)) { XCTAssertTrue("\($0)".contains("too short"), "\($0)") }
    }

    // MARK: - safetensors

    func testReadsSafetensorsFixture() throws {
        let dir = try FormatFixtures.directory()
        let f = try SafeTensorsFile(path: dir.appendingPathComponent("tiny.safetensors").path)
        try FormatFixtures.checkTiny(f.tensors.map { ($0.name, $0) }, metadata: f.metadata, in: dir)
        XCTAssertEqual(f.dataOffset % 8, 0)
        XCTAssertEqual(try f.tensor("model.proj.weight").ggmlDims, [3, 2])
        let ids = try f.tensor("model.position_ids")
        XCTAssertThrowsError(try ids.floats()) {
            XCTAssertTrue("\($0)".hasSuffix("tensor 'model.position_ids' has dtype I64, which is not supported (F32, F16 or BF16 only)"), "\($0)")
        }
        XCTAssertThrowsError(try f.tensor("nope"))
    }

    func testShardedAndSingleCheckpoints() throws {
        let fixtures = try FormatFixtures.directory()
        let sharded = try SafeTensorsCheckpoint(path: fixtures.appendingPathComponent("sharded").path)
        XCTAssertEqual(sharded.files.count, 2)
        try FormatFixtures.checkTiny(sharded.names.map { ($0, sharded[$0]!) }, metadata: nil, in: fixtures)
        XCTAssertTrue(sharded["model.proj.weight"]!.file.hasSuffix("model-00002-of-00002.safetensors"))
        // The index file itself works as the path too.
        XCTAssertEqual(try SafeTensorsCheckpoint(path: fixtures.appendingPathComponent("sharded/model.safetensors.index.json").path).names, sharded.names)

        // A directory holding a single model.safetensors.
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("tiny.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        let single = try SafeTensorsCheckpoint(path: dir.path)
        XCTAssertEqual(single.names, sharded.names)
        XCTAssertEqual(Array(single["model.embed.weight"]!.bytes), Array(sharded["model.embed.weight"]!.bytes))
        try FormatFixtures.checkTiny(single.names.map { ($0, single[$0]!) }, metadata: single.files[0].metadata, in: fixtures)
        // Tensors keep their mapping alive after the checkpoint is gone.
        var kept: SafeTensor?
        do { kept = try SafeTensorsCheckpoint(path: dir.path).tensor("model.embed.weight") }
        XCTAssertEqual(try kept!.floats().count, 6)

        let emptyDir = dir.appendingPathComponent("nothing")
        try FileManager.default.createDirectory(at: emptyDir, withIntermediateDirectories: false)
        XCTAssertThrowsError(try SafeTensorsCheckpoint(path: emptyDir.path)) { XCTAssertTrue("\($0)".contains("neither model.safetensors.index.json nor model.safetensors"), "\($0)") }
    }

    func testShardedHostile() throws {
        let fixtures = try FormatFixtures.directory()
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let shard1 = "model-00001-of-00002.safetensors"
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("sharded/\(shard1)"), to: dir.appendingPathComponent(shard1))
        let index = dir.appendingPathComponent("model.safetensors.index.json").path
        let cases: [(String, String, String)] = [
            ("missing shard", #"{"weight_map": {"model.embed.weight": "\#(shard1)", "x": "model-00002-of-00002.safetensors"}}"#,
             "shard 'model-00002-of-00002.safetensors' (holding 'x' and 0 more tensors) is missing"),
            ("escaping path", #"{"weight_map": {"x": "../evil.safetensors"}}"#, "expected a file name in the same directory"),
            ("tensor not in shard", #"{"weight_map": {"nope": "\#(shard1)"}}"#, "weight_map puts tensor 'nope' in '\(shard1)', but that shard has no such tensor"),
            ("no weight_map", #"{"metadata": {}}"#, "bad index JSON: missing 'weight_map'"),
            ("not json", "{", "bad index JSON"),
        ]
        for (label, json, message) in cases {
            try json.write(toFile: index, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try SafeTensorsCheckpoint(path: dir.path), label) { error in
                XCTAssertTrue(error is FormatError, "\(label): \(error)")
                XCTAssertTrue("\(error)".contains(message), "\(label): got «\(error)», expected «\(message)»")
            }
        }
    }

    func testSafetensorsHostile() throws {
        let f32x4 = [UInt8](repeating: 0, count: 16)
        let cases: [(String, [UInt8], String)] = [
            ("empty", [], "too short for the 8-byte header length"),
            ("header past EOF", SafeTensorsBuilder.raw(headerLength: 1000, rest: Array("{}".utf8)), "header length 1000 runs past the end of the file (10 bytes)"),
            ("header length 2^63", SafeTensorsBuilder.raw(headerLength: 1 << 63, rest: []), "runs past the end"),
            ("malformed JSON", SafeTensorsBuilder.file(#"{"a": {"dtype": "F32""#, data: []), "bad JSON header"),
            ("not an object", SafeTensorsBuilder.file("[1, 2]", data: []), "bad JSON header"),
            ("entry not an object", SafeTensorsBuilder.file(#"{"a": 5}"#, data: []), "bad JSON header"),
            ("missing dtype", SafeTensorsBuilder.file(#"{"a": {"shape": [4], "data_offsets": [0, 16]}}"#, data: f32x4), "missing 'dtype'"),
            ("unknown dtype", SafeTensorsBuilder.entry("a", dtype: "F12", shape: [4], offsets: [0, 16], data: f32x4), "tensor 'a' has unknown dtype 'F12'"),
            ("offsets out of range", SafeTensorsBuilder.entry("a", dtype: "F32", shape: [8], offsets: [0, 32], data: f32x4), "tensor 'a' data [offset 0, 32 bytes] runs past the end of the data section (16 bytes)"),
            ("size mismatch", SafeTensorsBuilder.entry("a", dtype: "F32", shape: [3], offsets: [0, 16], data: f32x4), "tensor 'a' F32 [3] needs 12 bytes but data_offsets [0, 16] span 16"),
            ("begin > end", SafeTensorsBuilder.entry("a", dtype: "F32", shape: [0], offsets: [16, 8], data: f32x4), "are invalid"),
            ("negative offset", SafeTensorsBuilder.entry("a", dtype: "F32", shape: [1], offsets: [-4, 0], data: f32x4), "are invalid"),
            ("negative shape", SafeTensorsBuilder.entry("a", dtype: "F32", shape: [-1, -4], offsets: [0, 16], data: f32x4), "negative dimension"),
            ("three offsets", SafeTensorsBuilder.file(#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16, 16]}}"#, data: f32x4), "must be [begin, end]"),
            ("float offset", SafeTensorsBuilder.file(#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16.5]}}"#, data: f32x4), "bad JSON header"),
            ("huge offset", SafeTensorsBuilder.file(#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 99999999999999999999999]}}"#, data: f32x4), "bad JSON header"),
            ("shape overflow", SafeTensorsBuilder.file(#"{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}"#, data: f32x4), "shape [4294967296, 4294967296] overflows"),
            ("overlap", SafeTensorsBuilder.file(#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#, data: f32x4), "tensors 'a' and 'b' overlap"),
            ("bad metadata", SafeTensorsBuilder.file(#"{"__metadata__": {"a": 1}}"#, data: []), "bad JSON header"),
            ("bad utf-8 header", SafeTensorsBuilder.raw(headerLength: 4, rest: [0x7B, 0xFF, 0xFE, 0x7D]), "bad JSON header"),
        ]
        for (label, bytes, message) in cases {
            XCTAssertThrowsError(try SafeTensorsFile(mapping: MappedFile(copying: bytes, name: "x.safetensors")), label) { error in
                XCTAssertTrue(error is FormatError, "\(label): \(error)")
                XCTAssertTrue("\(error)".hasPrefix("x.safetensors: "), "\(label): \(error)")
                XCTAssertTrue("\(error)".contains(message), "\(label): got «\(error)», expected «\(message)»")
                XCTAssertFalse("\(error)".contains("\n"), "\(label): one line: \(error)")
            }
        }
        // Dtypes other than F32/F16/BF16 are read and reported as such.
        let u8 = try SafeTensorsFile(mapping: MappedFile(copying: SafeTensorsBuilder.entry("m", dtype: "BOOL", shape: [2, 2], offsets: [0, 4], data: [1, 0, 0, 1]), name: "b.safetensors"))
        XCTAssertEqual(u8.tensors.first?.dtype, .bool)
        XCTAssertThrowsError(try u8.tensors[0].quantType())
    }

    /// A header length above 100 MB is refused before anything is parsed (sparse file: no disk cost).
    func testSafetensorsHeaderSizeLimit() throws {
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("big.safetensors").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(SafeTensorsBuilder.raw(headerLength: 200 << 20, rest: [])))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.truncate(atOffset: 300 << 20)
        try h.close()
        XCTAssertThrowsError(try SafeTensorsFile(path: path)) { XCTAssertTrue("\($0)".contains("exceeds the 100 MB limit"), "\($0)") }
    }

    // MARK: - mutation fuzz

    /// Thousands of seeded mutations of valid files: every parse succeeds or throws; none may trap.
    func testMutationFuzz() throws {
        let gguf = try SampleGGUF.make(small: true).bytes()
        let st = try Array(Data(contentsOf: FormatFixtures.directory().appendingPathComponent("tiny.safetensors")))
        var rng = SeededRandom(seed: 0xF022)
        var outcomes = [0, 0, 0, 0]  // gguf ok, gguf threw, safetensors ok, safetensors threw
        for _ in 0..<3000 {
            let g = FormatFuzz.mutate(gguf, &rng)
            if FormatFuzz.parseGGUF(g) { outcomes[0] += 1 } else { outcomes[1] += 1 }
            let s = FormatFuzz.mutate(st, &rng)
            if FormatFuzz.parseSafeTensors(s) { outcomes[2] += 1 } else { outcomes[3] += 1 }
        }
        // Both branches are exercised (a mutator that always breaks or never breaks the file tests little).
        XCTAssertGreaterThan(outcomes[0], 50, "\(outcomes)")
        XCTAssertGreaterThan(outcomes[1], 50, "\(outcomes)")
        XCTAssertGreaterThan(outcomes[2], 50, "\(outcomes)")
        XCTAssertGreaterThan(outcomes[3], 50, "\(outcomes)")
    }
}

// MARK: - helpers

/// Shared by this test and tools/fuzz: parse, and on success touch every tensor byte range.
enum FormatFuzz {
    static func parseGGUF(_ bytes: [UInt8]) -> Bool {
        guard let f = try? GGUFFile(mapping: MappedFile(copying: bytes, name: "fuzz.gguf")) else { return false }
        for t in f.tensors {
            let b = f.bytes(of: t)
            if let first = b.first, let last = b.last { _ = first &+ last }
            _ = try? f.floats(of: t.name)
        }
        let m = f.metadata
        for key in m.keys {
            _ = try? m.string(key)
            _ = try? m.ints(key)
            _ = try? m.floats(key)
            _ = try? m.strings(key)
        }
        return true
    }

    static func parseSafeTensors(_ bytes: [UInt8]) -> Bool {
        guard let f = try? SafeTensorsFile(mapping: MappedFile(copying: bytes, name: "fuzz.safetensors")) else { return false }
        for t in f.tensors {
            if let first = t.bytes.first, let last = t.bytes.last { _ = first &+ last }
            _ = try? t.floats()
        }
        return true
    }

    /// 1–4 edits: flip a bit, set a byte to an interesting value, overwrite a little-endian u32/u64 field with
    /// an interesting value, truncate, insert or delete a few bytes.
    static func mutate(_ input: [UInt8], _ rng: inout SeededRandom) -> [UInt8] {
        var b = input
        let interesting: [UInt64] = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 63, 64, 255, 256, 0x7FFF_FFFF, 0xFFFF_FFFF,
                                     1 << 32, 1 << 40, 1 << 60, UInt64(Int64.max), .max]
        for _ in 0..<Int(rng.next() % 4 + 1) {
            guard !b.isEmpty else { break }
            let at = Int(rng.next() % UInt64(b.count))
            switch rng.next() % 7 {
            case 0: b[at] ^= UInt8(1 << (rng.next() % 8))
            case 1: b[at] = UInt8(truncatingIfNeeded: interesting[Int(rng.next() % UInt64(interesting.count))])
            case 2, 3:
                let v = interesting[Int(rng.next() % UInt64(interesting.count))]
                let width = rng.next() % 2 == 0 ? 4 : 8
                for k in 0..<width where at + k < b.count { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
            case 4: b.removeSubrange(at...)
            case 5: b.insert(contentsOf: (0..<Int(rng.next() % 8 + 1)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
            default: b.removeSubrange(at..<min(b.count, at + Int(rng.next() % 8 + 1)))
            }
        }
        return b
    }
}


/// A GGUF with every metadata type and F32/F16/Q8_0/Q4_0/BF16 tensors, plus the expectations for gguf_verify.py.
struct SampleGGUF {
    let writer: GGUFWriter
    let data: [String: [UInt8]]
    let values: [String: [Float]]

    static func make(small: Bool = false) throws -> SampleGGUF {
        let w = GGUFWriter()
        let m: [(String, GGUFValue)] = [
            ("general.architecture", .string("vzq-test")),
            ("general.name", .string("héllo ✓ 日本")),
            ("test.u8", .uint8(255)),
            ("test.i8", .int8(-128)),
            ("test.u16", .uint16(65535)),
            ("test.i16", .int16(-32768)),
            ("test.u32", .uint32(.max)),
            ("test.i32", .int32(.min)),
            ("test.f32", .float32(0.1)),
            ("test.bool", .bool(true)),
            ("test.bool_false", .bool(false)),
            ("test.empty", .string("")),
            ("test.u64", .uint64(123)),
            ("test.u64.max", .uint64(.max)),
            ("test.i64", .int64(.min)),
            ("test.f64", .float64(2.718281828459045)),
            ("tokenizer.ggml.tokens", .strings(["<s>", "</s>", "▁a", "ü", ""])),
            ("test.ints", .int32s([1, -2, 3, .max])),
            ("test.floats", .float32s([0.5, -1.25, 3e-5])),
            ("test.u64s", .array(.uint64, [.uint64(0), .uint64(.max)])),
            ("test.bools", .array(.bool, [.bool(true), .bool(false)])),
            ("test.f64s", .array(.float64, [.float64(-0.0), .float64(1e300)])),
            ("test.nested", .array(.array, [.int32s([1, 2]), .strings(["x"]), .array(.float32, [])])),
            ("test.empty_array", .array(.string, [])),
        ]
        for (k, v) in small ? Array(m.prefix(4)) + [m[16], m[22]] : m { w.metadata.set(k, v) }

        var rng = SeededRandom(seed: 99)
        var data: [String: [UInt8]] = [:]
        var values: [String: [Float]] = [:]
        let shapes: [(String, [Int], QuantType)] = small
            ? [("a.weight", [32, 2], .q8_0), ("b.weight", [32], .q4_0), ("c.bias", [3], .f32)]
            : [("token_embd.weight", [64, 3], .f32), ("output_norm.weight", [7], .f32), ("blk.0.attn_q.weight", [32, 2], .f16),
               ("blk.0.ffn_up.weight", [96, 5], .q8_0), ("blk.0.ffn_down.weight", [64, 3, 2], .q4_0), ("v.proj.weight", [8, 2], .bf16)]
        for (name, dims, type) in shapes {
            let n = dims.reduce(1, *)
            let x = (0..<n).map { _ in Float.random(in: -2...2, using: &rng) }
            let q = try type.quantize(x)
            data[name] = q
            values[name] = try q.withUnsafeBytes { try type.dequantize($0, count: n) }
            try w.addTensor(name: name, dims: dims, type: type)
        }
        return SampleGGUF(writer: w, data: data, values: values)
    }

    func write(to path: String) throws { try writer.write(to: path, data: data) }

    func bytes() throws -> [UInt8] {
        let dir = try FormatFixtures.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.gguf").path
        try write(to: path)
        return try Array(Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// tools/gguf_verify.py's EXPECTED.json, written by hand so that floats keep their exact values.
    func expectedJSON(alignment: Int) -> String {
        let meta = writer.metadata.entries.map { "{\"key\": \(FormatFixtures.jsonString($0.key)), \"value\": \(FormatFixtures.json($0.value))}" }
        let tensors = writer.tensors.map { t in
            "{\"name\": \(FormatFixtures.jsonString(t.name)), \"type\": \"\(t.type.description.uppercased().replacingOccurrences(of: "_K", with: "_K"))\", "
                + "\"dims\": \(t.dims), \"values\": [\(values[t.name]!.map { "\(Double($0))" }.joined(separator: ", "))]}"
        }
        return "{\"alignment\": \(alignment),\n\"metadata\": [\n" + meta.joined(separator: ",\n") + "],\n\"tensors\": [\n"
            + tensors.joined(separator: ",\n") + "]}\n"
    }
}

enum FormatFixtures {
    static func directory() throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        return root.appendingPathComponent("formats", isDirectory: true)
    }

    static func tempDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vzq-formats-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs python3 from the repository root; fails (never skips) when python3 or gguf is missing.
    static func runPython(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        func run(_ args: [String]) throws -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3"] + args
            p.currentDirectoryURL = repoRoot
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: out, as: UTF8.self))
        }
        let probe = try? run(["-c", "import gguf, numpy"])
        guard let probe, probe.0 == 0 else {
            return XCTFail("python3 with the gguf package is required for the interop test: pip install gguf "
                           + "(\(probe.map { $0.1.split(separator: "\n").last.map(String.init) ?? "" } ?? "python3 not found"))", file: file, line: line)
        }
        let (status, output) = try run(args)
        XCTAssertEqual(status, 0, "python3 \(args.joined(separator: " ")):\n\(output)", file: file, line: line)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    static func json(_ v: GGUFValue) -> String {
        let scalar: String
        switch v {
        case let .array(element, values):
            return "{\"type\": \"ARRAY\", \"element\": \"\(element)\", \"value\": [" + values.map(json).joined(separator: ", ") + "]}"
        case let .string(s): scalar = jsonString(s)
        case let .float32(x): scalar = "\(Double(x))"
        case let .float64(x): scalar = "\(x)"
        default: scalar = v.description
        }
        return "{\"type\": \"\(v.type)\", \"value\": \(scalar)}"
    }

    /// The inverse of `json(_:)`, from JSONSerialization's objects.
    static func value(fromJSON any: Any) throws -> GGUFValue {
        let d = try XCTUnwrap(any as? [String: Any])
        let type = try XCTUnwrap(GGUFValueType.allCases.first { $0.description == d["type"] as? String })
        let v = d["value"]!
        func int<T: FixedWidthInteger>(_: T.Type) throws -> T {
            if let n = v as? NSNumber, let s = Optional(n.stringValue), let x = T(s) { return x }
            throw FormatError(file: "json", "bad \(T.self): \(v)")
        }
        switch type {
        case .uint8: return .uint8(try int(UInt8.self))
        case .int8: return .int8(try int(Int8.self))
        case .uint16: return .uint16(try int(UInt16.self))
        case .int16: return .int16(try int(Int16.self))
        case .uint32: return .uint32(try int(UInt32.self))
        case .int32: return .int32(try int(Int32.self))
        case .uint64: return .uint64(try int(UInt64.self))
        case .int64: return .int64(try int(Int64.self))
        case .float32: return .float32(Float(try XCTUnwrap(v as? Double)))
        case .float64: return .float64(try XCTUnwrap(v as? Double))
        case .bool: return .bool(try XCTUnwrap(v as? Bool))
        case .string: return .string(try XCTUnwrap(v as? String))
        case .array:
            let element = try XCTUnwrap(GGUFValueType.allCases.first { $0.description == d["element"] as? String })
            return .array(element, try (v as! [Any]).map { try value(fromJSON: $0) })
        }
    }

    /// Compares tensors named as in tiny.json (from tools/make_format_fixtures.py).
    static func checkTiny(_ tensors: [(String, SafeTensor)], metadata: [String: String]?, in dir: URL) throws {
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tiny.json"))) as! [String: Any]
        if let metadata { XCTAssertEqual(metadata, expected["metadata"] as? [String: String]) }
        let list = expected["tensors"] as! [[String: Any]]
        XCTAssertEqual(tensors.map(\.0).sorted(), list.map { $0["name"] as! String }.sorted())
        let byName = Dictionary(uniqueKeysWithValues: tensors)
        for e in list {
            let name = e["name"] as! String
            let t = try XCTUnwrap(byName[name], name)
            XCTAssertEqual(t.dtype.rawValue, e["dtype"] as? String, name)
            XCTAssertEqual(t.shape, e["shape"] as? [Int], name)
            XCTAssertEqual(t.byteCount, t.shape.reduce(1, *) * t.dtype.elementSize, name)
            if t.dtype == .i64 {
                let ints = (0..<t.elementCount).map { Int64(littleEndian: t.bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
                XCTAssertEqual(ints, (e["values"] as! [NSNumber]).map(\.int64Value), name)
            } else {
                XCTAssertEqual(try t.floats(), (e["values"] as! [Double]).map { Float($0) }, name)
            }
        }
    }
}

/// Builds GGUF bytes field by field, for hostile headers.
struct GGUFBuilder {
    var bytes: [UInt8] = []

    init(raw: [UInt8]) { bytes = raw }

    init(magic: [UInt8] = Array("GGUF".utf8), version: UInt32 = 3, tensorCount: UInt64 = 0, kvCount: UInt64 = 0) {
        bytes = magic
        self = self.u32(version).u64(tensorCount).u64(kvCount)
    }

    func raw(_ b: [UInt8]) -> GGUFBuilder { var c = self; c.bytes += b; return c }
    func u8(_ v: UInt8) -> GGUFBuilder { raw([v]) }
    func u32(_ v: UInt32) -> GGUFBuilder { withUnsafeBytes(of: v.littleEndian) { raw(Array($0)) } }
    func u64(_ v: UInt64) -> GGUFBuilder { withUnsafeBytes(of: v.littleEndian) { raw(Array($0)) } }
    func string(_ s: String) -> GGUFBuilder { u64(UInt64(s.utf8.count)).raw(Array(s.utf8)) }
    func building(_ body: (inout GGUFBuilder) -> Void) -> GGUFBuilder { var c = self; body(&c); return c }

    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        var c = string(name).u32(UInt32(dims.count))
        for d in dims { c = c.u64(d) }
        self = c.u32(type).u64(offset)
    }

    mutating func pad(_ alignment: Int = 32) { bytes += [UInt8](repeating: 0, count: (alignment - bytes.count % alignment) % alignment) }
    mutating func zeros(_ n: Int) { bytes += [UInt8](repeating: 0, count: n) }

    /// One key holding arrays nested `depth` deep.
    static func nested(depth: Int) -> GGUFBuilder {
        var b = GGUFBuilder(kvCount: 1).string("k").u32(9)
        for _ in 0..<depth { b = b.u32(9).u64(1) }
        return b.u32(4).u64(0)
    }
}

enum SafeTensorsBuilder {
    static func raw(headerLength: UInt64, rest: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: headerLength.littleEndian) { Array($0) } + rest
    }

    static func file(_ header: String, data: [UInt8]) -> [UInt8] {
        raw(headerLength: UInt64(header.utf8.count), rest: Array(header.utf8) + data)
    }

    static func entry(_ name: String, dtype: String, shape: [Int], offsets: [Int], data: [UInt8]) -> [UInt8] {
        file("{\"\(name)\": {\"dtype\": \"\(dtype)\", \"shape\": \(shape), \"data_offsets\": \(offsets)}}", data: data)
    }
}

import Foundation
import VZQKernels
import VZQSupport

/// Hugging Face safetensors, read through a memory mapping (tensor data is never copied).
///
/// Layout: u64 little-endian N, then N bytes of JSON header, then the data section. The header maps each
/// tensor name to {"dtype": "F16", "shape": [out, in], "data_offsets": [begin, end]} with offsets relative
/// to the data section; the optional "__metadata__" entry maps strings to strings.
public enum SafeTensorsDType: String, Sendable, CaseIterable, CustomStringConvertible {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    public var elementSize: Int {
        switch self {
        case .f64, .i64, .u64: 8
        case .f32, .i32, .u32: 4
        case .f16, .bf16, .i16, .u16: 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: 1
        }
    }

    /// The runtime's type for the float dtypes it converts from; nil for the others (report them as unsupported).
    public var quantType: QuantType? {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        default: nil
        }
    }

    public var description: String { rawValue }
}

/// One tensor of a safetensors file: its description and its bytes inside the mapping. Holding a
/// SafeTensor keeps the mapping alive, so `bytes` stays valid as long as the value exists.
public struct SafeTensor: Sendable, CustomStringConvertible {
    public let name: String
    public let dtype: SafeTensorsDType
    /// Row-major, outermost first (PyTorch order): a linear weight is [out, in].
    public let shape: [Int]
    public let elementCount: Int
    public let byteCount: Int
    /// Absolute offset of the data in the file.
    public let fileOffset: Int
    public let mapping: MappedFile

    public var file: String { mapping.path }

    /// The shape in GGUF/ggml order (innermost first), as GGUFWriter.addTensor takes it.
    public var ggmlDims: [Int] { shape.reversed() }

    /// Raw little-endian element bytes. The data section starts at 8 + header length, so the pointer may be
    /// unaligned for the element type: read with loadUnaligned or hand the bytes to a C routine.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapping.buffer[fileOffset..<(fileOffset + byteCount)])
    }

    /// F32/F16/BF16 as a QuantType, or a FormatError saying the dtype is not supported.
    public func quantType() throws -> QuantType {
        guard let t = dtype.quantType else {
            throw FormatError(file: file, "tensor '\(name)' has dtype \(dtype), which is not supported (F32, F16 or BF16 only)")
        }
        return t
    }

    /// The values as fp32 (allocates; F32/F16/BF16 only).
    public func floats() throws -> [Float] {
        try quantType().dequantize(bytes, count: elementCount)
    }

    public var description: String { "\(name) \(dtype) \(shape)" }
}

/// One safetensors file.
public final class SafeTensorsFile: Sendable {
    /// Larger headers are refused: real ones are a few hundred KB, and the JSON is parsed into memory.
    public static let maxHeaderBytes = 100 << 20

    public let mapping: MappedFile
    public let metadata: [String: String]
    /// Sorted by data offset (file order).
    public let tensors: [SafeTensor]
    public let headerLength: Int
    private let index: [String: Int]

    public var path: String { mapping.path }
    /// Absolute offset of the data section.
    public var dataOffset: Int { 8 + headerLength }

    public convenience init(path: String) throws {
        try self.init(mapping: MappedFile(path: path))
    }

    public init(mapping: MappedFile) throws {
        self.mapping = mapping
        let file = mapping.path
        guard mapping.count >= 8 else {
            throw FormatError(file: file, "not a safetensors file: \(mapping.count) bytes, too short for the 8-byte header length")
        }
        let raw = try mapping.load(UInt64.self, at: 0, what: "header length")
        let available = mapping.count - 8
        guard raw <= UInt64(available) else {
            throw FormatError(file: file, "header length \(raw) runs past the end of the file (\(mapping.count) bytes)")
        }
        guard raw <= UInt64(SafeTensorsFile.maxHeaderBytes) else {
            throw FormatError(file: file, "header length \(raw) exceeds the \(SafeTensorsFile.maxHeaderBytes >> 20) MB limit")
        }
        headerLength = Int(raw)
        let json = Data(try mapping.bytes(at: 8, count: headerLength, what: "header"))  // the header only

        let header: RawHeader
        do {
            header = try JSONDecoder().decode(RawHeader.self, from: json)
        } catch let error as DecodingError {
            throw FormatError(file: file, "bad JSON header: \(describeDecodingError(error))")
        } catch {
            throw FormatError(file: file, "bad JSON header: \(error)")
        }
        metadata = header.metadata

        let dataStart = 8 + headerLength
        let dataLength = mapping.count - dataStart
        var list: [SafeTensor] = []
        list.reserveCapacity(header.entries.count)
        for (name, e) in header.entries {
            guard let dtype = SafeTensorsDType(rawValue: e.dtype) else {
                throw FormatError(file: file, "tensor '\(name)' has unknown dtype '\(e.dtype)'")
            }
            guard e.shape.allSatisfy({ $0 >= 0 }) else {
                throw FormatError(file: file, "tensor '\(name)' has a negative dimension in shape \(e.shape)")
            }
            guard e.offsets.count == 2 else {
                throw FormatError(file: file, "tensor '\(name)' data_offsets \(e.offsets) must be [begin, end]")
            }
            let (begin, end) = (e.offsets[0], e.offsets[1])
            guard begin >= 0, end >= begin else {
                throw FormatError(file: file, "tensor '\(name)' data_offsets [\(begin), \(end)] are invalid (need 0 ≤ begin ≤ end)")
            }
            guard end <= dataLength else {
                throw FormatError(file: file, "tensor '\(name)' data [offset \(begin), \(end - begin) bytes] runs past the end of the data section (\(dataLength) bytes)")
            }
            guard let count = Checked.product(e.shape), let size = Checked.mul(count, dtype.elementSize) else {
                throw FormatError(file: file, "tensor '\(name)' shape \(e.shape) overflows")
            }
            guard size == end - begin else {
                throw FormatError(file: file, "tensor '\(name)' \(dtype) \(e.shape) needs \(size) bytes but data_offsets [\(begin), \(end)] span \(end - begin)")
            }
            list.append(SafeTensor(name: name, dtype: dtype, shape: e.shape, elementCount: count, byteCount: size,
                                   fileOffset: dataStart + begin, mapping: mapping))
        }
        list.sort { ($0.fileOffset, $0.name) < ($1.fileOffset, $1.name) }
        for (a, b) in zip(list, list.dropFirst()) where a.byteCount > 0 && b.byteCount > 0 {
            guard a.fileOffset + a.byteCount <= b.fileOffset else {
                throw FormatError(file: file, "tensors '\(a.name)' and '\(b.name)' overlap (data_offsets [\(a.fileOffset - dataStart), \(a.fileOffset - dataStart + a.byteCount)] and [\(b.fileOffset - dataStart), …])")
            }
        }
        tensors = list
        var idx: [String: Int] = [:]
        for (i, t) in list.enumerated() { idx[t.name] = i }
        index = idx
    }

    public subscript(name: String) -> SafeTensor? { index[name].map { tensors[$0] } }

    public func tensor(_ name: String) throws -> SafeTensor {
        guard let t = self[name] else { throw FormatError(file: path, "no tensor named '\(name)'") }
        return t
    }
}

/// A Hugging Face checkpoint: one model.safetensors, or shards listed by model.safetensors.index.json,
/// seen as one name → tensor map. Every shard is mapped (not read); tensors keep their shard alive.
public final class SafeTensorsCheckpoint: Sendable {
    public static let indexName = "model.safetensors.index.json"
    public static let singleName = "model.safetensors"

    public let path: String
    public let files: [SafeTensorsFile]
    public let tensors: [String: SafeTensor]

    /// Sorted names, for deterministic iteration.
    public var names: [String] { tensors.keys.sorted() }

    /// `path`: a directory (with model.safetensors.index.json or model.safetensors), an index .json file, or
    /// a single .safetensors file.
    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError(file: path, "no such file or directory")
        }
        let fm = FileManager.default
        if isDir.boolValue {
            let index = path + "/" + SafeTensorsCheckpoint.indexName
            let single = path + "/" + SafeTensorsCheckpoint.singleName
            if fm.fileExists(atPath: index) {
                (files, tensors) = try SafeTensorsCheckpoint.openSharded(index: index)
            } else if fm.fileExists(atPath: single) {
                (files, tensors) = try SafeTensorsCheckpoint.openSingle(single)
            } else {
                throw FormatError(file: path, "neither \(SafeTensorsCheckpoint.indexName) nor \(SafeTensorsCheckpoint.singleName) is in this directory")
            }
        } else if path.hasSuffix(".json") {
            (files, tensors) = try SafeTensorsCheckpoint.openSharded(index: path)
        } else {
            (files, tensors) = try SafeTensorsCheckpoint.openSingle(path)
        }
    }

    public subscript(name: String) -> SafeTensor? { tensors[name] }

    public func tensor(_ name: String) throws -> SafeTensor {
        guard let t = tensors[name] else { throw FormatError(file: path, "no tensor named '\(name)'") }
        return t
    }

    private static func openSingle(_ path: String) throws -> ([SafeTensorsFile], [String: SafeTensor]) {
        let f = try SafeTensorsFile(path: path)
        return ([f], Dictionary(f.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }))
    }

    private static func openSharded(index: String) throws -> ([SafeTensorsFile], [String: SafeTensor]) {
        let mapping = try MappedFile(path: index)
        guard mapping.count <= SafeTensorsFile.maxHeaderBytes else {
            throw FormatError(file: index, "\(mapping.count) bytes is too large for an index")
        }
        let weightMap: [String: String]
        do {
            weightMap = try JSONDecoder().decode(RawIndex.self, from: Data(mapping.buffer)).weight_map
        } catch let error as DecodingError {
            throw FormatError(file: index, "bad index JSON: \(describeDecodingError(error))")
        }
        let dir = URL(fileURLWithPath: index).deletingLastPathComponent().path

        var files: [SafeTensorsFile] = []
        var all: [String: SafeTensor] = [:]
        for shard in Set(weightMap.values).sorted() {
            // Shards sit next to the index; a path elsewhere is a broken (or hostile) index.
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                throw FormatError(file: index, "weight_map names shard '\(shard)', expected a file name in the same directory")
            }
            let shardPath = dir + "/" + shard
            guard FileManager.default.fileExists(atPath: shardPath) else {
                let users = weightMap.filter { $0.value == shard }.keys.sorted()
                throw FormatError(file: index, "shard '\(shard)' (holding '\(users[0])' and \(users.count - 1) more tensors) is missing")
            }
            let f = try SafeTensorsFile(path: shardPath)
            for t in f.tensors {
                guard all[t.name] == nil else {
                    throw FormatError(file: index, "tensor '\(t.name)' appears in both '\(all[t.name]!.file)' and '\(shardPath)'")
                }
                all[t.name] = t
            }
            files.append(f)
        }
        for (name, shard) in weightMap.sorted(by: { $0.key < $1.key }) {
            guard let t = all[name], URL(fileURLWithPath: t.file).lastPathComponent == shard else {
                throw FormatError(file: index, "weight_map puts tensor '\(name)' in '\(shard)', but that shard has no such tensor")
            }
        }
        return (files, all)
    }
}

// MARK: - JSON

private struct AnyKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private struct RawEntry: Decodable {
    let dtype: String
    let shape: [Int]
    let offsets: [Int]

    enum CodingKeys: String, CodingKey {
        case dtype, shape
        case offsets = "data_offsets"
    }
}

private struct RawHeader: Decodable {
    var entries: [(String, RawEntry)] = []
    var metadata: [String: String] = [:]

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        for key in c.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = try c.decode([String: String].self, forKey: key)
            } else {
                entries.append((key.stringValue, try c.decode(RawEntry.self, forKey: key)))
            }
        }
    }
}

private struct RawIndex: Decodable {
    let weight_map: [String: String]
}

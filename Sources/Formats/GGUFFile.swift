import VZQKernels
import VZQSupport

/// A GGUF file opened for reading: header, metadata and tensor table parsed and validated up front, tensor
/// data left in the memory mapping and handed out as raw buffers in O(1).
///
/// Every count, length, offset and size comes from an untrusted file, so each is checked against the bytes
/// actually left before anything is allocated or read, with overflow-checked arithmetic. Any problem is a
/// FormatError naming the file and the field; nothing here traps on bad input.
public final class GGUFFile: Sendable {
    public let mapping: MappedFile
    public let version: UInt32
    public let metadata: GGUFMetadata
    /// In file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute file offset of the data section (tensor offsets are relative to it).
    public let dataOffset: Int
    private let tensorIndex: [String: Int]

    public var path: String { mapping.path }

    public convenience init(path: String) throws {
        try self.init(mapping: MappedFile(path: path))
    }

    public init(mapping: MappedFile) throws {
        self.mapping = mapping
        var r = Reader(file: mapping)
        let file = mapping.path

        // Header.
        guard mapping.count >= 4 else {
            throw FormatError(file: file, "not a GGUF file: \(mapping.count) bytes, too short for the magic")
        }
        let magic = Array(try r.bytes(4, what: "magic"))
        guard magic == GGUF.magic else {
            let shown = magic.map { (32..<127).contains($0) ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16) }.joined()
            throw FormatError(file: file, "not a GGUF file: magic is '\(shown)', expected 'GGUF'")
        }
        version = try r.u32(what: "version")
        guard version == 2 || version == 3 else {
            // v1 used 32-bit counts; a byte-swapped version means a big-endian file, which we do not read.
            let hint = version == 1 ? " (GGUF v1 is obsolete; re-convert the model)"
                : version.byteSwapped == 3 || version.byteSwapped == 2 ? " (a big-endian GGUF; only little-endian is supported)" : ""
            throw FormatError(file: file, "unsupported GGUF version \(version), expected 3 (or 2)\(hint)")
        }
        let tensorCount = try r.count(what: "tensor count", minimumEach: 24)  // name len 8, n_dims 4, type 4, offset 8
        let kvCount = try r.count(what: "metadata count", minimumEach: 13)    // key len 8, type 4, value ≥ 1

        // Metadata.
        var meta = GGUFMetadata(file: file)
        for i in 0..<kvCount {
            let key = try r.string(what: "metadata key #\(i)")
            let rawType = try r.u32(what: "type of metadata key '\(key)'")
            let value = try r.value(rawType: rawType, depth: 0, what: "metadata key '\(key)'")
            guard meta.insertNew(key, value) else { throw FormatError(file: file, "duplicate metadata key '\(key)'") }
        }
        metadata = meta

        // Alignment: uint32 per the spec; any integer that fits is accepted, but it must be a power of two.
        if let v = meta[GGUF.alignmentKey] {
            guard let a = v.intValue, Checked.isPowerOfTwo(a), a <= 1 << 30 else {
                throw FormatError(file: file, "\(GGUF.alignmentKey) is \(v), expected a power of two (≤ 2^30)")
            }
            alignment = a
        } else {
            alignment = GGUF.defaultAlignment
        }

        // Tensor table.
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(tensorCount)  // bounded by the file length (24 bytes each)
        var index: [String: Int] = [:]
        for i in 0..<tensorCount {
            let name = try r.string(what: "tensor #\(i) name")
            let nDims = try r.u32(what: "tensor '\(name)' n_dims")
            guard nDims <= UInt32(GGUF.maxDims) else {
                throw FormatError(file: file, "tensor '\(name)' has \(nDims) dimensions, at most \(GGUF.maxDims) are allowed")
            }
            var dims: [Int] = []
            for d in 0..<Int(nDims) {
                let raw = try r.u64(what: "tensor '\(name)' dim \(d)")
                guard let v = Int(exactly: raw), v <= Int(Int64.max) else {
                    throw FormatError(file: file, "tensor '\(name)' dim \(d) is \(raw), too large")
                }
                dims.append(v)
            }
            let rawType = try r.u32(what: "tensor '\(name)' type")
            guard let type = Int32(exactly: rawType).flatMap(QuantType.init(rawValue:)) else {
                throw FormatError(file: file, "tensor '\(name)' has unknown or unsupported ggml type \(rawType)")
            }
            let rawOffset = try r.u64(what: "tensor '\(name)' offset")
            guard let offset = Int(exactly: rawOffset) else {
                throw FormatError(file: file, "tensor '\(name)' offset \(rawOffset) is too large")
            }
            let info: GGUFTensorInfo
            switch GGUFTensorInfo.make(name: name, dims: dims, type: type, offset: offset) {
            case let .success(t): info = t
            case .failure(.notBlockMultiple):
                throw FormatError(file: file, "tensor '\(name)' \(type) \(dims): innermost dim \(dims.first ?? 1) is not a multiple of the block size \(type.blockElements)")
            case .failure:
                throw FormatError(file: file, "tensor '\(name)' dims \(dims) overflow the size of a tensor")
            }
            guard index[name] == nil else { throw FormatError(file: file, "duplicate tensor name '\(name)'") }
            index[name] = infos.count
            infos.append(info)
        }
        tensors = infos
        tensorIndex = index

        // Data section: right after the tensor table, padded to the alignment.
        guard let start = Checked.alignUp(r.offset, alignment) else {
            throw FormatError(file: file, "data section offset overflows")
        }
        dataOffset = start

        // Every tensor inside the file, aligned, and no two overlapping.
        for t in infos {
            guard t.offset % alignment == 0 else {
                throw FormatError(file: file, "tensor '\(t.name)' offset \(t.offset) is not a multiple of the alignment \(alignment)")
            }
            guard let begin = Checked.add(start, t.offset), let end = Checked.add(begin, t.byteCount), end <= mapping.count else {
                throw FormatError(file: file, "tensor '\(t.name)' data [offset \(t.offset), \(t.byteCount) bytes] runs past the end of the file (\(mapping.count) bytes)")
            }
        }
        let byOffset = infos.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw FormatError(file: file, "tensors '\(a.name)' [offset \(a.offset), \(a.byteCount) bytes] and '\(b.name)' [offset \(b.offset)] overlap")
        }
    }

    public func tensorInfo(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The tensor's raw bytes in the file's layout, pointing into the mapping (valid while this object lives).
    public func bytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        // Validated in init: inside the file. Rebase from the mapping so that no arithmetic can escape it.
        let all = mapping.buffer
        return UnsafeRawBufferPointer(rebasing: all[(dataOffset + tensor.offset)..<(dataOffset + tensor.offset + tensor.byteCount)])
    }

    public func bytes(of name: String) throws -> UnsafeRawBufferPointer {
        guard let t = tensorInfo(name) else { throw FormatError(file: path, "no tensor named '\(name)'") }
        return bytes(of: t)
    }

    /// The tensor converted to fp32 (allocates; for tests, tools and small tensors).
    public func floats(of name: String) throws -> [Float] {
        guard let t = tensorInfo(name) else { throw FormatError(file: path, "no tensor named '\(name)'") }
        return try t.type.dequantize(bytes(of: t), count: t.elementCount)
    }
}

/// A cursor over a MappedFile; every read is bounds-checked and names what it was reading.
private struct Reader {
    let file: MappedFile
    var offset = 0

    var remaining: Int { file.count - offset }

    mutating func bytes(_ n: Int, what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        let b = try file.bytes(at: offset, count: n, what: what())
        offset += n
        return b
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, what: @autoclosure () -> String) throws -> T {
        let v = try file.load(T.self, at: offset, what: what())
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func u32(what: @autoclosure () -> String) throws -> UInt32 { try load(UInt32.self, what: what()) }
    mutating func u64(what: @autoclosure () -> String) throws -> UInt64 { try load(UInt64.self, what: what()) }

    /// A u64 count of items that each take at least `minimumEach` bytes: more than the rest of the file could
    /// hold is rejected here, before anyone allocates for it.
    mutating func count(what: @autoclosure () -> String, minimumEach: Int) throws -> Int {
        let at = offset
        let raw = try u64(what: what())
        guard raw <= UInt64(remaining / minimumEach) else {
            throw FormatError(file: file.path, "\(what()) \(raw) at offset \(at) is impossible: the \(remaining) bytes left hold at most \(remaining / minimumEach)")
        }
        return Int(raw)
    }

    mutating func string(what: @autoclosure () -> String) throws -> String {
        let at = offset
        let raw = try u64(what: what() + " length")
        guard raw <= UInt64(remaining) else {
            throw FormatError(file: file.path, "\(what()) length \(raw) at offset \(at) runs past the end of the file (\(file.count) bytes)")
        }
        let b = try bytes(Int(raw), what: what())
        guard let s = String(validating: b, as: UTF8.self) else {
            throw FormatError(file: file.path, "\(what()) at offset \(at) is not valid UTF-8")
        }
        return s
    }

    mutating func value(rawType: UInt32, depth: Int, what: @autoclosure () -> String) throws -> GGUFValue {
        guard let type = GGUFValueType(rawValue: rawType) else {
            throw FormatError(file: file.path, "\(what()) has unknown value type \(rawType)")
        }
        switch type {
        case .uint8: return .uint8(try load(UInt8.self, what: what()))
        case .int8: return .int8(try load(Int8.self, what: what()))
        case .uint16: return .uint16(try load(UInt16.self, what: what()))
        case .int16: return .int16(try load(Int16.self, what: what()))
        case .uint32: return .uint32(try load(UInt32.self, what: what()))
        case .int32: return .int32(try load(Int32.self, what: what()))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, what: what())))
        case .uint64: return .uint64(try load(UInt64.self, what: what()))
        case .int64: return .int64(try load(Int64.self, what: what()))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, what: what())))
        case .bool:
            let at = offset
            let b = try load(UInt8.self, what: what())
            guard b <= 1 else { throw FormatError(file: file.path, "\(what()) at offset \(at) is a BOOL with value \(b), expected 0 or 1") }
            return .bool(b == 1)
        case .string: return .string(try string(what: what()))
        case .array:
            guard depth < GGUF.maxArrayNesting else {
                throw FormatError(file: file.path, "\(what()) nests arrays deeper than \(GGUF.maxArrayNesting) levels")
            }
            let rawElement = try u32(what: what() + " element type")
            guard let element = GGUFValueType(rawValue: rawElement) else {
                throw FormatError(file: file.path, "\(what()) has unknown array element type \(rawElement)")
            }
            let n = try count(what: what() + " array length", minimumEach: element.minimumSize)
            var values: [GGUFValue] = []
            values.reserveCapacity(n)  // safe: n elements of at least minimumSize bytes fit in the file
            for i in 0..<n {
                values.append(try value(rawType: rawElement, depth: depth + 1, what: what() + "[\(i)]"))
            }
            return .array(element, values)
        }
    }
}

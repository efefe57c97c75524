import VZQKernels
import VZQSupport

/// GGUF (llama.cpp's model file) shared definitions: value types, metadata and tensor descriptions.
///
/// Layout (all little-endian; v2 and v3 are identical for little-endian files):
///
///     "GGUF" u32 version  u64 tensor_count  u64 kv_count
///     kv_count × { string key, u32 value_type, value }
///     tensor_count × { string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset }
///     padding to `general.alignment` (default 32)
///     tensor data; each tensor at data_start + offset, offsets multiples of the alignment
///
/// A string is { u64 length, UTF-8 bytes } with no terminator. An array value is
/// { u32 element_type, u64 count, count × element } and may nest.
public enum GGUF {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let version: UInt32 = 3
    public static let defaultAlignment = 32
    public static let alignmentKey = "general.alignment"
    /// ggml tensors have at most 4 dimensions.
    public static let maxDims = 4
    /// Arrays of arrays are legal but unused in practice; the cap keeps a hostile file from recursing deep.
    public static let maxArrayNesting = 8
}

/// GGUF metadata value types, numbered as in the file.
public enum GGUFValueType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    public var description: String {
        switch self {
        case .uint8: "UINT8"
        case .int8: "INT8"
        case .uint16: "UINT16"
        case .int16: "INT16"
        case .uint32: "UINT32"
        case .int32: "INT32"
        case .float32: "FLOAT32"
        case .bool: "BOOL"
        case .string: "STRING"
        case .array: "ARRAY"
        case .uint64: "UINT64"
        case .int64: "INT64"
        case .float64: "FLOAT64"
        }
    }

    /// Bytes of one value when the type has a fixed size (nil for STRING and ARRAY).
    var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        case .string, .array: nil
        }
    }

    /// The fewest bytes one value of this type can take in a file: used to reject hostile counts before
    /// allocating anything (a string is at least its 8-byte length, an array its 12-byte header).
    var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }
}

/// One metadata value. Arrays carry their element type so that empty arrays round-trip.
public enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    /// Every element must have `elementType` (the writer checks).
    case array(GGUFValueType, [GGUFValue])

    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        case .array: .array
        }
    }

    // Conveniences for writers.
    public static func strings(_ v: [String]) -> GGUFValue { .array(.string, v.map { .string($0) }) }
    public static func int32s(_ v: [Int32]) -> GGUFValue { .array(.int32, v.map { .int32($0) }) }
    public static func uint32s(_ v: [UInt32]) -> GGUFValue { .array(.uint32, v.map { .uint32($0) }) }
    public static func int64s(_ v: [Int64]) -> GGUFValue { .array(.int64, v.map { .int64($0) }) }
    public static func float32s(_ v: [Float]) -> GGUFValue { .array(.float32, v.map { .float32($0) }) }

    /// The value as an Int when it is an integer of any width that fits.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): Int(v)
        case let .int8(v): Int(v)
        case let .uint16(v): Int(v)
        case let .int16(v): Int(v)
        case let .uint32(v): Int(v)
        case let .int32(v): Int(v)
        case let .uint64(v): Int(exactly: v)
        case let .int64(v): Int(exactly: v)
        default: nil
        }
    }

    /// The value as a Double when it is a float or an integer.
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): Double(v)
        case let .float64(v): v
        default: intValue.map(Double.init)
        }
    }

    public var description: String {
        switch self {
        case let .uint8(v): "\(v)"
        case let .int8(v): "\(v)"
        case let .uint16(v): "\(v)"
        case let .int16(v): "\(v)"
        case let .uint32(v): "\(v)"
        case let .int32(v): "\(v)"
        case let .float32(v): "\(v)"
        case let .bool(v): "\(v)"
        case let .string(v): "\"\(v)\""
        case let .uint64(v): "\(v)"
        case let .int64(v): "\(v)"
        case let .float64(v): "\(v)"
        case let .array(t, vs):
            vs.count <= 8
                ? "[\(t)] [" + vs.map(\.description).joined(separator: ", ") + "]"
                : "[\(t)] [" + vs.prefix(4).map(\.description).joined(separator: ", ") + ", … (\(vs.count) values)]"
        }
    }
}

/// GGUF metadata: the key/value pairs in file order, with O(1) lookup and typed getters that throw a
/// FormatError naming the file and key when a key is missing or has another type.
public struct GGUFMetadata: Sendable, Equatable {
    /// For error messages.
    public let file: String
    public private(set) var entries: [(key: String, value: GGUFValue)] = []
    private var index: [String: Int] = [:]

    public init(file: String) { self.file = file }

    public static func == (a: GGUFMetadata, b: GGUFMetadata) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }
    public subscript(key: String) -> GGUFValue? { index[key].map { entries[$0].value } }
    public func contains(_ key: String) -> Bool { index[key] != nil }

    /// Adds a key, or replaces its value in place (keeping the original position).
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = index[key] {
            entries[i].value = value
        } else {
            index[key] = entries.count
            entries.append((key, value))
        }
    }

    /// Adds a key that must not exist yet (the reader: duplicate keys are a format error).
    mutating func insertNew(_ key: String, _ value: GGUFValue) -> Bool {
        guard index[key] == nil else { return false }
        set(key, value)
        return true
    }

    // MARK: typed getters

    public func value(_ key: String) throws -> GGUFValue {
        guard let v = self[key] else { throw FormatError(file: file, "metadata key '\(key)' is missing") }
        return v
    }

    private func wrongType(_ key: String, _ v: GGUFValue, _ expected: String) -> FormatError {
        FormatError(file: file, "metadata key '\(key)' is \(describeType(v)), expected \(expected)")
    }

    private func describeType(_ v: GGUFValue) -> String {
        if case let .array(t, vs) = v { return "an array of \(vs.count) \(t)" }
        return "a \(v.type) (\(v))"
    }

    public func string(_ key: String) throws -> String {
        let v = try value(key)
        guard case let .string(s) = v else { throw wrongType(key, v, "a STRING") }
        return s
    }

    /// Any integer type, converted exactly.
    public func int(_ key: String) throws -> Int {
        let v = try value(key)
        guard let i = v.intValue else { throw wrongType(key, v, "an integer that fits in Int") }
        return i
    }

    /// FLOAT32 or FLOAT64 (integers are accepted too: some writers store e.g. rope_freq_base as one). NaN and
    /// infinities are refused: no model parameter is meaningful as one, and they would poison every output.
    public func float(_ key: String) throws -> Float {
        let d = try double(key)
        guard Float(d).isFinite else { throw FormatError(file: file, "metadata key '\(key)' is \(d), too large for a 32-bit float") }
        return Float(d)
    }

    public func double(_ key: String) throws -> Double {
        let v = try value(key)
        guard let d = v.doubleValue else { throw wrongType(key, v, "a number") }
        guard d.isFinite else { throw FormatError(file: file, "metadata key '\(key)' is \(d), expected a finite number") }
        return d
    }

    public func bool(_ key: String) throws -> Bool {
        let v = try value(key)
        guard case let .bool(b) = v else { throw wrongType(key, v, "a BOOL") }
        return b
    }

    public func strings(_ key: String) throws -> [String] {
        let v = try value(key)
        guard case let .array(.string, vs) = v else { throw wrongType(key, v, "an array of STRING") }
        return vs.map { if case let .string(s) = $0 { s } else { "" } }
    }

    public func ints(_ key: String) throws -> [Int] {
        let v = try value(key)
        guard case let .array(_, vs) = v else { throw wrongType(key, v, "an array of integers") }
        var out: [Int] = []
        out.reserveCapacity(vs.count)
        for (i, e) in vs.enumerated() {
            guard let x = e.intValue else { throw wrongType(key + "[\(i)]", e, "an integer that fits in Int") }
            out.append(x)
        }
        return out
    }

    /// `finiteOnly: false` passes NaN and infinities through (rankings such as SentencePiece scores, where the
    /// caller decides what they mean).
    public func floats(_ key: String, finiteOnly: Bool = true) throws -> [Float] {
        let v = try value(key)
        guard case let .array(_, vs) = v else { throw wrongType(key, v, "an array of numbers") }
        var out: [Float] = []
        out.reserveCapacity(vs.count)
        for (i, e) in vs.enumerated() {
            guard let x = e.doubleValue else { throw wrongType(key + "[\(i)]", e, "a number") }
            guard Float(x).isFinite || !finiteOnly else { throw FormatError(file: file, "metadata key '\(key)[\(i)]' is \(x), expected a finite number") }
            out.append(Float(x))
        }
        return out
    }

    // Bounded getters (ranges from `Limits`): a value outside `range` is a FormatError naming the file, the key,
    // the value and the range, raised before anything is sized from it.
    public func int(_ key: String, in range: ClosedRange<Int>) throws -> Int {
        let i = try int(key)
        guard range.contains(i) else { throw outOfRange(key, "\(i)", range) }
        return i
    }

    public func float(_ key: String, in range: ClosedRange<Float>) throws -> Float {
        let f = try float(key)
        guard range.contains(f) else { throw outOfRange(key, "\(f)", range) }
        return f
    }

    public func ints(_ key: String, in range: ClosedRange<Int>) throws -> [Int] {
        let values = try ints(key)
        if let i = values.firstIndex(where: { !range.contains($0) }) { throw outOfRange("\(key)[\(i)]", "\(values[i])", range) }
        return values
    }

    public func int(_ key: String, in range: ClosedRange<Int>, default d: Int) throws -> Int {
        contains(key) ? try int(key, in: range) : d
    }

    public func float(_ key: String, in range: ClosedRange<Float>, default d: Float) throws -> Float {
        contains(key) ? try float(key, in: range) : d
    }

    private func outOfRange<T: Comparable>(_ key: String, _ value: String, _ range: ClosedRange<T>) -> FormatError {
        FormatError(file: file, "metadata key '\(key)' is \(value), outside \(Limits.describe(range))")
    }

    // Optional keys: the default when missing, still an error when present with the wrong type.
    public func string(_ key: String, default d: String) throws -> String { contains(key) ? try string(key) : d }
    public func int(_ key: String, default d: Int) throws -> Int { contains(key) ? try int(key) : d }
    public func float(_ key: String, default d: Float) throws -> Float { contains(key) ? try float(key) : d }
    public func bool(_ key: String, default d: Bool) throws -> Bool { contains(key) ? try bool(key) : d }
    public func strings(_ key: String, default d: [String]) throws -> [String] { contains(key) ? try strings(key) : d }
    public func ints(_ key: String, default d: [Int]) throws -> [Int] { contains(key) ? try ints(key) : d }
    public func floats(_ key: String, default d: [Float]) throws -> [Float] { contains(key) ? try floats(key) : d }
}

/// One tensor as the GGUF header describes it.
public struct GGUFTensorInfo: Sendable, Equatable, CustomStringConvertible {
    public let name: String
    /// ggml order: dims[0] is the innermost (contiguous) dimension, i.e. the row length. A PyTorch weight of
    /// shape [out, in] has dims [in, out].
    public let dims: [Int]
    public let type: QuantType
    /// Relative to the start of the data section.
    public let offset: Int
    /// Product of dims.
    public let elementCount: Int
    /// Bytes of data (rows × row bytes of `type`).
    public let byteCount: Int

    /// Checks the shape against the type and computes the sizes; nil with a reason on failure.
    static func make(name: String, dims: [Int], type: QuantType, offset: Int) -> Result<GGUFTensorInfo, SizeProblem> {
        guard dims.count <= GGUF.maxDims else { return .failure(.tooManyDims) }
        guard dims.allSatisfy({ $0 >= 0 }) else { return .failure(.negativeDim) }
        guard let elements = Checked.product(dims) else { return .failure(.overflow) }
        let inner = dims.first ?? 1
        // Row bytes computed here, overflow-checked: cq_row_bytes multiplies in int64 without a check, so a
        // hostile dim like 2^62 + 1 would wrap to a small size there.
        guard inner % type.blockElements == 0 else { return .failure(.notBlockMultiple) }
        guard let row = Checked.mul(inner / type.blockElements, type.blockBytes) else { return .failure(.overflow) }
        guard let rows = Checked.product(Array(dims.dropFirst())), let bytes = Checked.mul(row, rows) else {
            return .failure(.overflow)
        }
        return .success(GGUFTensorInfo(name: name, dims: dims, type: type, offset: offset,
                                       elementCount: elements, byteCount: bytes))
    }

    enum SizeProblem: Error { case tooManyDims, negativeDim, overflow, notBlockMultiple }

    public var description: String { "\(name) \(type) \(dims)" }
}

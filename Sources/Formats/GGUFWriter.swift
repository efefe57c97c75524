#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VZQKernels
import VZQSupport

/// Writes a GGUF v3 file in two phases, so a converter never holds a whole model in memory:
///
///     let w = GGUFWriter()                                   // alignment 32, written as general.alignment
///     w.metadata.set(GGUFKey.General.architecture, .string("llama"))
///     try w.addTensor(name: "tok_embd.weight", dims: [4096, 32000], type: .q8_0)
///     try w.write(to: "model.gguf") { info, sink in
///         try sink.write(quantizedBytes(for: info.name))     // exactly info.byteCount bytes, in any pieces
///     }
///
/// The header (metadata + tensor table) is known before any data, so offsets are computed up front; then the
/// closure is called once per tensor, in `addTensor` order, and streams that tensor's bytes. Output goes to a
/// temporary file in the destination directory that is renamed over `path` only after everything was
/// written and synced: the final path never shows a partial file, and on any error the temporary is removed.
public final class GGUFWriter {
    public var metadata: GGUFMetadata
    public private(set) var tensors: [GGUFTensorInfo] = []
    private var names: Set<String> = []
    private var dataSize = 0

    /// The alignment of tensor data; it is also stored as `general.alignment` (UINT32).
    public var alignment: Int {
        (metadata[GGUF.alignmentKey]?.intValue).flatMap { Checked.isPowerOfTwo($0) ? $0 : nil } ?? GGUF.defaultAlignment
    }

    public init(alignment: Int = GGUF.defaultAlignment) {
        precondition(Checked.isPowerOfTwo(alignment) && alignment <= 1 << 30, "GGUF alignment must be a power of two")
        metadata = GGUFMetadata(file: "<GGUFWriter>")
        metadata.set(GGUF.alignmentKey, .uint32(UInt32(alignment)))
    }

    /// Declares a tensor; its data comes later, from `write`'s closure. `dims` are in ggml order (row length
    /// first). Must be called before `write`, and alignment must not change after the first tensor.
    @discardableResult
    public func addTensor(name: String, dims: [Int], type: QuantType) throws -> GGUFTensorInfo {
        let owner = "<GGUFWriter>"
        guard !names.contains(name) else { throw FormatError(file: owner, "duplicate tensor name '\(name)'") }
        guard let offset = Checked.alignUp(dataSize, alignment) else { throw FormatError(file: owner, "data size overflows") }
        let info: GGUFTensorInfo
        switch GGUFTensorInfo.make(name: name, dims: dims, type: type, offset: offset) {
        case let .success(t): info = t
        case .failure(.tooManyDims): throw FormatError(file: owner, "tensor '\(name)' has \(dims.count) dims, at most \(GGUF.maxDims)")
        case .failure(.negativeDim): throw FormatError(file: owner, "tensor '\(name)' has a negative dim \(dims)")
        case .failure(.notBlockMultiple):
            throw FormatError(file: owner, "tensor '\(name)' \(type) \(dims): innermost dim is not a multiple of the block size \(type.blockElements)")
        case .failure(.overflow): throw FormatError(file: owner, "tensor '\(name)' dims \(dims) overflow")
        }
        guard let end = Checked.add(offset, info.byteCount) else { throw FormatError(file: owner, "data size overflows") }
        names.insert(name)
        tensors.append(info)
        dataSize = end
        return info
    }

    /// Writes the file. `tensorData` is called once per tensor in declaration order and must write exactly
    /// `info.byteCount` bytes to the sink.
    public func write(to path: String, tensorData: (GGUFTensorInfo, GGUFDataSink) throws -> Void) throws {
        let align = alignment
        // The alignment is fixed by the offsets computed in addTensor; catch a later change of the key.
        for t in tensors where t.offset % align != 0 {
            throw FormatError(file: path, "general.alignment changed to \(align) after tensors were added")
        }
        if let v = metadata[GGUF.alignmentKey], v != .uint32(UInt32(align)) {
            throw FormatError(file: path, "\(GGUF.alignmentKey) must be a UINT32 power of two, got \(v)")
        }
        var header = ByteBuffer()
        header.bytes(GGUF.magic)
        header.u32(GGUF.version)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(metadata.count))
        for (key, value) in metadata.entries {
            header.string(key)
            header.u32(value.type.rawValue)
            try header.value(value, key: key, file: path)
        }
        for t in tensors {
            header.string(t.name)
            header.u32(UInt32(t.dims.count))
            for d in t.dims { header.u64(UInt64(d)) }
            header.u32(UInt32(bitPattern: t.type.rawValue))
            header.u64(UInt64(t.offset))
        }
        header.pad(to: align)

        try AtomicFile.write(path) { out in
            try out.write(header.data)
            var written = 0  // relative to the data section
            for t in tensors {
                try out.write(zeros: t.offset - written)
                let sink = GGUFDataSink(output: out, tensor: t, file: path)
                try tensorData(t, sink)
                guard sink.written == t.byteCount else {
                    throw FormatError(file: path, "tensor '\(t.name)': \(sink.written) bytes were written, expected \(t.byteCount)")
                }
                written = t.offset + t.byteCount
            }
            // Pad the end too, as gguf-py does, so the file length is a multiple of the alignment.
            try out.write(zeros: (Checked.alignUp(written, align) ?? written) - written)
        }
    }

    /// Convenience for small files: the bytes of every tensor by name.
    public func write(to path: String, data: [String: [UInt8]]) throws {
        try write(to: path) { info, sink in
            guard let bytes = data[info.name] else { throw FormatError(file: path, "no data for tensor '\(info.name)'") }
            try sink.write(bytes)
        }
    }
}

/// Receives one tensor's bytes from `GGUFWriter.write`; refuses more than the tensor's size.
public final class GGUFDataSink {
    private let output: AtomicFile
    public let tensor: GGUFTensorInfo
    private let file: String
    public private(set) var written = 0

    init(output: AtomicFile, tensor: GGUFTensorInfo, file: String) {
        self.output = output
        self.tensor = tensor
        self.file = file
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count <= tensor.byteCount - written else {
            throw FormatError(file: file, "tensor '\(tensor.name)': more than its \(tensor.byteCount) bytes were written")
        }
        try output.write(bytes)
        written += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// fp32 values as little-endian bytes (for F32 tensors).
    public func write(floats: [Float]) throws {
        #if _endian(big)
        try write(floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } })
        #else
        try floats.withUnsafeBytes { try write($0) }
        #endif
    }
}

/// Little-endian serialization of the header.
private struct ByteBuffer {
    var data: [UInt8] = []

    mutating func bytes(_ b: [UInt8]) { data += b }
    mutating func int<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
    mutating func u32(_ v: UInt32) { int(v) }
    mutating func u64(_ v: UInt64) { int(v) }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u64(UInt64(utf8.count))
        data += utf8
    }
    mutating func pad(to alignment: Int) {
        let n = (alignment - data.count % alignment) % alignment
        data += repeatElement(0, count: n)
    }

    mutating func value(_ v: GGUFValue, key: String, file: String) throws {
        switch v {
        case let .uint8(x): int(x)
        case let .int8(x): int(x)
        case let .uint16(x): int(x)
        case let .int16(x): int(x)
        case let .uint32(x): int(x)
        case let .int32(x): int(x)
        case let .float32(x): int(x.bitPattern)
        case let .bool(x): int(UInt8(x ? 1 : 0))
        case let .string(x): string(x)
        case let .uint64(x): int(x)
        case let .int64(x): int(x)
        case let .float64(x): int(x.bitPattern)
        case let .array(element, values):
            u32(element.rawValue)
            u64(UInt64(values.count))
            for (i, e) in values.enumerated() {
                guard e.type == element else {
                    throw FormatError(file: file, "metadata key '\(key)': array of \(element) holds a \(e.type) at index \(i)")
                }
                try value(e, key: key, file: file)
            }
        }
    }
}

/// A file written under a temporary name in the destination's directory and renamed into place at the end.
package final class AtomicFile {
    private let fd: Int32
    private let path: String
    private var buffer: [UInt8] = []
    private static let bufferSize = 1 << 20

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer.reserveCapacity(AtomicFile.bufferSize)
    }

    /// Runs `body` on a temporary file, then fsyncs it and renames it to `path`; removes it on any error.
    package static func write(_ path: String, _ body: (AtomicFile) throws -> Void) throws {
        // A device, FIFO or directory is refused here: renaming over it would replace the node itself.
        try OutputPath.validate(path)
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let temp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        // O_EXCL: never clobber someone else's file of the same name.
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FormatError(file: path, "cannot create temporary file in \(dir): \(MappedFile.errnoString())")
        }
        let out = AtomicFile(fd: fd, path: path)
        var closed = false
        do {
            try body(out)
            try out.flush()
            guard fsync(fd) == 0 else { throw FormatError(file: path, "fsync failed: \(MappedFile.errnoString())") }
            closed = true
            guard close(fd) == 0 else { throw FormatError(file: path, "close failed: \(MappedFile.errnoString())") }
            guard rename(temp, path) == 0 else {
                throw FormatError(file: path, "cannot rename the temporary file into place: \(MappedFile.errnoString())")
            }
        } catch {
            if !closed { close(fd) }
            unlink(temp)
            throw error
        }
    }

    package func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > AtomicFile.bufferSize { try flush() }
        if bytes.count >= AtomicFile.bufferSize {
            try writeAll(bytes)  // big tensors go straight to the file, no second copy
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    package func write(zeros n: Int) throws {
        guard n > 0 else { return }
        try write([UInt8](repeating: 0, count: n))
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = posixWrite(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError(file: path, "write failed: \(MappedFile.errnoString())")
            }
            done += n
        }
    }
}

/// write(2); a free function because inside AtomicFile the name `write` means the method.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }

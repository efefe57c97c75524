#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VZQKernels
import VZQSupport

/// A read-only view of a whole file through mmap: nothing is copied, pages come in as they are touched.
///
/// Reads are bounds-checked against the length the file had when it was opened and throw FormatError.
/// Buffers handed out (`bytes(at:count:)`) point into the mapping and stay valid while this object lives;
/// views (GGUFFile, SafeTensor) keep a strong reference to it for that reason.
///
/// Caveat: if another process truncates the file while it is mapped, touching the lost pages raises SIGBUS.
/// No user-space check can prevent that; model files are not expected to change under a running process.
///
/// `init(copying:name:)` makes the same interface over an in-memory buffer (for fuzzing and tests), so the
/// parsers have exactly one code path.
public final class MappedFile: @unchecked Sendable {
    // @unchecked Sendable: every stored property is immutable after init and the memory is read-only.
    public let path: String
    public let count: Int
    private let base: UnsafeRawPointer?
    private let isMapped: Bool

    public init(path: String) throws {
        self.path = path
        // A regular file only: a FIFO would block the open, a device would map as anything.
        let (fd, size) = try InputFile.open(path)
        defer { close(fd) }  // the mapping keeps its own reference to the file
        count = size
        if size == 0 {
            // mmap rejects length 0; an empty file is still a valid (if useless) view.
            base = nil
            isMapped = false
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw FormatError(file: path, "cannot mmap \(size) bytes: \(MappedFile.errnoString())")
        }
        base = UnsafeRawPointer(p)
        isMapped = true
    }

    /// An in-memory "file" holding a private copy of `bytes`; `name` is used in error messages.
    public init(copying bytes: some Collection<UInt8>, name: String) {
        path = name
        count = bytes.count
        isMapped = false
        if bytes.isEmpty {
            base = nil
        } else {
            // Exactly `count` bytes, so AddressSanitizer (tools/fuzz.sh) catches any read past the end.
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
            _ = buffer.initializeMemory(as: UInt8.self, from: bytes)
            base = UnsafeRawPointer(buffer.baseAddress!)
        }
    }

    deinit {
        guard let base else { return }
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        } else {
            base.deallocate()
        }
    }

    /// The whole file.
    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// `count` bytes at `offset`, or a FormatError naming `what` when they are not all inside the file.
    public func bytes(at offset: Int, count n: Int, what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        guard offset >= 0, n >= 0, let end = Checked.add(offset, n), end <= count else {
            throw FormatError(file: path, "\(what()) [offset \(offset), \(n) bytes] runs past the end of the file (\(count) bytes)")
        }
        return UnsafeRawBufferPointer(start: base.map { $0 + offset }, count: n)
    }

    /// A little-endian integer at `offset` (any alignment).
    public func load<T: FixedWidthInteger>(_: T.Type, at offset: Int, what: @autoclosure () -> String) throws -> T {
        let raw = try bytes(at: offset, count: MemoryLayout<T>.size, what: what())
        return T(littleEndian: raw.loadUnaligned(as: T.self))
    }

    /// Gives back the physical pages wholly inside `count` bytes at `offset` (the page-aligned interior, so
    /// neighbouring data sharing a partial page stays resident). The bytes stay readable: touching them again
    /// reads the file back in (the mapping is private and never written). A no-op for in-memory copies, out of
    /// range requests and when the kernel declines. Used after a tensor was copied elsewhere (packed), so the
    /// process does not hold both copies.
    public func release(at offset: Int, count n: Int) {
        guard isMapped, let base, offset >= 0, n > 0, let end = Checked.add(offset, n), end <= count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return }
        // The mapping starts on a page boundary, so file offsets and addresses share alignment.
        let first = (offset + page - 1) / page * page, last = end / page * page
        guard first < last else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + first), last - first, Int32(MADV_DONTNEED))
    }

    static func errnoString() -> String { String(cString: strerror(errno)) }
}

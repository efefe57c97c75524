#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VZQKernels
import VZQSupport

/// Opening a path that must be a regular file: never blocks on a FIFO (O_NONBLOCK), never reads a device, and
/// says in one line what the path is instead when it is not a file.
public enum InputFile {
    /// An open descriptor of the regular file at `path` (the caller closes it) and its size.
    static func open(_ path: String) throws -> (fd: Int32, size: Int) {
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It changes nothing
        // for regular files, the only kind accepted below.
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError(file: path, "cannot open: \(MappedFile.errnoString())") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = MappedFile.errnoString()
            close(fd)
            throw FormatError(file: path, "cannot stat: \(e)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FormatError(file: path, "is \(describeKind(st.st_mode)), not a regular file")
        }
        return (fd, Int(st.st_size))
    }

    /// The whole file, refusing one over `limit` bytes (a JSON config, an image: things read into memory whole).
    public static func read(_ path: String, limit: Int) throws -> [UInt8] {
        let (fd, size) = try open(path)
        defer { close(fd) }
        guard size <= limit else {
            throw FormatError(file: path, "is \(Memory.formatBytes(size)), more than the \(Memory.formatBytes(limit)) accepted for it")
        }
        // Read to the end, never more than `limit` + 1 bytes (/proc files say size 0; a file may grow meanwhile).
        var out: [UInt8] = []
        out.reserveCapacity(size)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while out.count <= limit {
            let want = min(chunk.count, limit + 1 - out.count)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, want) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError(file: path, "read failed: \(MappedFile.errnoString())")
            }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        guard out.count <= limit else {
            throw FormatError(file: path, "is more than the \(Memory.formatBytes(limit)) accepted for it")
        }
        return out
    }

    /// "a directory", "a FIFO", …
    static func describeKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }
}

/// Where an output may be written: a path that does not exist yet or names a regular file (which is then replaced
/// atomically), inside an existing directory. Devices, FIFOs, sockets and directories are refused before anything
/// is written, so `-o /dev/full` cannot replace the device node with a file.
public enum OutputPath {
    public static func validate(_ path: String) throws {
        guard !path.isEmpty else { throw FormatError(file: path, "the output path is empty") }
        var st = stat()
        if lstat(path, &st) == 0 {
            var target = st
            // A symbolic link is followed: what matters is what it names (rename replaces the link itself).
            if (st.st_mode & S_IFMT) == S_IFLNK, stat(path, &target) != 0 { target = st }
            let kind = target.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFLNK else {
                throw FormatError(file: path, "is \(InputFile.describeKind(target.st_mode)); an output must be a regular file")
            }
        } else if errno != ENOENT {
            throw FormatError(file: path, "cannot use as an output: \(MappedFile.errnoString())")
        }
        let dir = directory(of: path)
        var d = stat()
        guard stat(dir, &d) == 0 else { throw FormatError(file: path, "the directory \(dir) does not exist") }
        guard (d.st_mode & S_IFMT) == S_IFDIR else { throw FormatError(file: path, "\(dir) is not a directory") }
    }

    /// Refuses a list of outputs where two name the same file (same path, or two paths to one existing file).
    public static func validateDistinct(_ paths: [String]) throws {
        for (i, a) in paths.enumerated() {
            for b in paths[(i + 1)...] where same(a, b) {
                throw FormatError(file: b, "is given for two outputs (\(a) and \(b)); each output needs its own file")
            }
        }
    }

    /// The directory part of a path ("." for a bare name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// Whether two output paths name one file: equal after resolving their directories, or the same inode.
    static func same(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        func key(_ p: String) -> String? {
            guard let resolved = realpath(directory(of: p), nil) else { return nil }
            defer { free(resolved) }
            let name = p.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? p
            return String(cString: resolved) + "/" + name
        }
        if let ka = key(a), let kb = key(b), ka == kb { return true }
        var sa = stat(), sb = stat()
        return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}

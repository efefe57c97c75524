#if canImport(Glibc)
import Glibc
#endif
import CQuant

/// A family of micro-kernels; one is chosen per process from the CPU's features (or `VZQ_KERNEL`).
public enum Kernel: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case scalar = 0, avx2 = 1, neon = 2, dotprod = 3, i8mm = 4, vnni = 5

    var c: cq_kernel { cq_kernel(rawValue: UInt32(rawValue)) }

    public var description: String { String(cString: cq_kernel_name(c)) }
    public var isSupported: Bool { cq_kernel_supported(c) != 0 }

    public init?(name: String) {
        let v = cq_kernel_parse(name)
        guard v >= 0, let k = Kernel(rawValue: v) else { return nil }
        self = k
    }

    /// The kernel called `name` if this CPU runs it, else an error saying which names exist or what the CPU runs
    /// (the one check behind `--kernel` and `VZQ_KERNEL`).
    public static func named(_ name: String) throws -> Kernel {
        guard let k = Kernel(name: name) else { throw KernelError.unknownKernel(name) }
        guard k.isSupported else { throw KernelError.unsupportedKernel(k.description) }
        return k
    }

    /// The best kernel this CPU runs.
    public static var best: Kernel { Kernel(rawValue: Int32(cq_kernel_best().rawValue))! }
    /// The kernel new packs use: `VZQ_KERNEL` when set and supported, else `best`.
    public static var current: Kernel { Kernel(rawValue: Int32(cq_kernel_default().rawValue))! }

    /// Makes `kernel` the default for this process.
    public static func use(_ kernel: Kernel) throws {
        guard cq_kernel_set_default(kernel.c) == CQ_OK else { throw KernelError.unsupportedKernel(kernel.description) }
    }
}

/// Threads used by every parallel kernel: `VZQ_THREADS`, else the number of cores.
public enum Threads {
    public static var count: Int {
        get { Int(cq_get_threads()) }
        set { cq_set_threads(Int32(newValue)) }
    }
    public static var openMP: Bool { cq_has_openmp() != 0 }
}

/// The environment settings the kernels read, checked as strictly as their flags: the C layer falls back to its
/// defaults on a value it cannot use, so a typo (`VZQ_KERNEL=avx`) would otherwise pass unnoticed.
public enum KernelEnvironment {
    /// Throws a one-line error naming the variable, its value and what it accepts.
    public static func validate() throws {
        if let name = value("VZQ_KERNEL") {
            do { _ = try Kernel.named(name) } catch { throw KernelError.badEnvironment("VZQ_KERNEL=\(name): \(error)") }
        }
        if let text = value("VZQ_THREADS") {
            guard let n = Int(text), (1...4096).contains(n) else {
                throw KernelError.badEnvironment("VZQ_THREADS=\(text): expected a whole number of threads in 1…4096")
            }
        }
        if let text = value("VZQ_WIDEN_F32"), text != "0", text != "1" {
            throw KernelError.badEnvironment("VZQ_WIDEN_F32=\(text): expected 0 or 1")
        }
    }

    /// A variable's value; nil when unset or empty (an empty value means "not set", as the C layer reads it).
    static func value(_ name: String) -> String? {
        guard let p = getenv(name) else { return nil }
        let s = String(cString: p)
        return s.isEmpty ? nil : s
    }
}

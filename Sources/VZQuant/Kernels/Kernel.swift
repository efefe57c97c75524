import CQuant

/// A family of micro-kernels; one is chosen per process from the CPU's features (or `VZQ_KERNEL`).
public enum Kernel: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case scalar = 0, avx2 = 1, neon = 2, dotprod = 3, i8mm = 4

    var c: cq_kernel { cq_kernel(rawValue: UInt32(rawValue)) }

    public var description: String { String(cString: cq_kernel_name(c)) }
    public var isSupported: Bool { cq_kernel_supported(c) != 0 }

    public init?(name: String) {
        let v = cq_kernel_parse(name)
        guard v >= 0, let k = Kernel(rawValue: v) else { return nil }
        self = k
    }

    /// The best kernel this CPU runs.
    public static var best: Kernel { Kernel(rawValue: Int32(cq_kernel_best().rawValue))! }
    /// The kernel new packs use: `VZQ_KERNEL` when set and supported, else `best`.
    public static var current: Kernel { Kernel(rawValue: Int32(cq_kernel_default().rawValue))! }

    /// Makes `kernel` the default for this process.
    public static func use(_ kernel: Kernel) throws {
        guard cq_kernel_set_default(kernel.c) == CQ_OK else { throw KernelError.unknownKernel(kernel.description) }
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

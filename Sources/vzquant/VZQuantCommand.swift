import ArgumentParser
import VZQuant

@main
struct VZQuantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vzquant",
        abstract: "Quantized edge runtime for vision-language models.",
        subcommands: [RunCommand.self, ChatCommand.self, ServeCommand.self, TokenizeCommand.self, PerplexityCommand.self, PruneCommand.self, BenchCommand.self, ConvertCommand.self,
                      Info.self]
    )
}

/// Options every compute command shares.
struct ComputeOptions: ParsableArguments {
    @Option(name: .long, help: "Threads for the kernels (default: VZQ_THREADS, else all cores).")
    var threads: Int?

    @Option(name: .long, help: "Force a kernel: scalar, avx2, vnni, neon, dotprod, i8mm (default: VZQ_KERNEL, else the best this CPU runs).")
    var kernel: String?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let kernel { do { _ = try Kernel.named(kernel) } catch { throw ValidationError("\(error)") } }
    }

    /// Applies the options to the process-wide kernel settings.
    func apply() throws {
        // VZQ_KERNEL / VZQ_THREADS / VZQ_WIDEN_F32 are held to the same rules as the flags (one line, status 1).
        do { try KernelEnvironment.validate() } catch { fail("\(error)") }
        if let threads { Threads.count = threads }
        if let kernel { try Kernel.use(try Kernel.named(kernel)) }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the kernels this CPU runs and the thread count.")

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        try compute.apply()
        let supported = Kernel.allCases.filter(\.isSupported).map(\.description).joined(separator: ", ")
        print("kernel:    \(Kernel.current) (best \(Kernel.best); supported: \(supported))")
        print("threads:   \(Threads.count) (OpenMP \(Threads.openMP ? "yes" : "no"))")
    }
}

// swift-tools-version:6.1
//
// vzquant: a quantized edge runtime for vision-language models.
//   CQuant   — C11 int8/int4 GEMM kernels (scalar, AVX2, NEON/dotprod/i8mm), OpenMP threads
//   VZQ*     — the Swift library, one target per layer (Sources/<Layer>), VZQuant re-exports them all
//   VZQServe — the OpenAI-compatible HTTP server (Hummingbird 2, swift-prometheus)
//   vzquant  — the command-line tool
import Foundation
import PackageDescription

// MARK: - OpenMP from Debian/Ubuntu's libomp-dev
//
// Swift's bundled clang ships no omp.h. Debian installs LLVM's OpenMP runtime as
// /usr/lib/llvm-<V>/lib/libomp.so with omp.h under /usr/lib/llvm-<V>/lib/clang/<ver>/include (or
// /usr/lib/llvm-<V>/include/openmp). We take the newest version found; VZQ_OMP_INCLUDE and VZQ_OMP_LIB
// (directories) override the search. omp.h is added with -idirafter so that clang's own builtin headers
// (from Swift's newer clang) still come first: only the missing omp.h is taken from Debian's directory.
struct OpenMP {
    let includeDir: String
    let libDir: String
}

func findOpenMP() -> OpenMP {
    let fm = FileManager.default
    let env = ProcessInfo.processInfo.environment
    func exists(_ path: String) -> Bool { fm.fileExists(atPath: path) }

    if let inc = env["VZQ_OMP_INCLUDE"], let lib = env["VZQ_OMP_LIB"] {
        guard exists(inc + "/omp.h"), exists(lib + "/libomp.so") else {
            fatalError("VZQ_OMP_INCLUDE/VZQ_OMP_LIB are set but \(inc)/omp.h or \(lib)/libomp.so is missing")
        }
        return OpenMP(includeDir: inc, libDir: lib)
    }

    // /usr/lib/llvm-14, /usr/lib/llvm-18, … newest first (numeric, not lexical, order)
    let llvmDirs = ((try? fm.contentsOfDirectory(atPath: "/usr/lib")) ?? [])
        .filter { $0.hasPrefix("llvm-") }
        .compactMap { name -> (Int, String)? in
            guard let v = Int(name.dropFirst("llvm-".count)) else { return nil }
            return (v, "/usr/lib/" + name)
        }
        .sorted { $0.0 > $1.0 }
        .map(\.1)

    for root in llvmDirs {
        let lib = root + "/lib"
        guard exists(lib + "/libomp.so") else { continue }
        var candidates = [root + "/include/openmp"]
        let clangRoot = lib + "/clang"
        for ver in ((try? fm.contentsOfDirectory(atPath: clangRoot)) ?? []).sorted(by: >) {
            candidates.append(clangRoot + "/" + ver + "/include")
        }
        if let inc = candidates.first(where: { exists($0 + "/omp.h") }) {
            return OpenMP(includeDir: inc, libDir: lib)
        }
    }
    fatalError("""
        vzquant needs LLVM's OpenMP runtime (omp.h and libomp.so), and none was found under /usr/lib/llvm-*.
        Install it with:  sudo apt-get install libomp-dev
        or point VZQ_OMP_INCLUDE (directory with omp.h) and VZQ_OMP_LIB (directory with libomp.so) at another copy.
        """)
}

let omp = findOpenMP()

let package = Package(
    name: "vzquant",
    products: [
        .library(name: "VZQuant", targets: ["VZQuant"]),
        .executable(name: "vzquant", targets: ["vzquant"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The server: no swift-configuration support needed (flags configure it), so no default traits.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
    ],
    targets: [
        .target(
            name: "CQuant",
            path: "CQuant",
            cSettings: [
                .unsafeFlags(["-std=c11", "-O3", "-fopenmp", "-idirafter", omp.includeDir]),
            ],
            linkerSettings: [
                .unsafeFlags(["-L\(omp.libDir)", "-Xlinker", "-rpath", "-Xlinker", omp.libDir]),
                .linkedLibrary("omp"),
                .linkedLibrary("m"),
            ]
        ),
        // Image input: Debian's libjpeg-turbo (libjpeg-dev) and libpng (libpng-dev), driven from C (CImage) so that
        // libjpeg's setjmp/longjmp error handling never crosses Swift frames.
        .systemLibrary(
            name: "CJPEG",
            path: "Sources/CJPEG",
            providers: [.apt(["libjpeg-dev"])]
        ),
        .systemLibrary(
            name: "CPNG",
            path: "Sources/CPNG",
            pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]
        ),
        .target(
            name: "CImage",
            dependencies: ["CJPEG", "CPNG"],
            path: "Sources/CImage",
            cSettings: [.unsafeFlags(["-std=c11", "-O2"])],
            // A C target does not autolink its system-library dependencies' `link` directives: name them here.
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]
        ),
        // The library, one target per layer; each depends only on the layers below it (ARCHITECTURE.md).
        .target(name: "VZQSupport", dependencies: ["CQuant"], path: "Sources/Support"),
        .target(name: "VZQKernels", dependencies: ["CQuant"], path: "Sources/Kernels"),
        .target(name: "VZQFormats", dependencies: ["VZQKernels", "VZQSupport"], path: "Sources/Formats"),
        .target(name: "VZQModels", dependencies: ["VZQFormats", "VZQKernels", "VZQSupport", "CQuant"], path: "Sources/Models"),
        .target(name: "VZQTokenReduction", dependencies: ["VZQModels", "CQuant"], path: "Sources/TokenReduction"),
        .target(name: "VZQText", dependencies: ["VZQFormats"], path: "Sources/Text"),
        .target(name: "VZQImage", dependencies: ["VZQFormats", "CImage"], path: "Sources/Image"),
        .target(name: "VZQFamilies", dependencies: ["VZQModels", "VZQTokenReduction", "VZQImage", "VZQFormats"], path: "Sources/Families"),
        .target(name: "VZQRuntime",
                dependencies: ["VZQFamilies", "VZQTokenReduction", "VZQModels", "VZQText", "VZQImage", "VZQFormats",
                               "VZQKernels", "VZQSupport", "CQuant"],
                path: "Sources/Runtime"),
        .target(name: "VZQConvert", dependencies: ["VZQModels", "VZQText", "VZQFormats", "VZQKernels", "VZQSupport", "CQuant"],
                path: "Sources/Convert"),
        .target(name: "VZQBench",
                dependencies: ["VZQRuntime", "VZQConvert", "VZQTokenReduction", "VZQText", "VZQModels", "VZQImage", "VZQFormats", "VZQKernels", "VZQSupport", "CQuant"],
                path: "Sources/Bench"),
        .target(name: "VZQPrune",
                dependencies: ["VZQRuntime", "VZQConvert", "VZQFamilies", "VZQModels", "VZQText", "VZQImage", "VZQFormats", "VZQKernels",
                               "VZQSupport"],
                path: "Sources/Prune"),
        // Everything above as one import.
        .target(name: "VZQuant",
                dependencies: ["VZQSupport", "VZQKernels", "VZQFormats", "VZQModels", "VZQTokenReduction", "VZQText", "VZQImage",
                               "VZQFamilies", "VZQRuntime", "VZQConvert", "VZQBench", "VZQPrune"],
                path: "Sources/VZQuant"),
        // The HTTP server on the library's Conversation API; apart from the umbrella so that only the CLI (and its
        // tests) link Hummingbird.
        .target(name: "VZQServe",
                dependencies: ["VZQRuntime", "VZQTokenReduction", "VZQText", "VZQImage", "VZQFormats", "VZQSupport",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "Prometheus", package: "swift-prometheus")],
                path: "Sources/Serve"),
        .executableTarget(
            name: "vzquant",
            dependencies: [
                "VZQuant",
                "VZQServe",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/vzquant"
        ),
        .testTarget(
            name: "VZQuantTests",
            dependencies: ["VZQuant", "VZQServe", "CQuant"],
            path: "Tests/VZQuantTests",
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

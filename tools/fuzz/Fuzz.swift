// libFuzzer entry point for vzquant's parsers (built by tools/fuzz.sh into the VZQuant module, not by SwiftPM).
//
// One binary, five targets; VZQ_FUZZ_TARGET picks one when the process starts:
//   gguf       GGUFTarget.swift       GGUF files and what the model constructors read from them
//   hf         HFTarget.swift         safetensors, config.json, preprocessor_config.json, the HF planner
//   tokenizer  TokenizerTarget.swift  tokenizer.json & co. through TokenizerImport, then Tokenizer
//   image      ImageTarget.swift      JPEG/PNG decoding and preprocessing
//   request    RequestTarget.swift    `vzquant serve`'s chat-completions request parser
// VZQ_FUZZ_WRITE_SEEDS=DIR (in the seed-writer build, seeds/Seeds.swift) writes the synthetic seeds to DIR/gguf
// and DIR/hf and exits.
//
// Every target only uses `try?`: a thrown error is the expected answer to a bad input. A trap, an AddressSanitizer
// report, a leak, a timeout or a huge allocation (libFuzzer's -rss_limit_mb / -malloc_limit_mb) is a finding.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum FuzzTarget: String, CaseIterable {
    case gguf, hf, tokenizer, image, request
}

nonisolated(unsafe) var fuzzTarget = FuzzTarget.gguf
/// A directory of this process (under /dev/shm when it exists) for targets whose parsers read a model directory.
nonisolated(unsafe) var scratchDirectory = ""
/// VZQ_FUZZ_TRACE=1: each target prints the stages an input reached (to check that the seeds get deep).
nonisolated(unsafe) var traceStages = false
/// VZQ_FUZZ_REPEAT=N: each input runs N times (timing an input: `time VZQ_FUZZ_REPEAT=1000 … FILE`).
nonisolated(unsafe) var repeatCount = 1

func trace(_ stage: @autoclosure () -> String) {
    if traceStages { print("  " + stage()) }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>,
                           _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    #if VZQ_FUZZ_SEEDS
    if let dir = getenv("VZQ_FUZZ_WRITE_SEEDS") {
        do {
            let root = String(cString: dir)
            try writeSeeds(to: root + "/gguf")
            try writeHFSeeds(to: root + "/hf")
            exit(0)
        } catch {
            FileHandle.standardError.write(Data("writing seeds failed: \(error)\n".utf8))
            exit(1)
        }
    }
    #endif
    let name = getenv("VZQ_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("VZQ_FUZZ_TARGET must be one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    fuzzTarget = t
    traceStages = getenv("VZQ_FUZZ_TRACE").map { String(cString: $0) == "1" } ?? false
    repeatCount = getenv("VZQ_FUZZ_REPEAT").flatMap { Int(String(cString: $0)) } ?? 1
    if t == .hf || t == .tokenizer {
        let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        scratchDirectory = "\(base)/vzq-fuzz-\(t.rawValue)-\(getpid())"
        mkdir(scratchDirectory, 0o700)
        atexit { removeScratchDirectory() }
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    for _ in 0..<max(1, repeatCount) {
        switch fuzzTarget {
        case .gguf: fuzzGGUF(bytes)
        case .hf: fuzzHF(bytes)
        case .tokenizer: fuzzTokenizer(bytes)
        case .image: fuzzImage(bytes)
        case .request: fuzzRequest(bytes)
        }
    }
    return 0
}

// MARK: helpers

@inline(never)
func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

/// Parts of a multi-file input, cut at every "\n%%%\n" (an input without one is a single part).
let partSeparator: [UInt8] = Array("\n%%%\n".utf8)

func splitParts(_ bytes: UnsafeBufferPointer<UInt8>) -> [ArraySlice<UInt8>] {
    let all = Array(bytes)
    var parts: [ArraySlice<UInt8>] = []
    var start = 0, i = 0
    let s = partSeparator
    while i + s.count <= all.count {
        if all[i] == s[0], all[i ..< i + s.count].elementsEqual(s) {
            parts.append(all[start ..< i])
            i += s.count
            start = i
        } else {
            i += 1
        }
    }
    parts.append(all[start...])
    return parts
}

/// Writes `parts[i]` to `scratchDirectory/names[i]`; an empty or missing part removes that file (absent).
func writeScratchFiles(_ names: [String], _ parts: [ArraySlice<UInt8>]) {
    for (i, name) in names.enumerated() {
        let path = scratchDirectory + "/" + name
        guard i < parts.count, !parts[i].isEmpty else {
            unlink(path)
            continue
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { continue }
        parts[i].withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n <= 0 { break }
                done += n
            }
        }
        close(fd)
    }
}

func removeScratchDirectory() {
    guard !scratchDirectory.isEmpty, let names = try? FileManager.default.contentsOfDirectory(atPath: scratchDirectory) else { return }
    for n in names { unlink(scratchDirectory + "/" + n) }
    rmdir(scratchDirectory)
}

/// A small deterministic number from the input, to vary options per input without a separate byte for them.
func inputSalt(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
    var h = bytes.count
    for b in bytes.suffix(4) { h = h &* 31 &+ Int(b) }
    return h & 0x7fff_ffff
}

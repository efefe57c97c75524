// libFuzzer entry point for the format layer (built by tools/fuzz.sh, not by SwiftPM).
//
// Each input is parsed as a GGUF file and as a safetensors file from an exact-size heap copy (so
// AddressSanitizer sees any read past the end). On success every tensor's bytes are touched and converted
// to fp32, and every metadata key is read through each typed getter. Parsers must return or throw; a trap,
// an out-of-bounds read or a huge allocation (libFuzzer's -rss_limit_mb / -malloc_limit_mb) is a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFormats(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)

    if let f = try? GGUFFile(mapping: MappedFile(copying: bytes, name: "fuzz.gguf")) {
        for t in f.tensors {
            let b = f.bytes(of: t)
            if let first = b.first, let last = b.last { blackHole(first &+ last) }
            // Conversion allocates elementCount floats: keep it to what a small input can hold.
            if t.elementCount <= 1 << 20 { _ = try? f.floats(of: t.name) }
        }
        for key in f.metadata.keys {
            _ = try? f.metadata.string(key)
            _ = try? f.metadata.int(key)
            _ = try? f.metadata.float(key)
            _ = try? f.metadata.ints(key)
            _ = try? f.metadata.floats(key)
            _ = try? f.metadata.strings(key)
            blackHole(f.metadata[key]?.description.count ?? 0)
        }
    }

    if let f = try? SafeTensorsFile(mapping: MappedFile(copying: bytes, name: "fuzz.safetensors")) {
        for t in f.tensors {
            if let first = t.bytes.first, let last = t.bytes.last { blackHole(first &+ last) }
            if t.elementCount <= 1 << 20 { _ = try? t.floats() }
        }
    }
    return 0
}

@inline(never)
func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

import VZQFormats

/// Hand-written matchers for the split regexes of GPT-2 style byte-level BPE tokenizers, run over Unicode scalars.
///
/// Hugging Face tokenizers runs these regexes with Oniguruma (leftmost-first alternation, backtracking); llama.cpp
/// also hand-codes the common ones (unicode.cpp's custom gpt2/llama3 splitters) instead of running a regex engine.
/// Swift's Regex works on grapheme clusters by default (an emoji ZWJ sequence or "e" + U+0301 would be one
/// character, unlike in Oniguruma) and is slow on long texts, so the alternatives are written out here, each one in
/// the order the regex tries them:
///
///     gpt2   'S|'T|'RE|'VE|'M|'LL|'D| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+     (case-sensitive)
///     llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
///     qwen2  the llama3 regex with \p{N} (one digit per piece)
///     smollm every digit on its own (HF's Digits(individual_digits)), then gpt2 on the rest
///
/// \s is Unicode White_Space (as Oniguruma's \s), \p{L} the letter categories, \p{N} the number categories.
/// Each matcher is linear in the text length.
enum PreTokenizerKind: Sendable, Equatable {
    case gpt2, llama3, qwen2, smollm

    /// tokenizer.ggml.pre → splitter. Names llama.cpp uses for Llama-3 ("llama3", "llama-v3", "llama-bpe"),
    /// Qwen2, SmolLM and GPT-2; anything else (including "default") uses the GPT-2 regex.
    init(pre: String) {
        switch pre {
        case "llama3", "llama-v3", "llama-bpe": self = .llama3
        case "qwen2": self = .qwen2
        case "smollm": self = .smollm
        default: self = .gpt2
        }
    }
}

/// Character classes of one scalar.
struct ScalarClass: OptionSet {
    let rawValue: UInt8
    static let letter = ScalarClass(rawValue: 1)
    static let number = ScalarClass(rawValue: 2)
    static let space = ScalarClass(rawValue: 4)
    static let newline = ScalarClass(rawValue: 8)  // \r or \n

    private static let ascii: [ScalarClass] = (0 ..< 128).map { compute(Unicode.Scalar(UInt8($0))) }

    static func of(_ s: Unicode.Scalar) -> ScalarClass {
        s.value < 128 ? ascii[Int(s.value)] : compute(s)
    }

    static func compute(_ s: Unicode.Scalar) -> ScalarClass {
        var c: ScalarClass = []
        if s == "\r" || s == "\n" { c.insert(.newline) }
        let p = s.properties
        if p.isWhitespace { c.insert(.space) }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: c.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber: c.insert(.number)
        default: break
        }
        return c
    }
}

enum PreTokenizer {
    /// Splits `scalars` into pieces; returns the end index of each piece (the pieces cover the whole input).
    static func split(_ scalars: [Unicode.Scalar], kind: PreTokenizerKind) -> [Range<Int>] {
        let cls = scalars.map(ScalarClass.of)
        var out: [Range<Int>] = []
        out.reserveCapacity(scalars.count / 3 + 1)
        switch kind {
        case .gpt2:
            gpt2(scalars, cls, 0 ..< scalars.count, into: &out)
        case .smollm:
            var start = 0
            for i in 0 ..< scalars.count where cls[i].contains(.number) {
                if start < i { gpt2(scalars, cls, start ..< i, into: &out) }
                out.append(i ..< i + 1)
                start = i + 1
            }
            if start < scalars.count { gpt2(scalars, cls, start ..< scalars.count, into: &out) }
        case .llama3:
            llama3(scalars, cls, maxDigits: 3, into: &out)
        case .qwen2:
            llama3(scalars, cls, maxDigits: 1, into: &out)
        }
        return out
    }

    /// Length of a contraction at i ('s 't 'm 'd 're 've 'll), 0 when none. `fold`: case-insensitive.
    private static func contraction(_ s: [Unicode.Scalar], _ i: Int, end: Int, fold: Bool) -> Int {
        guard s[i] == "'", i + 1 < end else { return 0 }
        func lower(_ c: Unicode.Scalar) -> Unicode.Scalar {
            guard fold, c.value >= 65, c.value <= 90 else { return c }
            return Unicode.Scalar(c.value + 32)!
        }
        let a = lower(s[i + 1])
        if a == "s" || a == "t" || a == "m" || a == "d" { return 2 }
        guard i + 2 < end else { return 0 }
        let b = lower(s[i + 2])
        if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { return 3 }
        return 0
    }

    private static func gpt2(_ s: [Unicode.Scalar], _ cls: [ScalarClass], _ range: Range<Int>, into out: inout [Range<Int>]) {
        let end = range.upperBound
        var i = range.lowerBound
        func other(_ j: Int) -> Bool { cls[j].isDisjoint(with: [.letter, .number, .space]) }
        while i < end {
            let start = i
            // 's|'t|'re|'ve|'m|'ll|'d
            let c = contraction(s, i, end: end, fold: false)
            if c > 0 {
                out.append(i ..< i + c)
                i += c
                continue
            }
            // optional space then one class: ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            var j = i
            if s[j] == " ", j + 1 < end, !cls[j + 1].contains(.space) { j += 1 }
            if j < end {
                let k = cls[j]
                let test: (Int) -> Bool
                if k.contains(.letter) {
                    test = { cls[$0].contains(.letter) }
                } else if k.contains(.number) {
                    test = { cls[$0].contains(.number) }
                } else if other(j) {
                    test = other
                } else {
                    test = { _ in false }
                }
                if test(j) {
                    j += 1
                    while j < end, test(j) { j += 1 }
                    out.append(start ..< j)
                    i = j
                    continue
                }
            }
            // whitespace: `\s+(?!\S)` then `\s+`
            var e = i
            while e < end, cls[e].contains(.space) { e += 1 }
            if e == end || e - i == 1 {
                out.append(i ..< e)
                i = e
            } else {
                out.append(i ..< e - 1)
                i = e - 1
            }
        }
    }

    private static func llama3(_ s: [Unicode.Scalar], _ cls: [ScalarClass], maxDigits: Int, into out: inout [Range<Int>]) {
        let end = s.count
        var i = 0
        func other(_ j: Int) -> Bool { cls[j].isDisjoint(with: [.letter, .number, .space]) }
        while i < end {
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            let c = contraction(s, i, end: end, fold: true)
            if c > 0 {
                out.append(i ..< i + c)
                i += c
                continue
            }
            let k = cls[i]
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if k.contains(.letter) || (k.isDisjoint(with: [.newline, .letter, .number]) && i + 1 < end && cls[i + 1].contains(.letter)) {
                var j = i + 1
                while j < end, cls[j].contains(.letter) { j += 1 }
                out.append(i ..< j)
                i = j
                continue
            }
            // \p{N}{1,maxDigits}
            if k.contains(.number) {
                var j = i + 1
                while j < end, j - i < maxDigits, cls[j].contains(.number) { j += 1 }
                out.append(i ..< j)
                i = j
                continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            var j = i
            if s[j] == " ", j + 1 < end, other(j + 1) { j += 1 }
            if other(j) {
                j += 1
                while j < end, other(j) { j += 1 }
                while j < end, cls[j].contains(.newline) { j += 1 }
                out.append(i ..< j)
                i = j
                continue
            }
            // whitespace run [i, e): `\s*[\r\n]+` ends after the run's last newline; else `\s+(?!\S)`, `\s+`
            var e = i
            var lastNewline = -1
            while e < end, cls[e].contains(.space) {
                if cls[e].contains(.newline) { lastNewline = e }
                e += 1
            }
            if lastNewline >= 0 {
                out.append(i ..< lastNewline + 1)
                i = lastNewline + 1
            } else if e == end || e - i == 1 {
                out.append(i ..< e)
                i = e
            } else {
                out.append(i ..< e - 1)
                i = e - 1
            }
        }
    }
}

import Foundation
import VZQFamilies
import VZQTokenReduction
import VZQModels
import VZQText
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

/// How many visual tokens an image (or each crop of it) hands the language model: every token the projector
/// makes (`all`, VisionZip off) or a VisionZip budget of dominant + contextual tokens.
public enum VisualTokens: Sendable, Equatable, CustomStringConvertible {
    case all
    case budget(VisionZip.Budget)

    /// LLaVA-1.5-sized encoders: 64 = 54 dominant + 10 contextual, the paper's smallest setting.
    public static let defaultBudget = 64

    /// "N" (split into dominant + contextual as the paper does) or "all".
    public init(_ text: String) throws {
        if text == "all" {
            self = .all
        } else if let n = Int(text) {
            self = .budget(try VisionZip.Budget.split(visualTokens: n))
        } else {
            throw VisionZipError("visual-token budget '\(text)' is neither a number nor 'all'")
        }
    }

    /// An explicit split: D dominant + C contextual tokens.
    public init(dominant d: Int, contextual c: Int) throws {
        guard d >= 0, c >= 0, d > 0 || c > 0 else { throw VisionZipError("dominant \(d) and contextual \(c) tokens must be ≥ 0 and not both 0") }
        try VisionZip.Budget.checkSize(max(d, c))
        try VisionZip.Budget.checkSize(d + c)
        self = .budget(VisionZip.Budget(dominant: d, contextual: c))
    }

    /// "all", or the total budget as a number (what reports print in their `visual_tokens` column).
    public var description: String {
        switch self {
        case .all: return "all"
        case let .budget(b): return String(b.total)
        }
    }

    /// A comma-separated list such as "all,192,128,64".
    public static func list(_ text: String) throws -> [VisualTokens] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !items.isEmpty, !items.contains(where: \.isEmpty) else {
            throw VisionZipError("visual-token budgets '\(text)' are not a comma-separated list of numbers and 'all'")
        }
        return try items.map { try VisualTokens($0) }
    }
}

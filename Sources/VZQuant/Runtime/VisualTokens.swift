import Foundation

/// How many visual tokens an image (or each crop of it) hands the language model: every token the projector
/// makes (`all`, VisionZip off) or a VisionZip budget of dominant + contextual tokens.
public enum VisualTokens: Sendable, Equatable, CustomStringConvertible {
    case all
    case budget(VisionZip.Budget)

    /// LLaVA-1.5-sized encoders: 64 = 54 dominant + 10 contextual, the paper's smallest setting.
    public static let defaultBudget = 64

    /// `--visual-tokens N|all`, optionally overridden by `--dominant D --contextual C` (both or neither).
    public init(option: String?, dominant: Int? = nil, contextual: Int? = nil) throws {
        switch (dominant, contextual) {
        case let (d?, c?):
            guard option == nil else {
                throw VisionZipError("give either --visual-tokens or --dominant/--contextual, not both")
            }
            self = .budget(VisionZip.Budget(dominant: d, contextual: c))
            guard d >= 0, c >= 0, d + c >= 1 else { throw VisionZipError("--dominant/--contextual must be ≥ 0 and not both 0") }
            return
        case (nil, nil):
            break
        default:
            throw VisionZipError("--dominant and --contextual go together")
        }
        let text = option ?? String(Self.defaultBudget)
        if text == "all" {
            self = .all
        } else if let n = Int(text) {
            self = .budget(try VisionZip.Budget.split(visualTokens: n))
        } else {
            throw VisionZipError("--visual-tokens '\(text)' is neither a number nor 'all'")
        }
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
            throw VisionZipError("--visual-tokens '\(text)' is not a comma-separated list of numbers and 'all'")
        }
        return try items.map { try VisualTokens(option: $0) }
    }
}

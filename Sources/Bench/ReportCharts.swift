import Foundation
import VZQRuntime
import VZQConvert
import VZQTokenReduction
import VZQText
import VZQModels
import VZQImage
import VZQFormats
import VZQKernels
import VZQSupport
import CQuant

// A small, self-contained SVG of a `bench model` report that opens in any browser: two horizontal bar charts,
// time to first token and peak RSS, one bar per row, values written on the bars. No scripts, no external fonts
// or styles; every piece of text from the report is XML-escaped.

extension ModelBenchReport {
    /// The chart as an SVG document.
    public func svg() -> String {
        var chart = BarChartSVG(width: 760)
        chart.title("vzquant bench model — \(model)")
        chart.subtitle("cpu \(cpu) · kernel \(kernel) · \(threads) thread\(threads == 1 ? "" : "s") · \(date)")
        let labels = results.map(\.label)
        chart.panel(
            title: "Time to first token (median; thin line: min–max)", axis: "milliseconds", cssClass: "bar-ttft",
            color: "#4c78a8", labels: labels,
            values: results.map { $0.ttft?.median }, ranges: results.map { $0.ttft.map { (min: $0.min, max: $0.max) } },
            format: { Units.ms($0) + " ms" })
        chart.panel(
            title: "Peak resident memory (VmHWM)" + (peakRSSPerRow ? "" : ", cumulative: could not be reset per row"),
            axis: "MiB", cssClass: "bar-rss", color: "#f58518", labels: labels,
            values: results.map { $0.memory.peakRSSBytes.map { Double($0) / Double(1 << 20) } },
            ranges: results.map { _ in nil },
            format: { String(format: "%.1f MiB", $0) })
        return chart.document()
    }

    /// Writes `svg()` atomically (temporary file, then rename).
    public func writeSVG(to path: String) throws { try ModelBenchReport.writeAtomically(svg(), to: path) }
}

/// Builds the SVG top to bottom; `y` is where the next element goes.
struct BarChartSVG {
    let width: Double
    private var body: [String] = []
    private var y = 0.0

    // Horizontal layout: row labels right-aligned before `plotLeft`, bars up to `plotRight`, values after a bar.
    private let margin = 16.0
    private var labelRight: Double { 232 }
    private var plotLeft: Double { 240 }
    private var plotRight: Double { width - 110 }
    private let barHeight = 18.0
    private let barPitch = 24.0

    init(width: Double) { self.width = width }

    mutating func title(_ text: String) {
        y += 28
        body.append("<text x='\(f(margin))' y='\(f(y))' font-size='16' font-weight='bold'>\(xmlEscaped(text))</text>")
    }

    mutating func subtitle(_ text: String) {
        y += 18
        body.append("<text x='\(f(margin))' y='\(f(y))' font-size='11' fill='#555'>\(xmlEscaped(text))</text>")
    }

    /// One bar per label; nil values get no bar and "n/a". `ranges` (min, max) draw a thin whisker over the bar.
    mutating func panel(title: String, axis: String, cssClass: String, color: String, labels: [String],
                        values: [Double?], ranges: [(min: Double, max: Double)?], format: (Double) -> String) {
        y += 30
        body.append("<text x='\(f(margin))' y='\(f(y))' font-size='13' font-weight='bold'>\(xmlEscaped(title))</text>")
        y += 10
        let finite = (values.compactMap { $0 } + ranges.compactMap { $0?.max }).filter { $0.isFinite && $0 >= 0 }
        let scaleMax = niceCeiling(finite.max() ?? 0)
        let plotWidth = plotRight - plotLeft
        func x(_ v: Double) -> Double { plotLeft + plotWidth * Swift.min(Swift.max(v, 0), scaleMax) / scaleMax }

        let top = y
        for (i, label) in labels.enumerated() {
            let barTop = top + Double(i) * barPitch
            let middle = barTop + barHeight / 2 + 4
            body.append("<text x='\(labelRight)' y='\(f(middle))' font-size='11' text-anchor='end'>"
                + "\(xmlEscaped(shortened(label, 36)))</text>")
            let value = i < values.count ? values[i] : nil
            guard let value, value.isFinite, value >= 0 else {
                // A zero-width bar keeps the document at one bar per row.
                body.append("<rect class='\(cssClass)' x='\(f(plotLeft))' y='\(f(barTop))' width='0' "
                    + "height='\(f(barHeight))' fill='\(color)'/>")
                body.append("<text x='\(f(plotLeft + 4))' y='\(f(middle))' font-size='11' fill='#555'>n/a</text>")
                continue
            }
            let end = x(value)
            body.append("<rect class='\(cssClass)' x='\(f(plotLeft))' y='\(f(barTop))' "
                + "width='\(f(end - plotLeft))' height='\(f(barHeight))' fill='\(color)'>"
                + "<title>\(xmlEscaped(label)): \(xmlEscaped(format(value)))</title></rect>")
            var textX = end + 4
            if i < ranges.count, let range = ranges[i], range.min.isFinite, range.max.isFinite {
                let whiskerY = f(barTop + barHeight / 2)
                body.append("<line x1='\(f(x(range.min)))' y1='\(whiskerY)' x2='\(f(x(range.max)))' y2='\(whiskerY)' "
                    + "stroke='#222' stroke-width='1.5'/>")
                textX = Swift.max(textX, x(range.max) + 4)
            }
            body.append("<text x='\(f(textX))' y='\(f(middle))' font-size='11'>\(xmlEscaped(format(value)))</text>")
        }

        // The value axis: a baseline, five intervals with tick labels, and the unit.
        y = top + Double(labels.count) * barPitch + 2
        body.append("<line x1='\(f(plotLeft))' y1='\(f(y))' x2='\(f(plotRight))' y2='\(f(y))' stroke='#222'/>")
        body.append("<line x1='\(f(plotLeft))' y1='\(f(top - 4))' x2='\(f(plotLeft))' y2='\(f(y))' stroke='#222'/>")
        for tick in 0...5 {
            let v = scaleMax * Double(tick) / 5
            let tx = x(v)
            body.append("<line x1='\(f(tx))' y1='\(f(y))' x2='\(f(tx))' y2='\(f(y + 4))' stroke='#222'/>")
            body.append("<text x='\(f(tx))' y='\(f(y + 16))' font-size='10' text-anchor='middle'>"
                + "\(String(format: "%g", v))</text>")
        }
        y += 32
        body.append("<text x='\(f((plotLeft + plotRight) / 2))' y='\(f(y))' font-size='11' "
            + "text-anchor='middle'>\(xmlEscaped(axis))</text>")
    }

    func document() -> String {
        let height = y + 16
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" \
            viewBox="0 0 \(f(width)) \(f(height))" font-family="sans-serif">
            <rect class="background" x="0" y="0" width="\(f(width))" height="\(f(height))" fill="#ffffff"/>
            \(body.joined(separator: "\n"))
            </svg>

            """
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (so the axis ticks are round numbers); 1 for 0 or less.
func niceCeiling(_ v: Double) -> Double {
    guard v.isFinite, v > 0 else { return 1 }
    let power = pow(10, floor(log10(v)))
    for step in [1.0, 2, 5, 10] where step * power >= v * (1 - 1e-12) {
        return step * power
    }
    return 10 * power
}

/// Text safe inside an XML element or a double-quoted attribute. Control characters other than tab and newline
/// are not allowed in XML 1.0 at all and are dropped.
func xmlEscaped(_ s: String) -> String {
    var out = ""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        case "\t", "\n": out.unicodeScalars.append(scalar)
        default:
            if scalar.value >= 0x20, scalar.value != 0xFFFE, scalar.value != 0xFFFF { out.unicodeScalars.append(scalar) }
        }
    }
    return out
}

/// At most `limit` characters, with "…" when cut.
private func shortened(_ s: String, _ limit: Int) -> String {
    s.count <= limit ? s : String(s.prefix(limit - 1)) + "…"
}

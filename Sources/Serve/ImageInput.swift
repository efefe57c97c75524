import Foundation
import VZQFormats

/// Where a request's image comes from. `data:` URLs (base64 JPEG/PNG) are the API's way; the server fetches
/// nothing from the network; local paths are read only below the directory `--allow-local-files` names.
package enum ImageInput {
    static func bytes(_ url: String, limits: RequestLimits, param: String) throws -> Data {
        func bad(_ message: String) -> APIError { .badRequest("\(param): \(message)", param: param) }
        let lower = url.prefix(16).lowercased()
        if lower.hasPrefix("data:") { return try dataURL(url, limit: limits.maxImageBytes, param: param) }
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            throw bad("image URLs are not fetched: send the image as a data: URL (data:image/jpeg;base64,…)")
        }
        let path: String
        if lower.hasPrefix("file://") { path = String(url.dropFirst("file://".count)) } else if url.hasPrefix("/") { path = url } else {
            throw bad("expected a data: URL (data:image/jpeg;base64,…)")
        }
        guard let root = limits.localFilesRoot else {
            throw bad("local image paths are refused (the server reads them only below --allow-local-files DIR)")
        }
        // Links and dot segments are resolved before comparing, so that no spelling leaves the directory.
        let resolved = resolvedPath(path)
        guard resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw bad("'\(path)' is outside the directory the server may read images from")
        }
        do {
            return Data(try InputFile.read(resolved, limit: limits.maxImageBytes))
        } catch {
            throw APIError(HTTPStatus.badRequest, "\(param): \(error)", param: param)
        }
    }

    /// `path` with symbolic links and `.`/`..` resolved (the allowed directory and every requested file alike).
    package static func resolvedPath(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
    }

    /// `data:[<type>][;base64],<payload>`: only base64 images.
    static func dataURL(_ url: String, limit: Int, param: String) throws -> Data {
        func bad(_ message: String) -> APIError { .badRequest("\(param): \(message)", param: param) }
        guard let comma = url.firstIndex(of: ",") else { throw bad("a data: URL needs a ',' before its payload") }
        let header = url[url.index(url.startIndex, offsetBy: 5)..<comma].lowercased()
        guard header.hasSuffix(";base64") else { throw bad("only base64 data: URLs are served (data:image/png;base64,…)") }
        let type = header.dropLast(";base64".count)
        guard type.isEmpty || type.hasPrefix("image/") || type == "application/octet-stream" else {
            throw bad("a data: URL of type '\(type)' is not an image")
        }
        let payload = url[url.index(after: comma)...].filter { !$0.isWhitespace }
        // The size is known from the text: refuse before decoding.
        let decodedBytes = payload.utf8.count / 4 * 3
        if decodedBytes > limit + 2 {
            throw APIError(HTTPStatus.contentTooLarge, "\(param): the image is about \(decodedBytes) bytes, over the limit of \(limit) bytes",
                           param: param, code: "image_too_large")
        }
        guard let data = Data(base64Encoded: String(payload)) else { throw bad("the data: URL's payload is not valid base64") }
        guard !data.isEmpty else { throw bad("the image is empty") }
        if data.count > limit {
            throw APIError(HTTPStatus.contentTooLarge, "\(param): the image is \(data.count) bytes, over the limit of \(limit) bytes",
                           param: param, code: "image_too_large")
        }
        return data
    }
}

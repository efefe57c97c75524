import Foundation
import VZQFormats

/// The HTTP statuses the API answers with (plain numbers: the request parser needs no HTTP library).
public enum HTTPStatus {
    public static let badRequest = 400, unauthorized = 401, notFound = 404, contentTooLarge = 413
    public static let internalError = 500, unavailable = 503
}

/// An error as OpenAI's API reports it: an HTTP status and `{"error": {"message", "type", "param", "code"}}`.
/// Every failure a request can meet becomes one of these; the server keeps serving after each.
public struct APIError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The HTTP status: 400, 401, 404, 413, 500, 503 …
    public let status: Int
    public let message: String
    /// OpenAI's `type`: invalid_request_error, authentication_error, not_found_error, server_error, …
    public let type: String
    /// The request field at fault, if one is.
    public let param: String?
    /// A machine-readable reason (context_length_exceeded, queue_full, …).
    public let code: String?
    /// Seconds to wait before retrying (503).
    public var retryAfter: Int?

    public init(_ status: Int, _ message: String, type: String? = nil, param: String? = nil,
                code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type ?? Self.defaultType(status)
        self.param = param
        self.code = code
    }

    public var description: String { "\(status) \(type): \(message)" }

    static func defaultType(_ status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 503: "server_overloaded"
        case 500...: "server_error"
        default: "invalid_request_error"
        }
    }

    static func badRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(HTTPStatus.badRequest, message, param: param, code: code)
    }

    /// The JSON body.
    var body: Data {
        struct Body: Encodable {
            struct Detail: Encodable {
                let message: String
                let type: String
                let param: String?
                let code: String?

                func encode(to encoder: any Encoder) throws {
                    var c = encoder.container(keyedBy: CodingKeys.self)
                    try c.encode(message, forKey: .message)
                    try c.encode(type, forKey: .type)
                    try c.encode(param, forKey: .param) // null, not absent, as OpenAI writes it
                    try c.encode(code, forKey: .code)
                }

                enum CodingKeys: String, CodingKey { case message, type, param, code }
            }
            let error: Detail
        }
        return (try? JSONEncoder().encode(Body(error: .init(message: message, type: type, param: param, code: code))))
            ?? Data(#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#.utf8)
    }
}

extension DecodingError {
    /// One line naming what is wrong and where ("… at 'messages[0].content'"), and that field as OpenAI's `param`.
    var requestMessage: (message: String, param: String?) {
        let context: Context?
        switch self {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c): context = c
        case let .keyNotFound(key, c): context = Context(codingPath: c.codingPath + [key], debugDescription: "")
        @unknown default: context = nil
        }
        let param = context.map { decodingPath($0.codingPath) }.flatMap { $0.isEmpty ? nil : $0 }
        return ("the body is not a valid request: " + describeDecodingError(self), param)
    }
}

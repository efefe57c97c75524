import Foundation
import XCTest
@testable import VZQConvert
@testable import VZQKernels

/// llama.cpp's mixes (q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k): the type TypePolicy gives every tensor equals the one
/// llama.cpp's own llama_model_quantize chose for the same model (Fixtures/quant_mixes, tools/make_quant_mix_fixtures.py:
/// grouped and plain attention, tied and untied output, row lengths K-quants cannot cut, an 80-layer 70B-class model).
final class QuantMixTests: XCTestCase {
    struct Fixture: Decodable {
        struct Model: Decodable {
            let name: String
            let groupedKV: Bool
            let tensors: [Tensor]
            let types: [String: [String]]
            enum CodingKeys: String, CodingKey { case name, tensors, types, groupedKV = "grouped_kv" }
        }
        struct Tensor: Decodable {
            let name: String
            let dims: [Int]
            init(from decoder: any Decoder) throws {
                var c = try decoder.unkeyedContainer()
                name = try c.decode(String.self)
                dims = try c.decode([Int].self)
            }
        }
        let models: [Model]
    }

    func testMixesChooseLlamaCppTypes() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("quant_mixes/llama_cpp_types.json")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fixture.models.count, 5)
        var compared = 0
        for model in fixture.models {
            let context = MixContext(tensorNames: model.tensors.map(\.name), groupedKV: model.groupedKV)
            XCTAssertEqual(Set(model.types.keys), Set(QuantMix.allCases.map(\.rawValue)))
            for mix in QuantMix.allCases {
                let policy = try TypePolicy(mix: mix)
                let expected = try XCTUnwrap(model.types[mix.rawValue])
                for (tensor, want) in zip(model.tensors, expected) {
                    let role = TypePolicy.role(ggufName: tensor.name, dims: tensor.dims)
                    let (got, _) = policy.choose(role: role, dims: tensor.dims, name: tensor.name, file: context)
                    XCTAssertEqual(got.description.lowercased(), want, "\(model.name) \(mix.rawValue) \(tensor.name) \(tensor.dims)")
                    compared += 1
                }
            }
        }
        XCTAssertEqual(compared, 5285)
    }

    func testPolicyNamesAndFileTypes() throws {
        XCTAssertEqual(try TypePolicy(named: "Q4_K_M").mix, .q4_k_m)
        XCTAssertEqual(try TypePolicy(named: "q4_k_m").fileType, 15)
        XCTAssertEqual(try TypePolicy(named: "q6_k").mix, .q6_k)
        XCTAssertEqual(try TypePolicy(named: "q4_k").mix, nil)
        XCTAssertEqual(try TypePolicy(named: "q4_k").type, .q4_K)
        XCTAssertEqual(try TypePolicy(named: "q5_1").fileType, 9)
        XCTAssertThrowsError(try TypePolicy(named: "q3_k_m"))
        XCTAssertThrowsError(try TypePolicy(named: "bf16"))
        // A single K type: every matrix that type, the token embedding Q8_0, llama.cpp's fallbacks for odd rows.
        let pure = try TypePolicy(named: "q4_k")
        XCTAssertEqual(pure.choose(role: .matrix, dims: [512, 64]).0, .q4_K)
        XCTAssertEqual(pure.choose(role: .tokenEmbedding, dims: [512, 64]).0, .q8_0)
        XCTAssertEqual(pure.choose(role: .matrix, dims: [576, 64]).0, .q5_0)
        XCTAssertEqual(try TypePolicy(named: "q5_k").choose(role: .matrix, dims: [576, 64]).0, .q5_1)
        XCTAssertEqual(try TypePolicy(named: "q6_k").choose(role: .matrix, dims: [576, 64]).0, .q8_0)
        XCTAssertEqual(pure.choose(role: .matrix, dims: [100, 64]).0, .f16)
        XCTAssertNotNil(pure.choose(role: .matrix, dims: [576, 64]).note)
    }
}

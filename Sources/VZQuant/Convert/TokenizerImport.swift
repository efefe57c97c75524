/// Reads a Hugging Face tokenizer (tokenizer.json, tokenizer.model, tokenizer_config.json,
/// special_tokens_map.json) and returns the `tokenizer.ggml.*` metadata llama.cpp expects in a GGUF text model.
public enum TokenizerImport {
    /// Interface for `vzquant convert`; the implementation lands in its own change.
    public static func metadata(modelDirectory: String) throws -> [(key: String, value: GGUFValue)] {
        throw FormatError(file: modelDirectory, "tokenizer import is not implemented yet")
    }
}

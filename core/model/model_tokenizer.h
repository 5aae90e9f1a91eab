// model_tokenizer.h: the tokenizer of an opened model, whatever its format: tokenizer.json (+
// tokenizer_config.json) beside a Hugging Face checkpoint, or the `tokenizer.*` metadata of a GGUF
// file turned into a TokenizerSpec.
//
// Failure codes: NotFound (no tokenizer in the model), Corrupt (metadata of the wrong type or arrays
// of different lengths), Unsupported (a tokenizer model other than byte-level BPE, an unknown
// pre-tokenizer), and whatever Tokenizer::fromJsonFile reports.
// Thread affinity: reentrant; the result is immutable and shareable.
#pragma once

#include "core/model/model_files.h"
#include "core/model/tokenizer.h"

namespace msa::model {

class GgufFile;

Result<Tokenizer> loadTokenizer(const ModelFiles& model);

// Reads the tokenizer.* metadata of a GGUF file (exposed for tests).
Result<TokenizerSpec> tokenizerSpecFromGguf(const GgufFile& gguf);

}  // namespace msa::model

// model_runtime.h: everything needed to run a model, opened in one call: the validated files, the
// weights on a backend, the tokenizer and the chat template. Used by `msa generate`, `msa bench`,
// the memory encoder and the GUI's engine thread alike.
//
// Ownership: the bundle shares the immutable parts (files, loaded model, tokenizer) read-only; any
// number of sessions can be created from it, each used by one thread.
// Failure codes: those of ModelFiles::open, loadTokenizer and Backend::load, with the path as context.
#pragma once

#include "core/engine/backend.h"
#include "core/engine/generator.h"
#include "core/model/chat_template.h"
#include "core/model/model_files.h"
#include "core/model/tokenizer.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace msa::jobs {

struct ModelRuntime {
    std::shared_ptr<const model::ModelFiles> files;
    std::shared_ptr<const engine::LoadedModel> model;
    std::shared_ptr<const model::Tokenizer> tokenizer;
    model::ChatTemplate chatTemplate = model::ChatTemplate::chatMl();
    bool chatTemplateFromModel = false;   // false: the model had no (recognised) template; ChatML is assumed
};

Result<ModelRuntime> openModelRuntime(const std::filesystem::path& path, engine::Backend& backend);

// The prompt token ids for `text`: raw (BOS added when the model asks for it), or, with `chat`, the
// text as one user turn in the model's chat template with the generation prompt appended.
std::vector<int32_t> promptTokens(const ModelRuntime& rt, const std::string& text, bool chat);

// Stop strings that end an assistant turn in chat mode.
std::vector<std::string> chatStopStrings(const ModelRuntime& rt);

}  // namespace msa::jobs

#include "core/jobs/model_runtime.h"

#include "core/model/model_tokenizer.h"
#include "core/util/log.h"

namespace msa::jobs {

Result<ModelRuntime> openModelRuntime(const std::filesystem::path& path, engine::Backend& backend) {
    ModelRuntime rt;
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<model::ModelFiles> files, model::ModelFiles::open(path));
    rt.files = std::move(files);
    auto tok = model::loadTokenizer(*rt.files);
    if (!tok) return tok.status().withContext("loading the tokenizer of " + quotedName(path.string()));
    rt.tokenizer = std::make_shared<const model::Tokenizer>(std::move(tok).value());
    const std::string& source = rt.tokenizer->chatTemplateSource();
    if (!source.empty()) {
        auto t = model::ChatTemplate::detect(source);
        if (t) {
            rt.chatTemplate = *t;
            rt.chatTemplateFromModel = true;
        } else {
            MSA_LOG(Warning) << "chat template of " << path.string() << " not recognised (" << t.status().message()
                             << "); using ChatML";
        }
    }
    auto loaded = backend.load(rt.files);
    if (!loaded) return loaded.status().withContext(quotedName(path.string()));
    rt.model = std::move(loaded).value();
    return rt;
}

std::vector<int32_t> promptTokens(const ModelRuntime& rt, const std::string& text, bool chat) {
    model::EncodeOptions opts;
    if (!chat) {
        opts.addBos = rt.tokenizer->addBosByDefault();
        return rt.tokenizer->encode(text, opts);
    }
    const model::ChatMessage user{"user", text};
    const std::string rendered = rt.chatTemplate.apply(std::span<const model::ChatMessage>(&user, 1));
    return rt.tokenizer->encode(rendered, opts);   // the template writes BOS itself where the model wants it
}

std::vector<std::string> chatStopStrings(const ModelRuntime& rt) { return {rt.chatTemplate.endOfTurn()}; }

}  // namespace msa::jobs

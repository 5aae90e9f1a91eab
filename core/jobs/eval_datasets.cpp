#include "core/jobs/eval_datasets.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

namespace msa::jobs {
namespace {

using nlohmann::json;

Status fieldError(const std::string& name, const std::string& where, const std::string& what) {
    return corrupt(name + ": " + where + ": " + what);
}

// A string field that must be present.
Result<std::string> stringField(const json& obj, const char* field, const std::string& name, const std::string& where) {
    auto it = obj.find(field);
    if (it == obj.end()) return fieldError(name, where, std::string("missing field ") + field);
    if (!it->is_string()) return fieldError(name, where, std::string(field) + " is not a string");
    return it->get<std::string>();
}

// Answers are usually strings; LoCoMo has some numbers (years) that are answers all the same.
Result<std::string> answerText(const json& v, const std::string& name, const std::string& where, const char* field) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<long long>());
    if (v.is_number()) {
        std::ostringstream s;
        s << v.get<double>();
        return s.str();
    }
    return fieldError(name, where, std::string(field) + " is neither a string nor a number");
}

Result<EvalDataset> parseMusique(const json& root, const std::string& name) {
    EvalDataset ds;
    ds.format = DatasetFormat::Musique;
    std::unordered_map<std::string, size_t> byContent;
    for (size_t qi = 0; qi < root.size(); ++qi) {
        const json& q = root[qi];
        const std::string where = "question " + std::to_string(qi);
        if (!q.is_object()) return fieldError(name, where, "is not an object");
        EvalItem item;
        MSA_ASSIGN_OR_RETURN(item.question, stringField(q, "question", name, where));
        if (auto it = q.find("id"); it != q.end() && it->is_string()) item.id = it->get<std::string>();
        else item.id = "q" + std::to_string(qi);
        if (const size_t h = item.id.find("hop"); h != std::string::npos && h > 0) item.category = item.id.substr(0, h + 3);
        if (auto it = q.find("answer"); it != q.end() && !it->is_null()) {
            MSA_ASSIGN_OR_RETURN(std::string a, answerText(*it, name, where, "answer"));
            item.answers.push_back(std::move(a));
            if (auto al = q.find("answer_aliases"); al != q.end() && !al->is_null()) {
                if (!al->is_array()) return fieldError(name, where, "answer_aliases is not an array");
                for (size_t ai = 0; ai < al->size(); ++ai) {
                    MSA_ASSIGN_OR_RETURN(std::string a2, answerText((*al)[ai], name, where, ("answer_aliases[" + std::to_string(ai) + "]").c_str()));
                    item.answers.push_back(std::move(a2));
                }
            }
        }
        auto ps = q.find("paragraphs");
        if (ps == q.end()) return fieldError(name, where, "missing field paragraphs");
        if (!ps->is_array()) return fieldError(name, where, "paragraphs is not an array");
        std::set<size_t> gold, context;
        for (size_t pi = 0; pi < ps->size(); ++pi) {
            const json& p = (*ps)[pi];
            const std::string pwhere = where + ": paragraphs[" + std::to_string(pi) + "]";
            if (!p.is_object()) return fieldError(name, pwhere, "is not an object");
            EvalDocument d;
            MSA_ASSIGN_OR_RETURN(d.text, stringField(p, "paragraph_text", name, pwhere));
            if (auto t = p.find("title"); t != p.end()) {
                if (!t->is_string()) return fieldError(name, pwhere, "title is not a string");
                d.title = t->get<std::string>();
            }
            bool supporting = false;
            if (auto s = p.find("is_supporting"); s != p.end()) {
                if (!s->is_boolean()) return fieldError(name, pwhere, "is_supporting is not a boolean");
                supporting = s->get<bool>();
            }
            std::string content = d.content();
            auto [it, inserted] = byContent.emplace(std::move(content), ds.documents.size());
            if (inserted) {
                char key[24];
                std::snprintf(key, sizeof key, "p%05zu", ds.documents.size());
                d.key = key;
                ds.documents.push_back(std::move(d));
            }
            context.insert(it->second);
            if (supporting) gold.insert(it->second);
        }
        item.gold.assign(gold.begin(), gold.end());
        item.context.assign(context.begin(), context.end());
        ds.questions.push_back(std::move(item));
    }
    return ds;
}

// "D3:7" → 3; 0 when not of that shape.
size_t sessionOfDiaId(const std::string& id) {
    if (id.size() < 4 || id[0] != 'D') return 0;
    const size_t colon = id.find(':');
    if (colon == std::string::npos || colon < 2 || colon + 1 >= id.size()) return 0;
    size_t n = 0;
    for (size_t i = 1; i < colon; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(id[i]))) return 0;
        n = n * 10 + static_cast<size_t>(id[i] - '0');
    }
    for (size_t i = colon + 1; i < id.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(id[i]))) return 0;
    return n;
}

Result<EvalDataset> parseLocomo(const json& root, const std::string& name) {
    EvalDataset ds;
    ds.format = DatasetFormat::Locomo;
    std::unordered_map<std::string, size_t> byContent;
    for (size_t ci = 0; ci < root.size(); ++ci) {
        const json& c = root[ci];
        const std::string where = "conversation " + std::to_string(ci);
        if (!c.is_object()) return fieldError(name, where, "is not an object");
        std::string sample = "conv" + std::to_string(ci);
        if (auto s = c.find("sample_id"); s != c.end() && s->is_string()) sample = s->get<std::string>();
        auto conv = c.find("conversation");
        if (conv == c.end() || !conv->is_object()) return fieldError(name, where, "conversation is missing or not an object");
        // Sessions by number (JSON object order is not numeric order).
        std::map<size_t, std::string> sessions;
        for (auto it = conv->begin(); it != conv->end(); ++it) {
            const std::string& k = it.key();
            if (k.rfind("session_", 0) != 0 || k.find("date") != std::string::npos || k.find("summary") != std::string::npos) continue;
            const std::string num = k.substr(8);
            if (num.empty() || !std::all_of(num.begin(), num.end(), [](unsigned char ch) { return std::isdigit(ch); })) continue;
            sessions[static_cast<size_t>(std::stoul(num))] = k;
        }
        std::map<std::string, size_t> turnDoc;           // dia id → document
        std::map<size_t, size_t> sessionDoc;             // session number → document
        std::vector<size_t> convDocs;
        for (const auto& [n, key] : sessions) {
            const json& turns = (*conv)[key];
            const std::string swhere = where + ": conversation." + key;
            if (!turns.is_array()) return fieldError(name, swhere, "is not an array");
            EvalDocument d;
            d.key = sample + "/" + key;
            d.title = sample + " session " + std::to_string(n);
            if (auto dt = conv->find(key + "_date_time"); dt != conv->end() && dt->is_string()) d.title += " (" + dt->get<std::string>() + ")";
            std::vector<std::string> ids;
            for (size_t ti = 0; ti < turns.size(); ++ti) {
                const json& t = turns[ti];
                const std::string twhere = swhere + "[" + std::to_string(ti) + "]";
                if (!t.is_object()) return fieldError(name, twhere, "is not an object");
                MSA_ASSIGN_OR_RETURN(std::string speaker, stringField(t, "speaker", name, twhere));
                MSA_ASSIGN_OR_RETURN(std::string text, stringField(t, "text", name, twhere));
                MSA_ASSIGN_OR_RETURN(std::string dia, stringField(t, "dia_id", name, twhere));
                d.text += speaker + ": " + text;
                if (auto cap = t.find("blip_caption"); cap != t.end() && cap->is_string()) d.text += " [shares a photo: " + cap->get<std::string>() + "]";
                d.text += '\n';
                ids.push_back(std::move(dia));
            }
            auto [it, inserted] = byContent.emplace(d.content(), ds.documents.size());
            if (inserted) ds.documents.push_back(std::move(d));
            for (auto& id : ids) turnDoc[id] = it->second;
            sessionDoc[n] = it->second;
            convDocs.push_back(it->second);
        }
        std::sort(convDocs.begin(), convDocs.end());
        convDocs.erase(std::unique(convDocs.begin(), convDocs.end()), convDocs.end());
        auto qa = c.find("qa");
        if (qa == c.end() || !qa->is_array()) return fieldError(name, where, "qa is missing or not an array");
        for (size_t qi = 0; qi < qa->size(); ++qi) {
            const json& q = (*qa)[qi];
            const std::string qwhere = where + ": question " + std::to_string(qi);
            if (!q.is_object()) return fieldError(name, qwhere, "is not an object");
            EvalItem item;
            item.id = sample + "#" + std::to_string(qi);
            MSA_ASSIGN_OR_RETURN(item.question, stringField(q, "question", name, qwhere));
            if (auto a = q.find("answer"); a != q.end() && !a->is_null()) {
                MSA_ASSIGN_OR_RETURN(std::string s, answerText(*a, name, qwhere, "answer"));
                item.answers.push_back(std::move(s));
            }
            if (auto cat = q.find("category"); cat != q.end()) {
                if (cat->is_number_integer()) item.category = std::to_string(cat->get<long long>());
                else if (cat->is_string()) item.category = cat->get<std::string>();
            }
            auto ev = q.find("evidence");
            if (ev == q.end()) return fieldError(name, qwhere, "missing field evidence");
            if (!ev->is_array()) return fieldError(name, qwhere, "evidence is not an array");
            std::set<size_t> gold;
            for (size_t ei = 0; ei < ev->size(); ++ei) {
                if (!(*ev)[ei].is_string())
                    return fieldError(name, qwhere, "evidence[" + std::to_string(ei) + "] is not a string");
                // A few entries hold several ids ("D8:6; D9:17"): split on separators.
                std::string all = (*ev)[ei].get<std::string>(), cur;
                auto flush = [&] {
                    if (cur.empty()) return;
                    item.goldTurns.push_back(cur);
                    if (auto t = turnDoc.find(cur); t != turnDoc.end()) gold.insert(t->second);
                    else if (auto s = sessionDoc.find(sessionOfDiaId(cur)); sessionOfDiaId(cur) && s != sessionDoc.end())
                        gold.insert(s->second);   // a turn id past the session's end still names its session
                    else ++item.nUnresolvedEvidence;
                    cur.clear();
                };
                for (char ch : all) {
                    if (ch == ';' || ch == ',' || std::isspace(static_cast<unsigned char>(ch))) flush();
                    else cur += ch;
                }
                flush();
            }
            item.gold.assign(gold.begin(), gold.end());
            item.context = convDocs;
            ds.questions.push_back(std::move(item));
        }
    }
    return ds;
}

bool isPunct(unsigned char c) { return c < 0x80 && std::ispunct(c); }
bool isWordByte(unsigned char c) { return c >= 0x80 || std::isalnum(c) || c == '_'; }

std::vector<std::string> normalizedTokens(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(normalizeAnswer(s));
    for (std::string w; in >> w;) out.push_back(std::move(w));
    return out;
}

}  // namespace

const char* datasetFormatName(DatasetFormat f) {
    switch (f) {
        case DatasetFormat::DemoQuestions: return "demo-questions";
        case DatasetFormat::Musique: return "musique";
        case DatasetFormat::Locomo: return "locomo";
    }
    return "?";
}

Result<DatasetFormat> detectDatasetFormat(const json& root) {
    if (!root.is_array()) return unsupported("an evaluation file is a JSON array (MuSiQue, LoCoMo or demo questions)");
    if (root.empty()) return invalidArgument("the evaluation file holds no questions");
    const json& first = root.front();
    if (!first.is_object()) return corrupt("question 0 is not an object");
    if (first.contains("conversation") && first.contains("qa")) return DatasetFormat::Locomo;
    if (first.contains("paragraphs")) return DatasetFormat::Musique;
    if (first.contains("supporting_files")) return DatasetFormat::DemoQuestions;
    return unsupported("unknown evaluation format: the first entry has neither paragraphs (MuSiQue), conversation+qa "
                       "(LoCoMo) nor supporting_files (demo questions)");
}

namespace {
Result<json> readJson(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return notFound("no evaluation file " + quotedName(path.string()));
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(ErrorCode::IoError, "cannot read " + quotedName(path.string()));
    try {
        return json::parse(in);
    } catch (const std::exception& e) {
        return corrupt(quotedName(path.string()) + " is not valid JSON: " + e.what());
    }
}
}  // namespace

Result<DatasetFormat> detectDatasetFile(const std::filesystem::path& path) {
    MSA_ASSIGN_OR_RETURN(json root, readJson(path));
    auto f = detectDatasetFormat(root);
    if (!f) return f.status().withContext(quotedName(path.string()));
    return f;
}

Result<EvalDataset> parseEvalDataset(const json& root, const std::string& name) {
    auto f = detectDatasetFormat(root);
    if (!f) return f.status().withContext(name);
    switch (*f) {
        case DatasetFormat::Musique: return parseMusique(root, name);
        case DatasetFormat::Locomo: return parseLocomo(root, name);
        case DatasetFormat::DemoQuestions: break;
    }
    return unsupported(name + ": demo questions are evaluated over an existing bank and catalog (--bank, --catalog)");
}

Result<EvalDataset> loadEvalDataset(const std::filesystem::path& path) {
    MSA_ASSIGN_OR_RETURN(json root, readJson(path));
    return parseEvalDataset(root, path.filename().string());
}

EvalDataset limitDataset(EvalDataset ds, size_t nQuestions, bool restrictMemory) {
    if (nQuestions && ds.questions.size() > nQuestions) ds.questions.resize(nQuestions);
    if (!restrictMemory) return ds;
    std::set<size_t> keep;
    for (const auto& q : ds.questions) keep.insert(q.context.begin(), q.context.end());
    std::vector<size_t> remap(ds.documents.size(), SIZE_MAX);
    std::vector<EvalDocument> docs;
    for (size_t i : keep) {
        remap[i] = docs.size();
        docs.push_back(std::move(ds.documents[i]));
    }
    ds.documents = std::move(docs);
    for (auto& q : ds.questions) {
        for (auto* v : {&q.gold, &q.context})
            for (auto& i : *v) i = remap[i];
    }
    return ds;
}

std::string normalizeAnswer(const std::string& s) {
    // lower → remove punctuation → remove articles → fix white space (the official order).
    std::string t;
    t.reserve(s.size());
    for (unsigned char c : s)
        if (!isPunct(c)) t += static_cast<char>(c < 0x80 ? std::tolower(c) : c);
    // Articles are whole words (regex \b(a|an|the)\b): replaced by a space.
    std::string u;
    for (size_t i = 0; i < t.size();) {
        if (!isWordByte(static_cast<unsigned char>(t[i]))) {
            u += t[i++];
            continue;
        }
        size_t j = i;
        while (j < t.size() && isWordByte(static_cast<unsigned char>(t[j]))) ++j;
        const std::string_view w(t.data() + i, j - i);
        if (w == "a" || w == "an" || w == "the") u += ' ';
        else u.append(w);
        i = j;
    }
    std::string out;
    std::istringstream in(u);
    for (std::string w; in >> w;) {
        if (!out.empty()) out += ' ';
        out += w;
    }
    return out;
}

double exactMatch(const std::string& prediction, const std::string& gold) {
    return normalizeAnswer(prediction) == normalizeAnswer(gold) ? 1.0 : 0.0;
}

double tokenF1(const std::string& prediction, const std::string& gold) {
    const auto p = normalizedTokens(prediction), g = normalizedTokens(gold);
    std::map<std::string, long> counts;
    for (const auto& w : g) ++counts[w];
    long same = 0;
    for (const auto& w : p)
        if (auto it = counts.find(w); it != counts.end() && it->second > 0) {
            --it->second;
            ++same;
        }
    if (same == 0) return 0.0;
    const double precision = static_cast<double>(same) / static_cast<double>(p.size());
    const double recall = static_cast<double>(same) / static_cast<double>(g.size());
    return 2 * precision * recall / (precision + recall);
}

double bestExactMatch(const std::string& prediction, const std::vector<std::string>& golds) {
    double best = 0;
    for (const auto& g : golds) best = std::max(best, exactMatch(prediction, g));
    return best;
}

double bestF1(const std::string& prediction, const std::vector<std::string>& golds) {
    double best = 0;
    for (const auto& g : golds) best = std::max(best, tokenF1(prediction, g));
    return best;
}

namespace {
// The end of a citation "[12]" / "[3, 4]" starting at i ('['), or npos.
size_t citationEnd(const std::string& s, size_t i, std::vector<long long>* numbers) {
    size_t j = i + 1;
    bool digits = false;
    long long cur = 0;
    std::vector<long long> found;
    for (; j < s.size(); ++j) {
        const char c = s[j];
        if (std::isdigit(static_cast<unsigned char>(c))) {
            if (cur > 1'000'000'000'000LL) return std::string::npos;
            cur = cur * 10 + (c - '0');
            digits = true;
        } else if (c == ',' || c == ' ') {
            if (digits) found.push_back(cur);
            digits = false;
            cur = 0;
        } else if (c == ']') {
            if (digits) found.push_back(cur);
            if (found.empty()) return std::string::npos;
            if (numbers) numbers->insert(numbers->end(), found.begin(), found.end());
            return j + 1;
        } else {
            return std::string::npos;
        }
    }
    return std::string::npos;
}
}  // namespace

std::string stripCitations(const std::string& answer) {
    std::string out;
    for (size_t i = 0; i < answer.size();) {
        if (answer[i] == '[') {
            const size_t e = citationEnd(answer, i, nullptr);
            if (e != std::string::npos) {
                out += ' ';
                i = e;
                continue;
            }
        }
        out += answer[i++];
    }
    return out;
}

std::vector<long long> citedNumbers(const std::string& answer) {
    std::vector<long long> all;
    for (size_t i = 0; i < answer.size(); ++i)
        if (answer[i] == '[') {
            const size_t e = citationEnd(answer, i, &all);
            if (e != std::string::npos) i = e - 1;
        }
    std::vector<long long> out;
    for (long long n : all)
        if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    return out;
}

double recallAt(const std::vector<size_t>& ranking, const std::vector<size_t>& gold, size_t k) {
    if (gold.empty()) return 0.0;
    std::set<size_t> seen, wanted(gold.begin(), gold.end());
    size_t hits = 0;
    for (size_t d : ranking) {
        if (seen.size() >= k) break;
        if (!seen.insert(d).second) continue;
        hits += wanted.count(d);
    }
    return static_cast<double>(hits) / static_cast<double>(wanted.size());
}

std::string ftsQueryFor(const std::string& question) {
    static const std::set<std::string> stop = {
        "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "by", "is", "it", "as", "be", "do", "if", "so",
        "was", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "did", "does", "for", "from", "that",
        "this", "with", "her", "his", "are", "were", "she", "he", "they", "their", "has", "have", "had", "been", "its",
        "into", "out", "there", "than", "then", "any", "some", "would", "could", "should", "can", "will", "not", "no"};
    std::string q, word;
    std::set<std::string> used;
    auto flush = [&] {
        if (word.size() >= 2 && !stop.count(word) && used.insert(word).second) {
            if (!q.empty()) q += " OR ";
            q += '"';
            q += word;
            q += '"';
        }
        word.clear();
    };
    for (unsigned char c : question) {
        if (std::isalnum(c) || c >= 0x80) word += static_cast<char>(c >= 0x80 ? c : std::tolower(c));
        else flush();
    }
    flush();
    return q;
}

}  // namespace msa::jobs

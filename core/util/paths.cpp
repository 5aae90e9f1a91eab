#include "core/util/paths.h"

#include "core/util/build_info.h"

#include <cstdlib>
#include <system_error>

namespace fs = std::filesystem;

namespace msa {
namespace {
const char* env(const char* name) {
    const char* v = std::getenv(name);
    return (v && *v) ? v : nullptr;
}
bool isFile(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}
bool isDir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}
}  // namespace

fs::path userCacheDir() {
    if (const char* c = env("MSA_CACHE_DIR")) return fs::path(c);
    if (const char* x = env("XDG_CACHE_HOME")) return fs::path(x) / "msa-workbench";
    if (const char* h = env("HOME")) return fs::path(h) / ".cache" / "msa-workbench";
    return fs::temp_directory_path() / "msa-workbench-cache";
}

std::vector<fs::path> demoModelCandidates() {
    std::vector<fs::path> out;
    // An explicit choice is the only candidate, so a wrong path is reported, never silently replaced.
    if (const char* m = env("MSA_DEMO_MODEL")) return {fs::path(m)};
    if (const char* c = env("MSA_CACHE_DIR")) out.push_back(fs::path(c) / "models" / kDemoModelFile);
    if (!sourceCacheDir().empty()) out.push_back(fs::path(sourceCacheDir()) / "models" / kDemoModelFile);
    out.push_back(userCacheDir() / "models" / kDemoModelFile);
    return out;
}

fs::path findDemoModel() {
    for (const auto& p : demoModelCandidates())
        if (isFile(p)) return p;
    return {};
}

std::vector<fs::path> demoArchiveCandidates() {
    std::vector<fs::path> out;
    if (const char* a = env("MSA_DEMO_ARCHIVE")) return {fs::path(a)};
    if (!sourceDir().empty()) out.push_back(fs::path(sourceDir()) / "resources" / "demo" / "archive");
    // Beside the running executable (<prefix>/bin/../share/msa-workbench): a package unpacked or
    // installed under any prefix finds its own copy, whatever prefix it was configured with.
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec && exe.has_parent_path())
        out.push_back(exe.parent_path().parent_path() / "share" / "msa-workbench" / "demo" / "archive");
    out.push_back(fs::path(installDataDir()) / "demo" / "archive");
    return out;
}

fs::path findDemoArchive() {
    for (const auto& p : demoArchiveCandidates())
        if (isDir(p)) return p;
    return {};
}

}  // namespace msa

namespace msa {
fs::path demoQuestionsFile(const fs::path& archive) {
    if (archive.empty()) return {};
    return archive.parent_path() / "questions.json";
}
}  // namespace msa

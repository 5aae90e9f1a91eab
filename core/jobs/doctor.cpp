#include "core/engine/device_select.h"
#include "core/jobs/doctor.h"

#include "core/util/build_info.h"
#include "core/util/format.h"
#include "core/util/paths.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

namespace fs = std::filesystem;

namespace msa::jobs {
namespace {

std::string humanBytes(uint64_t n) { return formatBytes(static_cast<double>(n), ByteUnits::Binary); }

DemoModelFacts inspectDemoModel() {
    DemoModelFacts f;
    f.searched = demoModelCandidates();
    const fs::path found = findDemoModel();
    if (found.empty()) {
        f.problem = "not found; run packaging/setup.sh to fetch it (or set MSA_DEMO_MODEL)";
        return f;
    }
    f.path = found;
    f.present = true;
    std::error_code ec;
    f.sizeBytes = fs::file_size(found, ec);
    const GgufHeaderCheck h = checkGgufHeader(found);
    f.looksValid = h.ok;
    f.ggufVersion = h.version;
    if (!h.ok) f.problem = h.problem;
    return f;
}

DemoArchiveFacts inspectDemoArchive() {
    DemoArchiveFacts f;
    f.path = findDemoArchive();
    if (f.path.empty()) return f;
    f.present = true;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(f.path, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->is_regular_file(ec)) {
            ++f.nFiles;
            f.nBytes += it->file_size(ec);
        }
    }
    return f;
}

}  // namespace

GgufHeaderCheck checkGgufHeader(const fs::path& path) {
    GgufHeaderCheck r;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        r.problem = "cannot open '" + path.string() + "'";
        return r;
    }
    unsigned char head[8] = {};
    in.read(reinterpret_cast<char*>(head), sizeof head);
    if (in.gcount() < static_cast<std::streamsize>(sizeof head)) {
        r.problem = "'" + path.string() + "' is shorter than a GGUF header (truncated download?)";
        return r;
    }
    if (std::memcmp(head, "GGUF", 4) != 0) {
        r.problem = "'" + path.string() + "' does not start with the GGUF magic";
        return r;
    }
    r.version = static_cast<uint32_t>(head[4]) | static_cast<uint32_t>(head[5]) << 8 |
                static_cast<uint32_t>(head[6]) << 16 | static_cast<uint32_t>(head[7]) << 24;
    if (r.version < 2 || r.version > 3) {
        r.problem = "'" + path.string() + "' has GGUF version " + std::to_string(r.version) + " (2 and 3 are supported)";
        return r;
    }
    r.ok = true;
    return r;
}

bool DoctorReport::healthy() const {
    bool cpu = false;
    for (const auto& b : backends)
        if (b.name == "cpu" && b.usable) cpu = true;
    return cpu && demoModel.present && demoModel.looksValid;
}

DoctorReport runDoctor(const engine::BackendRegistry& registry) {
    DoctorReport r;
    r.version = std::string(versionString());
    r.buildType = std::string(buildType());
    r.compiler = std::string(compilerId());
    r.backends = registry.backends();
    r.preferredBackend = registry.preferred().name;
    r.deviceSpecs = engine::deviceSpecs(registry);
    if (Result<engine::BackendChoice> c = engine::chooseBackend(registry, "auto")) {
        r.autoDevice = c->describe();
        r.autoDeviceNote = c->note;
    }
    r.demoModel = inspectDemoModel();
    r.demoArchive = inspectDemoArchive();
    return r;
}

nlohmann::json toJson(const DoctorReport& r) {
    using nlohmann::json;
    json backends = json::array();
    for (const auto& b : r.backends) {
        json devices = json::array();
        for (const auto& d : b.devices)
            devices.push_back({{"id", d.id}, {"name", d.name}, {"memory_bytes", d.memoryBytes},
                               {"compute_units", d.computeUnits}, {"detail", d.detail}});
        json facts = json::object();
        for (const auto& [k, v] : b.facts) facts[k] = v;
        backends.push_back({{"name", b.name}, {"built", b.built}, {"usable", b.usable},
                            {"reason", b.reason}, {"devices", devices}, {"facts", facts}});
    }
    json searched = json::array();
    for (const auto& p : r.demoModel.searched) searched.push_back(p.string());
    return json{
        {"version", r.version},
        {"build_type", r.buildType},
        {"compiler", r.compiler},
        {"backends", backends},
        {"preferred_backend", r.preferredBackend},
        {"device", {{"auto", r.autoDevice}, {"note", r.autoDeviceNote}, {"choices", r.deviceSpecs}}},
        {"demo_model",
         {{"present", r.demoModel.present}, {"valid", r.demoModel.looksValid},
          {"path", r.demoModel.path.string()}, {"size_bytes", r.demoModel.sizeBytes},
          {"gguf_version", r.demoModel.ggufVersion}, {"problem", r.demoModel.problem},
          {"searched", searched}}},
        {"demo_archive",
         {{"present", r.demoArchive.present}, {"path", r.demoArchive.path.string()},
          {"files", r.demoArchive.nFiles}, {"bytes", r.demoArchive.nBytes}}},
        {"healthy", r.healthy()},
    };
}

std::string toText(const DoctorReport& r) {
    std::ostringstream o;
    o << "msa " << r.version << " (" << r.buildType << ", " << r.compiler << ")\n";
    o << "backends:\n";
    for (const auto& b : r.backends) {
        o << "  " << b.name << ": " << (b.usable ? "usable" : (b.built ? "built, not usable" : "not built"));
        if (!b.reason.empty()) o << " (" << b.reason << ")";
        o << "\n";
        for (const auto& d : b.devices)
            o << "    " << d.id << ": " << d.name << ", " << humanBytes(d.memoryBytes) << ", " << d.detail << "\n";
        for (const auto& [k, v] : b.facts) o << "    " << k << ": " << v << "\n";
    }
    o << "preferred backend: " << r.preferredBackend << "\n";
    o << "device (--device auto): " << r.autoDevice;
    if (!r.autoDeviceNote.empty()) o << " — " << r.autoDeviceNote;
    o << "\n--device choices:";
    for (const std::string& s : r.deviceSpecs) o << " " << s;
    o << "\n";
    o << "demo model: ";
    if (r.demoModel.present) {
        o << r.demoModel.path.string() << " (" << humanBytes(r.demoModel.sizeBytes);
        if (r.demoModel.looksValid) o << ", GGUF v" << r.demoModel.ggufVersion << ")";
        else o << ", INVALID: " << r.demoModel.problem << ")";
    } else {
        o << "absent: " << r.demoModel.problem << "\n  searched:";
        for (const auto& p : r.demoModel.searched) o << "\n    " << p.string();
    }
    o << "\n";
    o << "demo archive: ";
    if (r.demoArchive.present)
        o << r.demoArchive.path.string() << " (" << r.demoArchive.nFiles << " files, " << humanBytes(r.demoArchive.nBytes) << ")";
    else
        o << "absent";
    o << "\n";
    return o.str();
}

std::string backendSummary(const engine::BackendRegistry& registry) {
    std::string s;
    for (const auto& b : registry.backends()) {
        if (!s.empty()) s += "  |  ";
        if (b.name == "cpu") {
            s += "CPU";
            if (!b.devices.empty()) s += " · " + std::to_string(b.devices.front().computeUnits) + " threads";
            continue;
        }
        std::string upper = b.name;
        for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        s += upper + ": ";
        if (b.usable && !b.devices.empty()) s += b.devices.front().name;
        else s += b.reason.empty() ? std::string("not usable") : b.reason;
    }
    return s;
}

}  // namespace msa::jobs

#include "core/jobs/bench_import.h"

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/util/checksum.h"

#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace msa::jobs {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double peakRssMiB() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;   // ru_maxrss is in KiB on Linux
}

const char* kWords[] = {"harbour", "kelp", "survey", "boat", "letter", "meeting", "spruce", "varnish", "tide",
                        "station", "garden", "recipe", "invoice", "train", "museum", "river", "lantern", "island",
                        "concert", "notebook", "weather", "market", "bridge", "chapter", "friend", "journey"};
const char* kNames[] = {"Ada Moreno", "Ben Okafor", "Chloe Lind", "Dev Patel", "Eva Novak", "Farid Haddad"};

std::string sentence(std::mt19937& rng, int nWords) {
    std::uniform_int_distribution<size_t> w(0, std::size(kWords) - 1);
    std::string s;
    for (int i = 0; i < nWords; ++i) {
        if (i) s += ' ';
        s += kWords[w(rng)];
    }
    s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    return s + ". ";
}

std::string paragraph(std::mt19937& rng, int nSentences) {
    std::string p;
    for (int i = 0; i < nSentences; ++i) p += sentence(rng, 6 + static_cast<int>(rng() % 10));
    return p;
}

// Writes file i of a mixed archive; returns its size. Six kinds in rotation, 0.5-4 KB each.
Result<uint64_t> writeFile(const fs::path& dir, size_t i, std::mt19937& rng) {
    const size_t kind = i % 6;
    const fs::path sub = dir / ("d" + std::to_string(i / 500));
    std::error_code ec;
    fs::create_directories(sub, ec);
    std::ostringstream o;
    fs::path name;
    const char* who = kNames[i % std::size(kNames)];
    const int day = 1 + static_cast<int>(i % 28), month = 1 + static_cast<int>(i % 12);
    char date[32];
    std::snprintf(date, sizeof date, "2024-%02d-%02d", month, day);
    switch (kind) {
    case 0: name = "note" + std::to_string(i) + ".txt"; o << paragraph(rng, 6) << "\n\n" << paragraph(rng, 4); break;
    case 1:
        name = "page" + std::to_string(i) + ".md";
        o << "---\ntitle: " << sentence(rng, 3) << "\ndate: " << date << "\ntags: [bench]\n---\n# " << sentence(rng, 4)
          << "\n\n" << paragraph(rng, 5) << "\n\n## " << sentence(rng, 3) << "\n\n" << paragraph(rng, 4);
        break;
    case 2:
        name = "mail" + std::to_string(i) + ".eml";
        o << "From: " << who << " <a" << i << "@example.org>\r\nTo: Nell <nell@example.org>\r\nSubject: "
          << sentence(rng, 4) << "\r\nDate: Mon, " << day << " Jan 2024 10:00:00 +0000\r\nMessage-ID: <m" << i
          << "@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" << paragraph(rng, 5) << "\r\n";
        break;
    case 3:
        name = "web" + std::to_string(i) + ".html";
        o << "<html><head><title>" << sentence(rng, 4) << "</title><style>p{color:red}</style>"
          << "<script>var x = 1;</script></head><body><h1>" << sentence(rng, 3) << "</h1><p>" << paragraph(rng, 5)
          << "</p><p>" << paragraph(rng, 3) << "</p></body></html>\n";
        break;
    case 4:
        name = "tool" + std::to_string(i) + ".py";
        o << "# " << sentence(rng, 8) << "\n\ndef f" << i << "(x):\n    \"\"\"" << sentence(rng, 6)
          << "\"\"\"\n    return x * " << i << "\n";
        break;
    default:
        name = "WhatsApp Chat " + std::to_string(i) + ".txt";
        for (int m = 0; m < 12; ++m)
            o << day << "/" << month << "/2024, 1" << (m % 10) << ":" << (10 + m) << " - " << kNames[(i + m) % std::size(kNames)]
              << ": " << sentence(rng, 5 + m % 7) << "\n";
        break;
    }
    const std::string text = o.str();
    std::ofstream out(sub / name, std::ios::binary);
    out << text;
    if (!out) return ioError("cannot write benchmark file " + quotedName((sub / name).string()));
    return static_cast<uint64_t>(text.size());
}

}  // namespace

Result<std::vector<ImportBenchRun>> runImportBench(const ImportBenchOptions& o) {
    std::vector<ImportBenchRun> runs;
    fs::path root = o.workDir.empty() ? fs::temp_directory_path() / ("msa-bench-import-" + std::to_string(::getpid())) : o.workDir;
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) return statusFromErrno(ec.value(), "creating " + quotedName(root.string()));
    for (size_t n : o.sizes) {
        ImportBenchRun run;
        run.nFiles = n;
        const fs::path files = root / ("files-" + std::to_string(n));
        fs::remove_all(files, ec);
        std::mt19937 rng(static_cast<uint32_t>(n));
        for (size_t i = 0; i < n; ++i) {
            MSA_ASSIGN_OR_RETURN(uint64_t bytes, writeFile(files, i, rng));
            run.nBytes += bytes;
        }
        ::sync();   // the import should not pay for writing back our own files

        // Peer: read and hash every file (the I/O floor).
        auto t0 = Clock::now();
        for (const auto& e : fs::recursive_directory_iterator(files))
            if (e.is_regular_file()) MSA_RETURN_IF_ERROR(hashFile(e.path()).status());
        run.hashOnlySeconds = since(t0);

        const fs::path db = root / ("catalog-" + std::to_string(n) + ".sqlite");
        for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix, ec);
        MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(db));
        catalog::ImportRequest req;
        req.collection = "bench";
        req.paths = {files};
        req.nThreads = o.nThreads;
        t0 = Clock::now();
        MSA_ASSIGN_OR_RETURN(catalog::ImportReport rep, catalog::importPaths(cat, req, {}, nullptr));
        run.importSeconds = since(t0);
        run.nDocuments = rep.nDocuments;
        run.nFailed = rep.nFailed;
        t0 = Clock::now();
        MSA_ASSIGN_OR_RETURN(catalog::ImportReport again, catalog::importPaths(cat, req, {}, nullptr));
        run.reimportSeconds = since(t0);
        (void)again;
        run.peakRssMiB = peakRssMiB();
        runs.push_back(run);
    }
    if (!o.keep) fs::remove_all(root, ec);
    return runs;
}

nlohmann::json toJson(const std::vector<ImportBenchRun>& runs) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : runs)
        a.push_back({{"files", r.nFiles}, {"bytes", r.nBytes}, {"documents", r.nDocuments}, {"failed", r.nFailed},
                     {"import_seconds", r.importSeconds}, {"files_per_s", r.filesPerSecond()},
                     {"mb_per_s", r.megabytesPerSecond()}, {"reimport_unchanged_seconds", r.reimportSeconds},
                     {"peer_read_and_hash_seconds", r.hashOnlySeconds}, {"peak_rss_mib", r.peakRssMiB}});
    return a;
}

std::string toText(const std::vector<ImportBenchRun>& runs) {
    std::ostringstream o;
    char line[256];
    std::snprintf(line, sizeof line, "%8s %9s %10s %9s %8s %11s %13s %10s\n", "files", "MB", "documents", "files/s",
                  "MB/s", "re-import s", "read+hash s", "peak RSS");
    o << line;
    for (const auto& r : runs) {
        std::snprintf(line, sizeof line, "%8zu %9.1f %10llu %9.0f %8.2f %11.2f %13.2f %7.0f MiB\n", r.nFiles,
                      static_cast<double>(r.nBytes) / 1e6, static_cast<unsigned long long>(r.nDocuments),
                      r.filesPerSecond(), r.megabytesPerSecond(), r.reimportSeconds, r.hashOnlySeconds, r.peakRssMiB);
        o << line;
    }
    o << "peer: read+hash is the same files read and XXH3-hashed by a plain loop (the I/O floor)\n";
    return o.str();
}

}  // namespace msa::jobs

// chat_test_util.h: shared set-up of the chat tests: a few text notes imported into a fresh catalog
// and a memory bank of them built with a given model (the real catalog import and jobs::buildMemory).
#pragma once

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/memory_jobs.h"

#include <QDir>
#include <QString>
#include <QTemporaryDir>

#include <fstream>
#include <set>
#include <string>

namespace msa::testing {

struct SmallBank {
    std::string catalog, bank;
    std::set<int64_t> memoryIds;   // the bank's memory documents (catalog ids)
    std::string error;
};

inline SmallBank buildSmallBank(const QTemporaryDir& dir, const std::string& model) {
    SmallBank out;
    QDir(dir.path()).mkpath("files");
    const char* notes[] = {
        "Anna wrote: the cello top is cut from old spruce that Jon brought from the Jura in 2019.",
        "Boat log: the boat Wenna was refitted in March at Pemberley harbour by Marguerite.",
        "Garden notes: kelp forests grow fast in cold water; the tide tables shift by an hour in summer.",
        "Letter from Jon: the lifeboat house was built from a wrecked barque called Hope."};
    for (int i = 0; i < 4; ++i) std::ofstream(dir.filePath(QString("files/note%1.txt").arg(i)).toStdString()) << notes[i] << "\n";
    out.catalog = dir.filePath("catalog.sqlite").toStdString();
    out.bank = dir.filePath("bank").toStdString();
    auto cat = catalog::Catalog::open(out.catalog);
    if (!cat) return out.error = cat.status().toString(), out;
    catalog::ImportRequest req;
    req.collection = "notes";
    req.paths = {dir.filePath("files").toStdString()};
    if (auto r = catalog::importPaths(*cat, req, {}, nullptr); !r) return out.error = r.status().toString(), out;
    jobs::BuildOptions b;
    b.catalog = out.catalog;
    b.collection = "notes";
    b.model = model;
    b.bank = out.bank;
    b.nThreads = 2;
    auto built = jobs::buildMemory(b);
    if (!built) return out.error = built.status().toString(), out;
    auto docs = cat->memoryDocuments("notes");
    if (!docs) return out.error = docs.status().toString(), out;
    for (const auto& d : *docs) out.memoryIds.insert(d.id);
    return out;
}

}  // namespace msa::testing

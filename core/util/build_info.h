// build_info.h: facts about this build (version, build type, compiler, where the source tree's
// caches are), filled in by CMake. Plain functions so that only build_info.cpp recompiles when the
// values change. Thread-safe (constants).
#pragma once

#include <string_view>

namespace msa {

std::string_view versionString();     // "0.1.0"
std::string_view buildType();         // "Release", "Debug", ...
std::string_view compilerId();        // "GNU 12.2.0"
// The source tree's git-ignored cache folder (demo model), valid when running from a build tree.
std::string_view sourceCacheDir();
std::string_view sourceDir();
// Where an installed package keeps shared data (demo archive), e.g. /usr/share/msa-workbench.
std::string_view installDataDir();

}  // namespace msa

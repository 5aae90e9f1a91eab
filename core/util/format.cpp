#include "core/util/format.h"

#include <cstdio>

namespace msa {

std::string formatBytes(double bytes, ByteUnits units) {
    static const char* decimal[] = {"B", "KB", "MB", "GB", "TB"};
    static const char* binary[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    const double step = units == ByteUnits::Decimal ? 1000.0 : 1024.0;
    const char** names = units == ByteUnits::Decimal ? decimal : binary;
    int u = 0;
    while (bytes >= step && u < 4) {
        bytes /= step;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, names[u]);
    return buf;
}

std::string formatDuration(double seconds) {
    if (seconds < 0) return "?";
    const long t = static_cast<long>(seconds + 0.5);
    char buf[32];
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

}  // namespace msa

// format.h: human-readable sizes and durations for progress lines, reports and `msa doctor`.
// Pure functions; thread-safe.
#pragma once

#include <string>

namespace msa {

enum class ByteUnits { Decimal, Binary };   // kB/MB (powers of 1000) or KiB/MiB (powers of 1024)

// "0 B", "512 B", "1.5 MB" / "93.8 MiB"; one decimal above bytes.
std::string formatBytes(double bytes, ByteUnits units = ByteUnits::Decimal);
// "0:07", "12:05", "1:02:03"; "?" for a negative (unknown) duration.
std::string formatDuration(double seconds);

}  // namespace msa

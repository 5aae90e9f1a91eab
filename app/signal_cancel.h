// signal_cancel.h: Ctrl-C / SIGTERM → CancelToken for the long `msa` commands (import, build,
// generate, ask). While a CancelOnSignal lives, the first SIGINT or SIGTERM cancels the token (an
// atomic store: async-signal-safe) and restores the default action, so a second signal kills as
// usual. The destructor restores the default handlers. One instance at a time; main thread only.
#pragma once

#include "core/util/progress.h"

namespace msa::app {

class CancelOnSignal {
public:
    explicit CancelOnSignal(CancelToken& token);
    ~CancelOnSignal();
    CancelOnSignal(const CancelOnSignal&) = delete;
    CancelOnSignal& operator=(const CancelOnSignal&) = delete;
};

}  // namespace msa::app

#include "app/signal_cancel.h"

#include <csignal>

namespace msa::app {
namespace {
CancelToken* g_token = nullptr;
extern "C" void cancelOnSignalHandler(int sig) {
    if (g_token) g_token->cancel();
    std::signal(sig, SIG_DFL);
}
}  // namespace

CancelOnSignal::CancelOnSignal(CancelToken& token) {
    g_token = &token;
    std::signal(SIGINT, cancelOnSignalHandler);
    std::signal(SIGTERM, cancelOnSignalHandler);
}

CancelOnSignal::~CancelOnSignal() {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    g_token = nullptr;
}

}  // namespace msa::app

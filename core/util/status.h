// status.h: expected failures as values (DESIGN.md §4 "Errors", CONVENTIONS.md #7).
//
// Every operation that can fail for a reason outside the program (a missing file, a corrupt model,
// a full disk, a cancelled request, a device fault) returns a Status or a Result<T>. Bugs are
// assertions, not Statuses. No exception crosses a module or thread boundary: code that calls a
// throwing library catches at the boundary and converts with Status::fromException().
//
// Ownership/threads: plain value types; copy them freely across threads.
//
// Usage:
//     msa::Result<FileMapping> m = FileMapping::open(path);
//     if (!m) return m.status().withContext("loading model");
//     use(m->data());
#pragma once

#include <cassert>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace msa {

// Specific failure codes. The numeric values are stable (they appear in --json output) and each
// maps to one process exit code through exitCodeFor(); append new codes, never renumber.
enum class ErrorCode : int {
    Ok = 0,
    InvalidArgument = 1,    // the caller passed something malformed (bad option value, bad range)
    NotFound = 2,           // a file, tensor, document, collection or device that does not exist
    PermissionDenied = 3,   // the OS refused access
    IoError = 4,            // read/write/mmap failed for another reason
    DiskFull = 5,           // ENOSPC / EDQUOT while writing; earlier results stay intact
    Corrupt = 6,            // a file's bytes contradict its own format (bad magic, offset past end)
    Unsupported = 7,        // valid input we do not handle (unknown dtype, architecture, format version)
    Mismatch = 8,           // two valid things that do not belong together (bank vs model fingerprint)
    OutOfMemory = 9,        // an allocation on the host or a device failed
    Cancelled = 10,         // the user's cancel token fired; partial work was rolled back or kept consistent
    DeviceError = 11,       // CUDA / cuBLAS / NCCL reported an error or no usable device exists
    Busy = 12,              // a resource is locked by another process or request
    AlreadyExists = 13,     // refusing to overwrite
    Unimplemented = 14,     // a capability this build does not have yet
    Internal = 15,          // a library reported something we did not expect; carries its message
};

// Short stable name of a code ("not_found"), used in logs and --json output.
std::string_view errorCodeName(ErrorCode code);

// Process exit code for a failure of this kind (0 for Ok). Documented in README.md "Exit codes".
int exitCodeFor(ErrorCode code);

class [[nodiscard]] Status {
public:
    Status() = default;   // Ok
    Status(ErrorCode code, std::string message) : m_code(code), m_message(std::move(message)) {}

    static Status ok() { return {}; }
    // Converts a caught exception at a module boundary into a value (Internal unless it is bad_alloc).
    static Status fromException(const std::exception& e, std::string_view where);

    bool isOk() const { return m_code == ErrorCode::Ok; }
    explicit operator bool() const { return isOk(); }
    ErrorCode code() const { return m_code; }
    const std::string& message() const { return m_message; }

    // "context: message", so that errors read outermost-first: "loading model x.gguf: tensor 'blk.0' ..."
    Status withContext(std::string_view context) const;
    // One line for humans: "not_found: loading model: no such file 'x'".
    std::string toString() const;

private:
    ErrorCode m_code = ErrorCode::Ok;
    std::string m_message;
};

// Convenience constructors that read like the failure.
inline Status invalidArgument(std::string m) { return {ErrorCode::InvalidArgument, std::move(m)}; }
inline Status notFound(std::string m) { return {ErrorCode::NotFound, std::move(m)}; }
inline Status ioError(std::string m) { return {ErrorCode::IoError, std::move(m)}; }
inline Status corrupt(std::string m) { return {ErrorCode::Corrupt, std::move(m)}; }
inline Status unsupported(std::string m) { return {ErrorCode::Unsupported, std::move(m)}; }
inline Status cancelled(std::string m = "cancelled by the user") { return {ErrorCode::Cancelled, std::move(m)}; }
inline Status unimplemented(std::string m) { return {ErrorCode::Unimplemented, std::move(m)}; }

// 'text' in single quotes, for messages that name a file, tensor or document. (Also sidesteps GCC 12's
// false -Wrestrict on "'" + std::string.)
inline std::string quotedName(std::string_view text) {
    std::string r;
    r.reserve(text.size() + 2);
    r += '\'';
    r += text;
    r += '\'';
    return r;
}

// Maps an errno value from a failed system call to a Status naming what was being done.
Status statusFromErrno(int err, std::string_view what);

// A value or the Status saying why there is none. Never holds an Ok status without a value.
template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_state(std::move(value)) {}                        // NOLINT: implicit by design
    Result(Status status) : m_state(std::move(status)) {                   // NOLINT: implicit by design
        assert(!std::get<Status>(m_state).isOk() && "Result<T> needs a value or a failure");
    }

    bool ok() const { return std::holds_alternative<T>(m_state); }
    explicit operator bool() const { return ok(); }

    // The failure; Ok when a value is held.
    Status status() const { return ok() ? Status{} : std::get<Status>(m_state); }

    T& value() & { assert(ok()); return std::get<T>(m_state); }
    const T& value() const& { assert(ok()); return std::get<T>(m_state); }
    T&& value() && { assert(ok()); return std::get<T>(std::move(m_state)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    T valueOr(T fallback) const& { return ok() ? std::get<T>(m_state) : std::move(fallback); }

private:
    std::variant<T, Status> m_state;
};

// Early-return helpers for functions returning Status or Result<U>.
#define MSA_RETURN_IF_ERROR(expr)                                \
    do {                                                         \
        ::msa::Status msa_status_ = (expr);                      \
        if (!msa_status_.isOk()) return msa_status_;             \
    } while (0)

#define MSA_CONCAT_INNER_(a, b) a##b
#define MSA_CONCAT_(a, b) MSA_CONCAT_INNER_(a, b)
#define MSA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)               \
    auto tmp = (expr);                                           \
    if (!tmp.ok()) return tmp.status();                          \
    lhs = std::move(tmp).value()
#define MSA_ASSIGN_OR_RETURN(lhs, expr) \
    MSA_ASSIGN_OR_RETURN_IMPL_(MSA_CONCAT_(msa_result_, __LINE__), lhs, expr)

}  // namespace msa

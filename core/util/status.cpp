#include "core/util/status.h"

#include <cerrno>
#include <cstring>
#include <new>

namespace msa {

std::string_view errorCodeName(ErrorCode code) {
    switch (code) {
    case ErrorCode::Ok: return "ok";
    case ErrorCode::InvalidArgument: return "invalid_argument";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::PermissionDenied: return "permission_denied";
    case ErrorCode::IoError: return "io_error";
    case ErrorCode::DiskFull: return "disk_full";
    case ErrorCode::Corrupt: return "corrupt";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::Mismatch: return "mismatch";
    case ErrorCode::OutOfMemory: return "out_of_memory";
    case ErrorCode::Cancelled: return "cancelled";
    case ErrorCode::DeviceError: return "device_error";
    case ErrorCode::Busy: return "busy";
    case ErrorCode::AlreadyExists: return "already_exists";
    case ErrorCode::Unimplemented: return "unimplemented";
    case ErrorCode::Internal: return "internal";
    }
    return "unknown";
}

int exitCodeFor(ErrorCode code) {
    // 1 is left for "generic failure" and 2 for command-line usage errors (CLI11's parse errors),
    // so scripts can tell "you called me wrong" from "the input is bad".
    switch (code) {
    case ErrorCode::Ok: return 0;
    case ErrorCode::InvalidArgument: return 2;
    case ErrorCode::NotFound: return 3;
    case ErrorCode::PermissionDenied:
    case ErrorCode::IoError:
    case ErrorCode::DiskFull: return 4;
    case ErrorCode::Corrupt: return 5;
    case ErrorCode::Unsupported:
    case ErrorCode::Unimplemented: return 6;
    case ErrorCode::Mismatch: return 7;
    case ErrorCode::Cancelled: return 8;
    case ErrorCode::DeviceError: return 9;
    case ErrorCode::OutOfMemory:
    case ErrorCode::Busy:
    case ErrorCode::AlreadyExists:
    case ErrorCode::Internal: return 1;
    }
    return 1;
}

Status Status::fromException(const std::exception& e, std::string_view where) {
    if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr)
        return {ErrorCode::OutOfMemory, std::string(where) + ": out of memory"};
    return {ErrorCode::Internal, std::string(where) + ": " + e.what()};
}

Status Status::withContext(std::string_view context) const {
    if (isOk()) return *this;
    std::string m(context);
    m += ": ";
    m += m_message;
    return {m_code, std::move(m)};
}

std::string Status::toString() const {
    if (isOk()) return "ok";
    std::string s(errorCodeName(m_code));
    s += ": ";
    s += m_message;
    return s;
}

Status statusFromErrno(int err, std::string_view what) {
    std::string m(what);
    m += ": ";
    m += std::strerror(err);
    switch (err) {
    case ENOENT:
    case ENOTDIR: return {ErrorCode::NotFound, std::move(m)};
    case EACCES:
    case EPERM:
    case EROFS: return {ErrorCode::PermissionDenied, std::move(m)};
    case ENOSPC:
    case EDQUOT: return {ErrorCode::DiskFull, std::move(m)};
    case ENOMEM: return {ErrorCode::OutOfMemory, std::move(m)};
    case EEXIST: return {ErrorCode::AlreadyExists, std::move(m)};
    case EISDIR:
    case EINVAL: return {ErrorCode::InvalidArgument, std::move(m)};
    case EBUSY:
    case EWOULDBLOCK: return {ErrorCode::Busy, std::move(m)};
    default: return {ErrorCode::IoError, std::move(m)};
    }
}

}  // namespace msa

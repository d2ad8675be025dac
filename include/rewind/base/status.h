// Status and Result<T>: errors on I/O paths are values, not exceptions.
//
// A message says what failed and where ("segment 00000000000000000001.seg offset 4096
// seq 17: payload checksum mismatch"); callers add what to do at the boundary where
// they know it (the CLI, the plugin).
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace rwd {

class [[nodiscard]] Status {
 public:
  enum class Code { kOk, kIoError, kNoSpace, kCorruption, kInvalidArgument, kNotFound, kBusy };

  Status() = default;
  static Status ok() { return Status(); }
  // An operating-system error; `err` is the errno value that caused it.
  static Status io_error(std::string msg, int err);
  // A failure a remote peer or the network reported (an HTTP 503, a timeout): an I/O
  // error (EIO) whose message already says what happened.
  static Status remote(std::string msg) { return Status(Code::kIoError, std::move(msg), EIO); }
  static Status corruption(std::string msg) {
    return Status(Code::kCorruption, std::move(msg), EIO);
  }
  static Status invalid(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg), EINVAL);
  }
  static Status not_found(std::string msg) {
    return Status(Code::kNotFound, std::move(msg), ENOENT);
  }
  static Status busy(std::string msg) { return Status(Code::kBusy, std::move(msg), EBUSY); }

  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  // The errno an NBD client should see for this failure.
  int errno_value() const { return err_; }
  const std::string& message() const { return msg_; }

  // Returns a copy whose message is prefixed with `context: `.
  Status with_context(const std::string& context) const;

 private:
  Status(Code code, std::string msg, int err) : code_(code), msg_(std::move(msg)), err_(err) {}
  Code code_ = Code::kOk;
  std::string msg_;
  int err_ = 0;
};

// A value or the Status that prevented it.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design
  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

#define REWIND_RETURN_IF_ERROR(expr) \
  do {                               \
    ::rwd::Status _st = (expr);      \
    if (!_st.is_ok()) return _st;    \
  } while (0)

}  // namespace rwd

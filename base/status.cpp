#include "rewind/base/status.h"

#include <cstring>

namespace rwd {

Status Status::io_error(std::string msg, int err) {
  msg += ": ";
  msg += std::strerror(err);
  Code code = Code::kIoError;
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) code = Code::kNoSpace;
  return Status(code, std::move(msg), err == 0 ? EIO : err);
}

Status Status::with_context(const std::string& context) const {
  if (is_ok()) return *this;
  return Status(code_, context + ": " + msg_, err_);
}

}  // namespace rwd

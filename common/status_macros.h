// Early-return helpers for absl::Status and absl::StatusOr (Abseil 20220623
// has no public ones).
//
//   EMBEDDING_RETURN_IF_ERROR(Validate(x));
//   EMBEDDING_ASSIGN_OR_RETURN(auto table, registry.Get(name));
#ifndef COMMON_STATUS_MACROS_H_
#define COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EMBEDDING_RETURN_IF_ERROR(expr)                 \
  do {                                                  \
    if (absl::Status _status = (expr); !_status.ok()) { \
      return _status;                                   \
    }                                                   \
  } while (0)

#define EMBEDDING_STATUS_CONCAT_INNER(a, b) a##b
#define EMBEDDING_STATUS_CONCAT(a, b) EMBEDDING_STATUS_CONCAT_INNER(a, b)

#define EMBEDDING_ASSIGN_OR_RETURN(lhs, expr) \
  EMBEDDING_ASSIGN_OR_RETURN_IMPL(            \
      EMBEDDING_STATUS_CONCAT(_status_or_, __LINE__), lhs, expr)

#define EMBEDDING_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) {                                      \
    return std::move(statusor).status();                     \
  }                                                          \
  lhs = *std::move(statusor)

#endif  // COMMON_STATUS_MACROS_H_

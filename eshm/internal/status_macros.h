// Early-return helpers for absl::Status; the abseil release eshm builds against predates its own.
#ifndef ESHM_INTERNAL_STATUS_MACROS_H_
#define ESHM_INTERNAL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ESHM_INTERNAL_CONCAT_IMPL(a, b) a##b
#define ESHM_INTERNAL_CONCAT(a, b) ESHM_INTERNAL_CONCAT_IMPL(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define ESHM_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::absl::Status eshm_status_ = (expr);           \
    if (!eshm_status_.ok()) return eshm_status_;    \
  } while (false)

// `lhs = *expr` when `expr` (an absl::StatusOr) is OK; otherwise returns its status.
#define ESHM_ASSIGN_OR_RETURN(lhs, expr) \
  ESHM_INTERNAL_ASSIGN_OR_RETURN(ESHM_INTERNAL_CONCAT(eshm_statusor_, __LINE__), lhs, expr)

#define ESHM_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = *std::move(tmp)

#endif  // ESHM_INTERNAL_STATUS_MACROS_H_

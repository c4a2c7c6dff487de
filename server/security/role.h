// Role: what a caller may do, from least to most. A role includes every
// role below it (a trainer may do what a reader may).
//
//   if (caller < RequiredRole("WriteRows")) return PermissionDenied(...);
//
// Thread-safe (constants and pure functions).
#ifndef SERVER_SECURITY_ROLE_H_
#define SERVER_SECURITY_ROLE_H_

#include <optional>

#include "absl/strings/string_view.h"

namespace embedding {

enum class Role {
  kNone = 0,  // Not authenticated: may call nothing but health.
  kReader,    // Reads rows and tables.
  kTrainer,   // Also updates rows.
  kAdmin,     // Also creates, deletes, checkpoints, changes optimizers.
};

// "reader", "trainer", "admin" ("none" for kNone).
absl::string_view RoleName(Role role);

// The role named `name` (reader, trainer or admin); nullopt otherwise.
std::optional<Role> ParseRole(absl::string_view name);

}  // namespace embedding

#endif  // SERVER_SECURITY_ROLE_H_

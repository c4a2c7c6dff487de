// The role each embedding.v1.EmbeddingService method needs: one table, so
// that a new RPC is one entry (a test checks that every method of the
// service's descriptor has one; a method missing from it needs admin).
//
//   const Role needed = RequiredRole("Lookup");   // Role::kReader
//
// Thread-safe (a constant table).
#ifndef SERVER_SECURITY_METHOD_ROLES_H_
#define SERVER_SECURITY_METHOD_ROLES_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "server/security/role.h"

namespace embedding {

// The role the table gives method `method` (its short name, "Lookup");
// nullopt when the table has no entry.
std::optional<Role> MethodRole(absl::string_view method);

// MethodRole, or admin for a method missing from the table (fail closed).
Role RequiredRole(absl::string_view method);

}  // namespace embedding

#endif  // SERVER_SECURITY_METHOD_ROLES_H_

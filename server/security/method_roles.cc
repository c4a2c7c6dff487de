#include "server/security/method_roles.h"

#include <utility>

namespace embedding {
namespace {

// Readers read, trainers also write rows, admins also manage tables.
constexpr std::pair<absl::string_view, Role> kMethodRoles[] = {
    {"Lookup", Role::kReader},         {"LookupBag", Role::kReader},
    {"LookupStream", Role::kReader},   {"GetTable", Role::kReader},
    {"ListTables", Role::kReader},     {"ReadRows", Role::kReader},
    {"PushGradients", Role::kTrainer}, {"PushBagGradients", Role::kTrainer},
    {"WriteRows", Role::kTrainer},     {"CreateTable", Role::kAdmin},
    {"DeleteTable", Role::kAdmin},     {"SetOptimizer", Role::kAdmin},
    {"SaveCheckpoint", Role::kAdmin},
};

}  // namespace

std::optional<Role> MethodRole(absl::string_view method) {
  for (const auto& [name, role] : kMethodRoles) {
    if (name == method) return role;
  }
  return std::nullopt;
}

Role RequiredRole(absl::string_view method) {
  return MethodRole(method).value_or(Role::kAdmin);
}

}  // namespace embedding

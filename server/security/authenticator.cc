#include "server/security/authenticator.h"

#include <grpcpp/security/auth_context.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace embedding {
namespace {

constexpr absl::string_view kAuthorizationKey = "authorization";
constexpr absl::string_view kBearerPrefix = "Bearer ";
// gRPC's AuthContext property of a verified peer certificate's subject CN.
constexpr absl::string_view kCommonNameProperty = "x509_common_name";

// The role of the call's verified client certificate, if the set maps its
// common name.
std::optional<Role> CertificateRole(const grpc::ServerContext& context,
                                    const TokenSet& tokens) {
  if (tokens.CommonNameCount() == 0) return std::nullopt;
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return std::nullopt;
  for (const grpc::string_ref& name :
       auth->FindPropertyValues(std::string(kCommonNameProperty))) {
    const std::optional<Role> role =
        tokens.FindCommonName(absl::string_view(name.data(), name.size()));
    if (role.has_value()) return role;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(
    const std::string& tokens_file) {
  TokenSet tokens;
  if (!tokens_file.empty()) {
    absl::StatusOr<TokenSet> read = TokenSet::ReadFile(tokens_file);
    if (!read.ok()) return read.status();
    tokens = *std::move(read);
  }
  return std::unique_ptr<Authenticator>(
      new Authenticator(tokens_file, std::move(tokens)));
}

Authenticator::Authenticator(std::string tokens_file, TokenSet tokens)
    : tokens_file_(std::move(tokens_file)),
      tokens_(std::make_shared<const TokenSet>(std::move(tokens))) {}

absl::Status Authenticator::Authorize(const grpc::ServerContext& context,
                                      absl::string_view method,
                                      Role needed) const {
  if (!enabled()) return absl::OkStatus();
  const std::shared_ptr<const TokenSet> tokens =
      tokens_.load(std::memory_order_acquire);
  Role role = Role::kNone;
  const auto& metadata = context.client_metadata();
  if (const auto header = metadata.find(std::string(kAuthorizationKey));
      header != metadata.end()) {
    const absl::string_view value(header->second.data(), header->second.size());
    if (!absl::StartsWith(value, kBearerPrefix)) {
      return Refuse(AuthFailure::kMissingToken,
                    absl::UnauthenticatedError(
                        "malformed authorization metadata: expected "
                        "\"Bearer TOKEN\""));
    }
    const std::optional<Role> token_role =
        tokens->FindToken(value.substr(kBearerPrefix.size()));
    if (!token_role.has_value()) {
      return Refuse(AuthFailure::kUnknownToken,
                    absl::UnauthenticatedError(
                        "unknown bearer token (not in the server's token "
                        "file)"));
    }
    role = *token_role;
  }
  role =
      std::max(role, CertificateRole(context, *tokens).value_or(Role::kNone));
  if (role == Role::kNone) {
    return Refuse(
        AuthFailure::kMissingToken,
        absl::UnauthenticatedError(absl::StrCat(
            "missing credentials: send metadata \"authorization: Bearer "
            "TOKEN\"",
            tokens->CommonNameCount() > 0
                ? " or a client certificate whose common name has a role"
                : "")));
  }
  if (role < needed) {
    return Refuse(AuthFailure::kPermissionDenied,
                  absl::PermissionDeniedError(absl::StrCat(
                      method, " needs role ", RoleName(needed),
                      " or higher; the caller has role ", RoleName(role))));
  }
  return absl::OkStatus();
}

absl::Status Authenticator::Refuse(AuthFailure reason,
                                   absl::Status status) const {
  failures_[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
  return status;
}

absl::Status Authenticator::Reload() {
  if (!enabled()) return absl::OkStatus();
  absl::StatusOr<TokenSet> read = TokenSet::ReadFile(tokens_file_);
  if (!read.ok()) return read.status();
  tokens_.store(std::make_shared<const TokenSet>(*std::move(read)),
                std::memory_order_release);
  return absl::OkStatus();
}

std::string Authenticator::Summary() const {
  if (!enabled()) return "off";
  const std::shared_ptr<const TokenSet> tokens =
      tokens_.load(std::memory_order_acquire);
  const int readers = tokens->TokenCount(Role::kReader);
  const int trainers = tokens->TokenCount(Role::kTrainer);
  const int admins = tokens->TokenCount(Role::kAdmin);
  return absl::StrCat(tokens_file_, ": ", readers + trainers + admins,
                      " tokens (", readers, " reader, ", trainers, " trainer, ",
                      admins, " admin), ", tokens->CommonNameCount(),
                      " certificate names");
}

}  // namespace embedding

// Authenticator: decides whether a call may run a method, from its bearer
// token (metadata "authorization: Bearer TOKEN") and, with mutual TLS, the
// common name of its verified client certificate, against the token file
// (auth_tokens.h). Without a token file it lets every call through.
//
//   absl::StatusOr<std::unique_ptr<Authenticator>> auth =
//       Authenticator::Create(options.auth_tokens_file);
//   absl::Status allowed = (*auth)->Authorize(*context, "Lookup",
//                                             Role::kReader);
//   (*auth)->Reload();                          // on SIGHUP
//   (*auth)->failures(AuthFailure::kUnknownToken);  // for metrics
//
// A caller's role is the higher of its token's and its certificate's. A
// token that is sent must be valid: a malformed header or an unknown token
// is refused even when the certificate alone would do (credentials that
// are wrong are a mistake worth reporting, never silently ignored).
//
// Thread-safe. The token set is an immutable TokenSet behind a
// std::atomic<std::shared_ptr> (libstdc++ 12 guards it with a spin bit in
// the pointer word: a load is two atomic operations and a reference count,
// no mutex, no syscall); Reload builds the new set off to the side and
// swaps it in, and calls in flight keep the set they loaded.
#ifndef SERVER_SECURITY_AUTHENTICATOR_H_
#define SERVER_SECURITY_AUTHENTICATOR_H_

#include <grpcpp/server_context.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/security/auth_tokens.h"
#include "server/security/role.h"

namespace embedding {

// Why a call was refused (one counter each).
enum class AuthFailure {
  kMissingToken,      // No usable credentials: no header, or not "Bearer".
  kUnknownToken,      // A token the file does not list.
  kPermissionDenied,  // Known caller, role too low for the method.
};

class Authenticator {
 public:
  // Reads `tokens_file`; empty: authentication is off. INVALID_ARGUMENT
  // from TokenSet::ReadFile.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(
      const std::string& tokens_file);

  // Whether a token file is in use.
  bool enabled() const { return !tokens_file_.empty(); }
  const std::string& tokens_file() const { return tokens_file_; }

  // OK when the caller's role is at least `needed` for `method` (a short
  // name, used in messages). UNAUTHENTICATED when no usable credentials
  // came or the token is unknown; PERMISSION_DENIED naming the method and
  // the role it needs. Messages never contain the token.
  absl::Status Authorize(const grpc::ServerContext& context,
                         absl::string_view method, Role needed) const;

  // Re-reads the token file. On error the current set stays and the error
  // is returned (INVALID_ARGUMENT from TokenSet::ReadFile). OK and no-op
  // when authentication is off.
  absl::Status Reload();

  // "3 tokens (1 reader, 1 trainer, 1 admin), 1 certificate name" or "off".
  std::string Summary() const;

  // Calls refused for `reason` so far. Lock-free (relaxed: counters only).
  int64_t failures(AuthFailure reason) const {
    return failures_[static_cast<int>(reason)].load(std::memory_order_relaxed);
  }

 private:
  Authenticator(std::string tokens_file, TokenSet tokens);

  absl::Status Refuse(AuthFailure reason, absl::Status status) const;

  const std::string tokens_file_;
  std::atomic<std::shared_ptr<const TokenSet>> tokens_;
  mutable std::atomic<int64_t> failures_[3] = {};
};

}  // namespace embedding

#endif  // SERVER_SECURITY_AUTHENTICATOR_H_

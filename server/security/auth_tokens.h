// TokenSet: the bearer tokens and certificate common names of an
// --auth_tokens_file, each with its role. One entry per line:
//
//   # comments and blank lines are allowed
//   reader  r-5f2c...          a token (no whitespace inside)
//   admin   cn:ops-console     a verified mTLS client certificate whose
//                              subject CN is "ops-console" (rest of line)
//
//   absl::StatusOr<TokenSet> tokens = TokenSet::ReadFile(path);
//   std::optional<Role> role = tokens->FindToken(presented);
//
// Tokens are kept only as SHA-256 digests. FindToken compares the digest of
// the presented token with every known digest (CRYPTO_memcmp, no early
// exit), so its time depends on the number of tokens, never on how much of
// a token matched; digests also make every comparison the same length.
// Errors never contain a token.
//
// Thread-compatible; immutable after construction (share it as const).
#ifndef SERVER_SECURITY_AUTH_TOKENS_H_
#define SERVER_SECURITY_AUTH_TOKENS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/security/role.h"

namespace embedding {

class TokenSet {
 public:
  using Digest = std::array<uint8_t, 32>;  // SHA-256.

  // No tokens and no names: every call but health is refused.
  TokenSet() = default;

  // Parses the text of a token file; `source` (the path) starts every error
  // message as "SOURCE:LINE: ...". INVALID_ARGUMENT for a line that is not
  // "ROLE TOKEN" or "ROLE cn:NAME", an unknown role, a token with
  // whitespace, an empty "cn:", and a token or name given twice.
  static absl::StatusOr<TokenSet> Parse(absl::string_view text,
                                        absl::string_view source);
  // Reads and parses the file at `path`; INVALID_ARGUMENT as Parse, or when
  // the file cannot be read (with the reason).
  static absl::StatusOr<TokenSet> ReadFile(const std::string& path);

  // The role of bearer token `token`, in constant time (see above).
  std::optional<Role> FindToken(absl::string_view token) const;
  // The role mapped to a client certificate's common name.
  std::optional<Role> FindCommonName(absl::string_view common_name) const;

  // How many tokens (not names) have `role`.
  int TokenCount(Role role) const;
  // How many common names are mapped (to any role).
  int CommonNameCount() const { return static_cast<int>(names_.size()); }

 private:
  struct Entry {
    Digest digest;
    Role role;
  };

  std::vector<Entry> tokens_;
  absl::flat_hash_map<std::string, Role> names_;
};

}  // namespace embedding

#endif  // SERVER_SECURITY_AUTH_TOKENS_H_

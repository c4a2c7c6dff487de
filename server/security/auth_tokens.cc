#include "server/security/auth_tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace embedding {
namespace {

constexpr absl::string_view kCommonNamePrefix = "cn:";

TokenSet::Digest Sha256(absl::string_view text) {
  // Fetched once: OpenSSL 3's one-shot SHA256() looks the algorithm up on
  // every call, under a lock of the provider store (every call of every
  // thread would meet there).
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  TokenSet::Digest digest;
  unsigned int size = 0;
  if (sha256 == nullptr ||
      EVP_Digest(text.data(), text.size(), digest.data(), &size, sha256,
                 nullptr) != 1 ||
      size != digest.size()) {
    // No digest, no safe answer (a fixed value would match every token):
    // stop. The token file is hashed at startup, so this happens there.
    std::fputs("embedding_server: OpenSSL cannot compute SHA-256\n", stderr);
    std::abort();
  }
  return digest;
}

bool HasWhitespace(absl::string_view text) {
  for (char c : text) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<TokenSet> TokenSet::Parse(absl::string_view text,
                                         absl::string_view source) {
  TokenSet set;
  // Where each token digest was first seen, for the duplicate message.
  absl::flat_hash_map<std::string, int> token_lines;
  absl::flat_hash_map<std::string, int> name_lines;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", line_number, ": ", what));
    };
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    // Neither field is echoed: either might be a token written in the
    // wrong place.
    const size_t space = line.find_first_of(" \t");
    if (space == absl::string_view::npos) {
      return error(
          "expected \"ROLE TOKEN\" or \"ROLE cn:NAME\", got one field");
    }
    const std::optional<Role> role = ParseRole(line.substr(0, space));
    if (!role.has_value()) {
      return error("unknown role (expected reader, trainer or admin)");
    }
    const absl::string_view value =
        absl::StripLeadingAsciiWhitespace(line.substr(space));
    if (absl::StartsWith(value, kCommonNamePrefix)) {
      // A common name may contain spaces ("Trainer One").
      const std::string name(value.substr(kCommonNamePrefix.size()));
      if (name.empty()) return error("empty name after \"cn:\"");
      const auto [seen, inserted] = name_lines.emplace(name, line_number);
      if (!inserted) {
        return error(absl::StrCat("common name \"", name,
                                  "\" already mapped on line ", seen->second));
      }
      set.names_.emplace(name, *role);
      continue;
    }
    if (HasWhitespace(value)) {
      return error("a token cannot contain whitespace");
    }
    const Digest digest = Sha256(value);
    const std::string key(digest.begin(), digest.end());
    const auto [seen, inserted] = token_lines.emplace(key, line_number);
    if (!inserted) {
      return error(
          absl::StrCat("duplicate token (first on line ", seen->second, ")"));
    }
    set.tokens_.push_back({digest, *role});
  }
  return set;
}

absl::StatusOr<TokenSet> TokenSet::ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  }
  return Parse(text.str(), path);
}

std::optional<Role> TokenSet::FindToken(absl::string_view token) const {
  const Digest presented = Sha256(token);
  // Every entry is compared, and the match is selected without a branch on
  // the comparison (tokens are unique, so at most one matches).
  int found = 0;
  int role = 0;
  for (const Entry& entry : tokens_) {
    const int equal = CRYPTO_memcmp(presented.data(), entry.digest.data(),
                                    presented.size()) == 0;
    found |= equal;
    role |= -equal & static_cast<int>(entry.role);
  }
  if (!found) return std::nullopt;
  return static_cast<Role>(role);
}

std::optional<Role> TokenSet::FindCommonName(
    absl::string_view common_name) const {
  const auto it = names_.find(common_name);
  if (it == names_.end()) return std::nullopt;
  return it->second;
}

int TokenSet::TokenCount(Role role) const {
  int count = 0;
  for (const Entry& entry : tokens_) count += entry.role == role;
  return count;
}

}  // namespace embedding

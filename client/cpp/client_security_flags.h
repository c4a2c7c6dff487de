// The command-line flags of a client's token and TLS options, one
// definition for every tool that talks to the server (embedding_cli,
// embedding_bench): --token_file, --tls_ca_file, --tls_cert_file,
// --tls_key_file, --tls_server_name. There is no flag for the token
// itself: it would show in the shell history and the process list.
//
//   absl::ParseCommandLine(argc, argv);
//   EMBEDDING_ASSIGN_OR_RETURN(options.security,
//                              ClientSecurityOptionsFromFlags());
#ifndef CLIENT_CPP_CLIENT_SECURITY_FLAGS_H_
#define CLIENT_CPP_CLIENT_SECURITY_FLAGS_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cpp/client_security.h"

namespace embedding {

// The options the flags give (the token read from --token_file; empty
// without it, so that $EMBEDDING_TOKEN applies). INVALID_ARGUMENT when
// --token_file cannot be read (ReadTokenFile).
absl::StatusOr<ClientSecurityOptions> ClientSecurityOptionsFromFlags();

// Whether `file` (a flag's source file, as absl::FlagsUsageConfig passes
// it) is the one defining these flags: for a tool's --help filter.
bool DefinesClientSecurityFlags(absl::string_view file);

}  // namespace embedding

#endif  // CLIENT_CPP_CLIENT_SECURITY_FLAGS_H_

// Server reflection on or off. Linking gRPC's reflection library registers
// its builder plugin for every server in the process (a static
// initializer), so leaving InitProtoReflectionServerBuilderPlugin uncalled
// does not turn it off: this builder option removes the plugin instead.
//
//   grpc::ServerBuilder builder;
//   builder.SetOption(ReflectionOption(options.enable_reflection));
//
// Thread-compatible (used while one thread builds a server).
#ifndef SERVER_SECURITY_REFLECTION_OPTION_H_
#define SERVER_SECURITY_REFLECTION_OPTION_H_

#include <grpcpp/impl/server_builder_option.h>

#include <memory>

namespace embedding {

// With `enabled`, makes sure the reflection plugin is registered; without,
// removes it from the builder it is set on.
std::unique_ptr<grpc::ServerBuilderOption> ReflectionOption(bool enabled);

}  // namespace embedding

#endif  // SERVER_SECURITY_REFLECTION_OPTION_H_

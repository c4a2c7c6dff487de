#include "server/security/reflection_option.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>

#include <algorithm>
#include <vector>

namespace embedding {
namespace {

class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    std::erase_if(*plugins, [](const auto& plugin) {
      return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(
                 plugin.get()) != nullptr;
    });
  }
};

class Unchanged final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(
      std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* /*plugins*/)
      override {}
};

}  // namespace

std::unique_ptr<grpc::ServerBuilderOption> ReflectionOption(bool enabled) {
  if (!enabled) return std::make_unique<WithoutReflection>();
  // Registers the plugin for builders made from now on (once per process).
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  return std::make_unique<Unchanged>();
}

}  // namespace embedding

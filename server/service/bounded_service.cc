#include "server/service/bounded_service.h"

#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/support/method_handler.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "server/service/bounded_parse.h"

namespace embedding {
namespace {

using grpc::internal::MethodHandler;
using grpc::internal::RpcMethod;
using grpc::internal::RpcServiceMethod;

// The reservation of the unary response being sent on this thread. gRPC's
// synchronous handler serializes and sends the response after our function
// returns, on the same thread, before its RunHandler returns: the wrapper
// below releases it then.
thread_local InflightBytes sending_response;

// A unary method taking raw bytes: parses with ParseBounded, calls the
// typed method, reserves the response until it is sent.
template <typename Request, typename Response>
class BoundedUnaryHandler final : public MethodHandler {
 public:
  using Method = grpc::Status (EmbeddingServiceImpl::*)(grpc::ServerContext*,
                                                        const Request*,
                                                        Response*);

  BoundedUnaryHandler(EmbeddingServiceImpl* impl, Method method,
                      InflightMemory* memory)
      : inner_(
            [method, memory](EmbeddingServiceImpl* impl,
                             grpc::ServerContext* context,
                             const grpc::ByteBuffer* raw, Response* response) {
              return Run(impl, method, memory, context, *raw, response);
            },
            impl) {}

  void RunHandler(const HandlerParameter& param) override {
    inner_.RunHandler(param);
    sending_response.Reset();
  }

  void* Deserialize(grpc_call* call, grpc_byte_buffer* request,
                    grpc::Status* status, void** handler_data) override {
    return inner_.Deserialize(call, request, status, handler_data);
  }

 private:
  static grpc::Status Run(EmbeddingServiceImpl* impl, Method method,
                          InflightMemory* memory, grpc::ServerContext* context,
                          const grpc::ByteBuffer& raw, Response* response) {
    Request request;
    absl::StatusOr<InflightBytes> parsed = ParseBounded(raw, &request, memory);
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    grpc::Status status = (impl->*method)(context, &request, response);
    if (!status.ok() || memory == nullptr) return status;
    // While it is sent the response exists twice: the message and its
    // serialized bytes.
    absl::StatusOr<InflightBytes> held = memory->Reserve(
        2 * static_cast<int64_t>(response->ByteSizeLong()),
        absl::StrCat("sending a ", Response::descriptor()->full_name()));
    if (!held.ok()) {
      response->Clear();
      return ToGrpcStatus(held.status());
    }
    sending_response = *std::move(held);
    return status;
  }

  grpc::internal::RpcMethodHandler<EmbeddingServiceImpl, grpc::ByteBuffer,
                                   Response>
      inner_;
};

}  // namespace

BoundedService::BoundedService(EmbeddingServiceImpl* impl,
                               InflightMemory* memory)
    : impl_(impl), memory_(memory) {
  using Impl = EmbeddingServiceImpl;
  AddUnary("CreateTable", &Impl::CreateTable);
  AddUnary("GetTable", &Impl::GetTable);
  AddUnary("ListTables", &Impl::ListTables);
  AddUnary("DeleteTable", &Impl::DeleteTable);
  AddUnary("Lookup", &Impl::Lookup);
  AddLookupStream();
  AddUnary("LookupBag", &Impl::LookupBag);
  AddUnary("PushGradients", &Impl::PushGradients);
  AddUnary("PushBagGradients", &Impl::PushBagGradients);
  AddUnary("WriteRows", &Impl::WriteRows);
  AddServerStreaming("ReadRows", &Impl::ReadRows);
  AddUnary("SetOptimizer", &Impl::SetOptimizer);
  AddUnary("SaveCheckpoint", &Impl::SaveCheckpoint);
}

const char* BoundedService::Path(const char* name) {
  paths_.push_back(
      absl::StrCat("/", v1::EmbeddingService::service_full_name(), "/", name));
  return path_storage_.emplace_back(paths_.back()).c_str();
}

template <typename Request, typename Response>
void BoundedService::AddUnary(
    const char* name,
    grpc::Status (EmbeddingServiceImpl::*method)(grpc::ServerContext*,
                                                 const Request*, Response*)) {
  AddMethod(new RpcServiceMethod(
      Path(name), RpcMethod::NORMAL_RPC,
      new BoundedUnaryHandler<Request, Response>(impl_, method, memory_)));
}

template <typename Request, typename Response>
void BoundedService::AddServerStreaming(
    const char* name,
    grpc::Status (EmbeddingServiceImpl::*method)(
        grpc::ServerContext*, const Request*, grpc::ServerWriter<Response>*)) {
  InflightMemory* const memory = memory_;
  AddMethod(new RpcServiceMethod(
      Path(name), RpcMethod::SERVER_STREAMING,
      new grpc::internal::ServerStreamingHandler<EmbeddingServiceImpl,
                                                 grpc::ByteBuffer, Response>(
          [method, memory](EmbeddingServiceImpl* impl,
                           grpc::ServerContext* context,
                           const grpc::ByteBuffer* raw,
                           grpc::ServerWriter<Response>* writer) {
            Request request;
            absl::StatusOr<InflightBytes> parsed =
                ParseBounded(*raw, &request, memory);
            if (!parsed.ok()) return ToGrpcStatus(parsed.status());
            return (impl->*method)(context, &request, writer);
          },
          impl_)));
}

void BoundedService::AddLookupStream() {
  AddMethod(new RpcServiceMethod(
      Path("LookupStream"), RpcMethod::BIDI_STREAMING,
      new grpc::internal::BidiStreamingHandler<
          EmbeddingServiceImpl, grpc::ByteBuffer, v1::LookupResponse>(
          [](EmbeddingServiceImpl* impl, grpc::ServerContext* context,
             grpc::ServerReaderWriter<v1::LookupResponse, grpc::ByteBuffer>*
                 stream) { return impl->LookupStreamRaw(context, stream); },
          impl_)));
}

}  // namespace embedding

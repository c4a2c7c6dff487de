#include "server/service/bounded_service.h"

#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/support/method_handler.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/quote.h"
#include "server/security/method_roles.h"
#include "server/service/bounded_parse.h"
#include "spdlog/spdlog.h"

namespace embedding {
namespace {

using grpc::internal::MethodHandler;
using grpc::internal::RpcMethod;
using grpc::internal::RpcServiceMethod;

// The table a request names, for the log of a failed call ("" for none).
template <typename Request>
absl::string_view TableOf(const Request& request) {
  if constexpr (requires { request.table(); }) {
    return request.table();
  } else if constexpr (requires { request.name(); }) {
    return request.name();
  } else if constexpr (requires { request.spec().name(); }) {
    return request.spec().name();
  } else {
    return {};
  }
}

// What every handler does around the typed method: asks the authenticator
// before anything is parsed, and logs a failed call at debug.
class CallCheck {
 public:
  CallCheck(const Authenticator* authenticator, absl::string_view method)
      : authenticator_(authenticator),
        method_(method),
        needed_(RequiredRole(method)) {}

  // OK, or the refusal (logged, without a table: nothing was parsed).
  grpc::Status Admit(const grpc::ServerContext& context) const {
    if (authenticator_ == nullptr) return grpc::Status::OK;
    return Done(
        context,
        ToGrpcStatus(authenticator_->Authorize(context, method_, needed_)), "");
  }

  // Returns `status`, logged first when it failed.
  grpc::Status Done(const grpc::ServerContext& context, grpc::Status status,
                    absl::string_view table) const {
    if (!status.ok() && spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("{} failed: {}: {} (peer {}{})", method_,
                    absl::StatusCodeToString(
                        static_cast<absl::StatusCode>(status.error_code())),
                    status.error_message(), context.peer(),
                    table.empty()
                        ? ""
                        : absl::StrCat(", table ", QuoteForMessage(table)));
    }
    return status;
  }

 private:
  const Authenticator* const authenticator_;
  const std::string method_;
  const Role needed_;
};

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
                      InflightMemory* memory, CallCheck check)
      : check_(std::move(check)),
        inner_(
            [this, method, memory](
                EmbeddingServiceImpl* impl, grpc::ServerContext* context,
                const grpc::ByteBuffer* raw, Response* response) {
              if (grpc::Status admitted = check_.Admit(*context);
                  !admitted.ok()) {
                return admitted;
              }
              Request request;
              grpc::Status status =
                  Run(impl, method, memory, context, *raw, &request, response);
              return check_.Done(*context, std::move(status), TableOf(request));
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
                          const grpc::ByteBuffer& raw, Request* request,
                          Response* response) {
    absl::StatusOr<InflightBytes> parsed = ParseBounded(raw, request, memory);
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    grpc::Status status = (impl->*method)(context, request, response);
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

  // Before inner_: its function uses check_.
  const CallCheck check_;
  grpc::internal::RpcMethodHandler<EmbeddingServiceImpl, grpc::ByteBuffer,
                                   Response>
      inner_;
};

}  // namespace

BoundedService::BoundedService(EmbeddingServiceImpl* impl,
                               InflightMemory* memory,
                               const Authenticator* authenticator)
    : impl_(impl), memory_(memory), authenticator_(authenticator) {
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
      new BoundedUnaryHandler<Request, Response>(
          impl_, method, memory_, CallCheck(authenticator_, name))));
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
          [method, memory, check = CallCheck(authenticator_, name)](
              EmbeddingServiceImpl* impl, grpc::ServerContext* context,
              const grpc::ByteBuffer* raw,
              grpc::ServerWriter<Response>* writer) {
            if (grpc::Status admitted = check.Admit(*context); !admitted.ok()) {
              return admitted;
            }
            Request request;
            absl::StatusOr<InflightBytes> parsed =
                ParseBounded(*raw, &request, memory);
            grpc::Status status =
                parsed.ok() ? (impl->*method)(context, &request, writer)
                            : ToGrpcStatus(parsed.status());
            return check.Done(*context, std::move(status), TableOf(request));
          },
          impl_)));
}

void BoundedService::AddLookupStream() {
  AddMethod(new RpcServiceMethod(
      Path("LookupStream"), RpcMethod::BIDI_STREAMING,
      new grpc::internal::BidiStreamingHandler<
          EmbeddingServiceImpl, grpc::ByteBuffer, v1::LookupResponse>(
          [check = CallCheck(authenticator_, "LookupStream")](
              EmbeddingServiceImpl* impl, grpc::ServerContext* context,
              grpc::ServerReaderWriter<v1::LookupResponse, grpc::ByteBuffer>*
                  stream) {
            if (grpc::Status admitted = check.Admit(*context); !admitted.ok()) {
              return admitted;
            }
            // Each request of the stream names its table: none is logged.
            return check.Done(*context, impl->LookupStreamRaw(context, stream),
                              "");
          },
          impl_)));
}

}  // namespace embedding

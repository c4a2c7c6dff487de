#include "server/metrics/rpc_metrics_interceptor.h"

#include <chrono>
#include <memory>
#include <utility>
#include <vector>

namespace embedding {
namespace {

using grpc::experimental::InterceptionHookPoints;

// One call's counting: from its creation (when the call starts) to the
// status it sends.
class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(RpcMetrics* metrics, int method)
      : metrics_(metrics),
        method_(method),
        start_(std::chrono::steady_clock::now()) {
    metrics_->Started(method_);
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    // The end of a client's stream also passes POST_RECV_MESSAGE, with no
    // message.
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {
      metrics_->Received(method_);
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      metrics_->Sent(method_);
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const std::chrono::duration<double> elapsed =
          std::chrono::steady_clock::now() - start_;
      metrics_->Handled(method_, methods->GetSendStatus().error_code(),
                        elapsed.count());
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* const metrics_;
  const int method_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

grpc::experimental::Interceptor*
RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  const int method = metrics_->Find(info->method());
  if (method < 0) return nullptr;
  return new RpcMetricsInterceptor(metrics_, method);
}

void CountCalls(RpcMetrics* metrics, grpc::ServerBuilder& builder) {
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      creators;
  creators.push_back(std::make_unique<RpcMetricsInterceptorFactory>(metrics));
  builder.experimental().SetInterceptorCreators(std::move(creators));
}

}  // namespace embedding

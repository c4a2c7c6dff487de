// RpcMetricsInterceptorFactory: a gRPC server interceptor that counts every
// call of the methods an RpcMetrics knows (started, messages each way, the
// status code it ends with and how long it took). It sees the services
// registered with raw-bytes handlers too (BoundedService), since it works
// on the call, not on the typed messages.
//
//   auto metrics = std::make_shared<RpcMetrics>(*MethodsOfServices(names));
//   CountCalls(metrics.get(), builder);
//   server = builder.BuildAndStart();
//
// Thread-safe. Per call: one allocation (gRPC's interceptor object), a hash
// lookup of the method's path, and relaxed atomic additions; no lock.
#ifndef SERVER_METRICS_RPC_METRICS_INTERCEPTOR_H_
#define SERVER_METRICS_RPC_METRICS_INTERCEPTOR_H_

#include <grpcpp/server_builder.h>
#include <grpcpp/support/server_interceptor.h>

#include "server/metrics/rpc_metrics.h"

namespace embedding {

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the server the factory is given to.
  explicit RpcMetricsInterceptorFactory(RpcMetrics* metrics)
      : metrics_(metrics) {}

  // Null (no interception) for a method `metrics` does not know.
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  RpcMetrics* const metrics_;
};

// Has every call of the server `builder` builds counted in `metrics`,
// which must outlive that server. Replaces interceptors set on `builder`
// before (gRPC keeps one list).
void CountCalls(RpcMetrics* metrics, grpc::ServerBuilder& builder);

}  // namespace embedding

#endif  // SERVER_METRICS_RPC_METRICS_INTERCEPTOR_H_

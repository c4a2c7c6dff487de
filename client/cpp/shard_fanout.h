// FanOut: one unary RPC sent to several servers at once, on one
// CompletionQueue that the calling thread drains (no thread per call), each
// attempt with its server's deadline and headers (EmbeddingClient's
// PrepareContext); the sub-calls that fail with UNAVAILABLE are sent again,
// all still missing at once, under the retry policy of client/retry.h.
//
//   std::vector<SubCall<v1::GetTableRequest, v1::TableInfo>> calls = ...;
//   FanOut(shards, &Stub::AsyncGetTable, /*retry=*/true, call, calls);
//   // calls[i].result: the reply of shards[calls[i].shard], or its error.
//
// Also the shape of a routed call (ShardRoutes).
//
// Thread-compatible: each call uses its own queue and sub-calls.
#ifndef CLIENT_CPP_SHARD_FANOUT_H_
#define CLIENT_CPP_SHARD_FANOUT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/retry.h"
#include "common/grpc_status.h"

namespace embedding::internal {

using Stub = v1::EmbeddingService::StubInterface;

template <typename Request, typename Response>
using AsyncMethod =
    std::unique_ptr<grpc::ClientAsyncResponseReaderInterface<Response>> (
        Stub::*)(grpc::ClientContext*, const Request&, grpc::CompletionQueue*);

// The indices of one call split by shard (k-th entry: shard k's), with each
// one's position in the caller's list.
struct ShardRoutes {
  std::vector<std::vector<int64_t>> indices;
  std::vector<std::vector<size_t>> positions;
};

// One server's part of a call.
template <typename Request, typename Response>
struct SubCall {
  int shard = 0;
  Request request;
  absl::StatusOr<Response> result = absl::UnknownError("not sent");
};

// Sends the sub-calls `pending` (positions in `calls`) once, all at once,
// and waits for every reply.
template <typename Request, typename Response>
void SendOnce(absl::Span<const std::unique_ptr<EmbeddingClient>> shards,
              AsyncMethod<Request, Response> method, const CallOptions& call,
              absl::Span<const size_t> pending,
              std::vector<SubCall<Request, Response>>& calls) {
  struct Attempt {
    grpc::ClientContext context;
    Response response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReaderInterface<Response>> reader;
  };
  grpc::CompletionQueue queue;
  std::vector<std::unique_ptr<Attempt>> attempts;
  attempts.reserve(pending.size());
  for (size_t slot = 0; slot < pending.size(); ++slot) {
    SubCall<Request, Response>& sub = calls[pending[slot]];
    const EmbeddingClient& shard = *shards[sub.shard];
    Attempt& attempt = *attempts.emplace_back(std::make_unique<Attempt>());
    shard.PrepareContext(call, &attempt.context);
    attempt.reader =
        (shard.stub().*method)(&attempt.context, sub.request, &queue);
    attempt.reader->Finish(&attempt.response, &attempt.status,
                           reinterpret_cast<void*>(slot));
  }
  for (size_t done = 0; done < pending.size(); ++done) {
    void* tag = nullptr;
    bool ok = false;
    if (!queue.Next(&tag, &ok)) break;  // Not before Shutdown.
    const size_t slot = reinterpret_cast<size_t>(tag);
    Attempt& attempt = *attempts[slot];
    absl::Status status = FromGrpcStatus(attempt.status);
    SubCall<Request, Response>& sub = calls[pending[slot]];
    if (status.ok()) {
      sub.result = std::move(attempt.response);
    } else {
      sub.result = std::move(status);
    }
  }
  queue.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue.Next(&tag, &ok)) {
  }
}

// Runs every sub-call; with `retry`, those failing with UNAVAILABLE again as
// RetryOnUnavailable does. Each result is then the reply or the last error.
template <typename Request, typename Response>
void FanOut(absl::Span<const std::unique_ptr<EmbeddingClient>> shards,
            AsyncMethod<Request, Response> method, bool retry,
            const CallOptions& call,
            std::vector<SubCall<Request, Response>>& calls) {
  std::vector<size_t> pending(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) pending[i] = i;
  const ClientOptions& options = shards[0]->options();
  RetryOnUnavailable(
      retry ? options.max_retries : 0, options.retry_backoff,
      [&]() -> absl::StatusOr<bool> {
        SendOnce(shards, method, call, pending, calls);
        std::vector<size_t> unavailable;
        for (size_t i : pending) {
          if (absl::IsUnavailable(calls[i].result.status())) {
            unavailable.push_back(i);
          }
        }
        pending = std::move(unavailable);
        if (pending.empty()) return true;
        return absl::UnavailableError("some shards did not answer");
      })
      .IgnoreError();
}

}  // namespace embedding::internal

#endif  // CLIENT_CPP_SHARD_FANOUT_H_

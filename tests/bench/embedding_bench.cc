// embedding_bench: load generator for the Embedding Service and for the
// performance anchors it is compared with, in the same tool and run.
//
//   embedding_bench --target=service --address=127.0.0.1:50051
//       --workload=lookup --table_rows=1000000 --dim=64 --batch=4096
//       --threads=1 --channels=2 --outstanding=4 --duration_s=3 --json=-
//
// Targets:
//   service  the real embedding_server (async gRPC client, several channels);
//            --address=a,b,c (or --client_library) drives a cluster of
//            shards through ShardedEmbeddingClient instead: threads x
//            outstanding closed-loop callers, one call each in flight;
//   bare     tests/bench/bare_server: same proto, same bytes, no validation;
//   redis    redis-server: rows as binary values keyed by id, one MGET per
//            batch through hiredis (pipelined `outstanding` deep);
//   local    an in-process memcpy gather of the same rows (no network).
// Workloads: lookup (all targets), bag (LookupBag SUM), push_OPTIMIZER for
// any optimizer of common/optimizer_kinds.h, e.g. push_sgd, push_adagrad
// (PushGradients to a table with that optimizer at its defaults; service
// only).
//
// Closed loop by default: each client thread keeps `outstanding` requests in
// flight. With --rate, open loop: requests are sent on a fixed schedule and
// latency is measured from the scheduled time (no coordinated omission).
// Only requests that complete inside the measuring window (after the warm-up)
// are counted. Every table's rows are a function of (seed, row, column), so
// all targets hold and return the same bytes; --verify_address checks that.
//
// Against a TLS + token server, --tls_ca_file (and the other --tls_* flags)
// and --token_file or $EMBEDDING_TOKEN apply to every gRPC channel and call,
// raw or through the client library.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/cpp/client_security.h"
#include "client/cpp/client_security_flags.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/sharded_client.h"
#include "common/grpc_status.h"
#include "common/optimizer_kinds.h"
#include "common/optimizer_proto.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/core/initializer.h"
#include "server/core/table_spec.h"

ABSL_FLAG(std::string, target, "service", "service, bare, redis or local.");
ABSL_FLAG(std::string, address, std::string(embedding::kDefaultAddress),
          "host:port of the gRPC server (service and bare targets); for "
          "service, the shards of a cluster separated by commas, in "
          "shard-index order.");
ABSL_FLAG(bool, client_library, false,
          "service: drive it through the client library "
          "(ShardedEmbeddingClient) even with one address, as always with "
          "several: the same client path for 1 and M shards.");
ABSL_FLAG(std::string, redis_address, "127.0.0.1:6379",
          "host:port of redis-server (redis target).");
ABSL_FLAG(std::string, workload, "lookup",
          "lookup, lookup_stream (Lookups over bidi streams, one per "
          "channel), bag, or push_OPTIMIZER (push_sgd, push_adagrad, "
          "push_ftrl, ...).");
ABSL_FLAG(std::string, table, "",
          "Table name; default bench_<workload kind>_<rows>x<dim>_s<seed>.");
ABSL_FLAG(int64_t, table_rows, 1000000, "Rows of the table.");
ABSL_FLAG(int64_t, dim, 64, "Columns of the table (float32).");
ABSL_FLAG(int64_t, batch, 64, "Indices per request.");
ABSL_FLAG(int64_t, bag_size, 16,
          "bag workload: indices per bag (the last bag may be shorter).");
ABSL_FLAG(int, threads, 1, "Client threads.");
ABSL_FLAG(int, channels, 2,
          "gRPC channels (TCP connections) shared round-robin by the threads.");
ABSL_FLAG(int, outstanding, 1,
          "Closed loop: requests in flight per client thread.");
ABSL_FLAG(double, rate, 0,
          "Open loop: requests/s over all threads; 0 means closed loop.");
ABSL_FLAG(int, max_outstanding, 1024,
          "Open loop: most requests in flight per thread; a scheduled request "
          "beyond it is counted as dropped.");
ABSL_FLAG(double, duration_s, 3, "Seconds measured.");
ABSL_FLAG(double, warmup_s, 0.5, "Seconds run before measuring.");
ABSL_FLAG(bool, setup, true,
          "Create the table (service, bare) or load the rows (redis) when it "
          "is not there yet.");
ABSL_FLAG(std::string, verify_address, "",
          "If set, a gRPC server whose Lookup of one batch must return the "
          "same bytes as the target's before measuring.");
ABSL_FLAG(std::string, json, "",
          "Write the result as one JSON object to this file; '-' for stdout.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the table's initializer.");
ABSL_FLAG(uint64_t, id_seed, 7, "Seed of the random row ids.");
ABSL_FLAG(int, request_pool, 64,
          "Distinct pre-built requests cycled through (fewer for big ones).");

namespace embedding {
namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = ::embedding::v1;
using Stub = v1::EmbeddingService::Stub;

constexpr int64_t kPoolBytes = int64_t{64} << 20;

struct Config {
  std::string target;
  std::string address;
  std::string redis_address;
  std::string workload;
  std::string table;
  int64_t table_rows;
  int64_t dim;
  int64_t batch;
  int64_t bag_size;
  int threads;
  int channels;
  int outstanding;
  double rate;
  int max_outstanding;
  double duration_s;
  double warmup_s;
  bool setup;
  std::string verify_address;
  // Through ShardedEmbeddingClient: several addresses or --client_library.
  bool client_library;
  uint64_t seed;
  uint64_t id_seed;
  int request_pool;
  // Of every gRPC channel and call: TLS, token, limits, default deadline.
  ClientOptions client;
  // Prepares every raw call's context (the token with it); made once.
  std::shared_ptr<const CallContextPreparer> contexts;

  bool IsPush() const { return workload.rfind("push_", 0) == 0; }
  // push_NAME: the optimizer called NAME, or null.
  const OptimizerInfo* PushOptimizer() const {
    return IsPush() ? FindOptimizer(workload.substr(5)) : nullptr;
  }
  int64_t Bags() const { return (batch + bag_size - 1) / bag_size; }
  // Bytes of row data one request moves: rows out for lookups, gradient in
  // for pushes.
  int64_t PayloadBytes() const {
    const int64_t rows = workload == "bag" ? Bags() : batch;
    return rows * dim * static_cast<int64_t>(sizeof(float));
  }
};

// The measuring window and what one thread saw in it.
struct Window {
  Clock::time_point start;  // End of the warm-up.
  Clock::time_point end;
  bool Contains(Clock::time_point t) const { return t >= start && t < end; }
};

struct ThreadStats {
  int64_t requests = 0;  // Completed in the window, ok or not.
  int64_t rows = 0;      // Indices of the ok requests.
  int64_t errors = 0;
  int64_t dropped = 0;  // Open loop: scheduled but over max_outstanding.
  int64_t payload_bytes = 0;
  std::vector<int64_t> latencies_ns;  // Of the ok requests.
  std::string first_error;

  void Record(const Window& window, Clock::time_point start,
              Clock::time_point end, const absl::Status& status,
              const Config& config) {
    if (!window.Contains(end)) return;
    ++requests;
    if (!status.ok()) {
      if (errors++ == 0) first_error = status.ToString();
      return;
    }
    rows += config.batch;
    payload_bytes += config.PayloadBytes();
    latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(end - start)
            .count());
  }
};

std::vector<std::vector<int64_t>> MakeIdPool(const Config& config) {
  const int64_t request_bytes =
      config.batch * (config.IsPush() ? config.dim * 4 + 8 : 8);
  const int64_t count = std::clamp<int64_t>(kPoolBytes / request_bytes, 4,
                                            std::max(4, config.request_pool));
  std::mt19937_64 random(config.id_seed);
  std::uniform_int_distribution<int64_t> row(0, config.table_rows - 1);
  std::vector<std::vector<int64_t>> pool(count);
  for (std::vector<int64_t>& ids : pool) {
    ids.resize(config.batch);
    for (int64_t& id : ids) id = row(random);
  }
  return pool;
}

InitializerSpec DefaultInitializer() { return InitializerSpec{}; }

// ---------------------------------------------------------------- gRPC ----

// `count` stubs on channels to `address`, secured as config.client says.
absl::StatusOr<std::vector<std::unique_ptr<Stub>>> MakeStubs(
    const Config& config, const std::string& address, int count) {
  std::vector<std::unique_ptr<Stub>> stubs;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments and a local subchannel pool: one TCP connection per
    // channel instead of one shared by all.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("embedding_bench.channel", i);
    EMBEDDING_ASSIGN_OR_RETURN(
        std::shared_ptr<grpc::Channel> channel,
        CreateClientChannel(address, config.client, std::move(args)));
    channel->WaitForConnected(std::chrono::system_clock::now() +
                              std::chrono::seconds(10));
    stubs.push_back(v1::EmbeddingService::NewStub(channel));
  }
  return stubs;
}

// Sets a raw call's deadline and headers (the token's among them).
void PrepareCall(const Config& config, double seconds,
                 grpc::ClientContext* context) {
  CallOptions call;
  call.timeout = absl::Seconds(seconds);
  config.contexts->Prepare(call, context);
}

// Creates the workload's table unless a table of that name exists.
absl::Status EnsureGrpcTable(Stub& stub, const Config& config) {
  {
    grpc::ClientContext context;
    PrepareCall(config, 10, &context);
    v1::GetTableRequest request;
    request.set_name(config.table);
    v1::TableInfo info;
    const grpc::Status status = stub.GetTable(&context, request, &info);
    if (status.ok()) {
      if (info.spec().num_embeddings() != config.table_rows ||
          info.spec().embedding_dim() != config.dim) {
        return absl::FailedPreconditionError(
            absl::StrCat("table ", config.table, " exists with another size"));
      }
      return absl::OkStatus();
    }
    if (status.error_code() != grpc::StatusCode::NOT_FOUND) {
      return FromGrpcStatus(status);
    }
  }
  if (!config.setup) {
    return absl::NotFoundError(
        absl::StrCat("table ", config.table, " does not exist (--nosetup)"));
  }
  grpc::ClientContext context;
  PrepareCall(config, 300, &context);
  v1::CreateTableRequest request;
  v1::TableSpec* spec = request.mutable_spec();
  spec->set_name(config.table);
  spec->set_num_embeddings(config.table_rows);
  spec->set_embedding_dim(config.dim);
  spec->set_seed(config.seed);
  if (config.IsPush()) {  // The optimizer with the table's defaults.
    OptimizerToProto(DefaultOptimizerSpec(config.PushOptimizer()->kind),
                     spec->mutable_optimizer());
  }
  v1::TableInfo info;
  return FromGrpcStatus(stub.CreateTable(&context, request, &info));
}

absl::StatusOr<std::string> GrpcGather(Stub& stub, const Config& config,
                                       const std::vector<int64_t>& ids) {
  grpc::ClientContext context;
  PrepareCall(config, 30, &context);
  v1::LookupRequest request;
  request.set_table(config.table);
  request.mutable_indices()->Add(ids.begin(), ids.end());
  v1::LookupResponse response;
  EMBEDDING_RETURN_IF_ERROR(
      FromGrpcStatus(stub.Lookup(&context, request, &response)));
  return response.embeddings().data();
}

// The bytes --verify_address returns for `ids` (its table made if needed).
absl::StatusOr<std::string> ReferenceGather(const Config& config,
                                            const std::vector<int64_t>& ids) {
  EMBEDDING_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Stub>> stubs,
                             MakeStubs(config, config.verify_address, 1));
  EMBEDDING_RETURN_IF_ERROR(EnsureGrpcTable(*stubs[0], config));
  return GrpcGather(*stubs[0], config, ids);
}

// The RPC a workload drives, and how its response is checked.
template <typename Request, typename Response>
struct RpcKind {
  using PrepareFn = std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> (
      Stub::*)(grpc::ClientContext*, const Request&, grpc::CompletionQueue*);
  PrepareFn prepare;
  // OK when the response is what the request asked for.
  std::function<absl::Status(const Response&)> check;
};

template <typename Request, typename Response>
struct AsyncCall {
  grpc::ClientContext context;
  Response response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
  Clock::time_point start;
};

// One client thread: its own completion queue, calls spread over `stubs`.
// Closed loop: the thread issues the next call as each one completes. Open
// loop: a sender thread issues calls on schedule (sleeping in between; the
// queue's own timed wait is far coarser) while this thread reaps them.
template <typename Request, typename Response>
void RunGrpcThread(int thread_index, const Config& config,
                   const std::vector<std::unique_ptr<Stub>>& stubs,
                   const RpcKind<Request, Response>& kind,
                   const std::vector<Request>& pool, const Window& window,
                   ThreadStats* stats) {
  using Call = AsyncCall<Request, Response>;
  grpc::CompletionQueue queue;
  // Only one thread issues calls (this one or the sender), so the counters
  // need no lock; in_flight is shared with the reaper.
  size_t next_request = thread_index * 13;
  size_t next_stub = thread_index;
  std::atomic<int> in_flight{0};
  auto issue = [&](Clock::time_point start) {
    auto* call = new Call;
    call->start = start;
    PrepareCall(config, 60, &call->context);
    Stub& stub = *stubs[next_stub++ % stubs.size()];
    call->reader = (stub.*kind.prepare)(
        &call->context, pool[next_request++ % pool.size()], &queue);
    call->reader->StartCall();
    in_flight.fetch_add(1, std::memory_order_relaxed);
    call->reader->Finish(&call->response, &call->status, call);
  };

  const bool open_loop = config.rate > 0;
  std::atomic<bool> sending_done{!open_loop};
  int64_t dropped = 0;
  std::thread sender;
  if (open_loop) {
    sender = std::thread([&] {
      const auto interval = std::chrono::nanoseconds(
          static_cast<int64_t>(1e9 * config.threads / config.rate));
      // Threads start their schedules staggered across one interval.
      Clock::time_point next_send =
          Clock::now() + interval * thread_index / config.threads;
      for (; next_send < window.end; next_send += interval) {
        std::this_thread::sleep_until(next_send);
        if (in_flight.load(std::memory_order_relaxed) <
            config.max_outstanding) {
          issue(next_send);
        } else if (window.Contains(next_send)) {
          ++dropped;
        }
      }
      sending_done.store(true);
    });
  } else {
    for (int i = 0; i < config.outstanding; ++i) issue(Clock::now());
  }
  while (!sending_done.load() || in_flight.load() > 0) {
    void* tag = nullptr;
    bool ok = false;
    const grpc::CompletionQueue::NextStatus next = queue.AsyncNext(
        &tag, &ok,
        std::chrono::system_clock::now() + std::chrono::milliseconds(50));
    if (next != grpc::CompletionQueue::GOT_EVENT) continue;
    std::unique_ptr<Call> call(static_cast<Call*>(tag));
    const Clock::time_point now = Clock::now();
    absl::Status status = FromGrpcStatus(call->status);
    if (status.ok()) status = kind.check(call->response);
    stats->Record(window, call->start, now, status, config);
    if (!open_loop && now < window.end) issue(now);
    in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  if (sender.joinable()) sender.join();
  stats->dropped = dropped;
  queue.Shutdown();
  void* tag;
  bool ok;
  while (queue.Next(&tag, &ok)) {
  }
}

absl::Status CheckTensorBytes(const v1::Tensor& tensor, int64_t bytes) {
  if (static_cast<int64_t>(tensor.data().size()) != bytes) {
    return absl::InternalError(absl::StrCat(
        "response has ", tensor.data().size(), " bytes, expected ", bytes));
  }
  return absl::OkStatus();
}

template <typename Request, typename Response>
void RunGrpcThreads(const Config& config,
                    const std::vector<std::unique_ptr<Stub>>& stubs,
                    const RpcKind<Request, Response>& kind,
                    const std::vector<Request>& pool, const Window& window,
                    std::vector<ThreadStats>* stats) {
  std::vector<std::thread> threads;
  for (int t = 0; t < config.threads; ++t) {
    threads.emplace_back([&, t] {
      RunGrpcThread(t, config, stubs, kind, pool, window, &(*stats)[t]);
    });
  }
  for (std::thread& thread : threads) thread.join();
}

// One bidi LookupStream per channel, each keeping its share of
// `outstanding` requests in flight: the next request is written as soon as
// the previous write completes and there is room, responses are read back to
// back, and latency runs from a request's write to its response.
class LookupStreams {
 public:
  LookupStreams(const Config& config,
                const std::vector<std::unique_ptr<Stub>>& stubs,
                const std::vector<v1::LookupRequest>& pool,
                const Window& window, ThreadStats* stats)
      : config_(config),
        pool_(pool),
        window_(window),
        stats_(stats),
        per_stream_(std::max<int>(
            1, (config.outstanding + static_cast<int>(stubs.size()) - 1) /
                   static_cast<int>(stubs.size()))) {
    for (const auto& stub : stubs) {
      auto stream = std::make_unique<Stream>();
      PrepareCall(config, config.warmup_s + config.duration_s + 60,
                  &stream->context);
      stream->rw = stub->PrepareAsyncLookupStream(&stream->context, &queue_);
      stream->rw->StartCall(Tag(stream.get(), Op::kStart));
      streams_.push_back(std::move(stream));
    }
  }

  void Run() {
    size_t finished = 0;
    void* tag = nullptr;
    bool ok = false;
    while (finished < streams_.size() && queue_.Next(&tag, &ok)) {
      Stream* stream = reinterpret_cast<Stream*>(
          reinterpret_cast<uintptr_t>(tag) & ~uintptr_t{7});
      const Op op = static_cast<Op>(reinterpret_cast<uintptr_t>(tag) & 7);
      finished += OnEvent(stream, op, ok) ? 1 : 0;
    }
    queue_.Shutdown();
    while (queue_.Next(&tag, &ok)) {
    }
  }

 private:
  enum class Op : uintptr_t { kStart, kWrite, kRead, kWritesDone, kFinish };
  struct alignas(8) Stream {
    grpc::ClientContext context;
    std::unique_ptr<
        grpc::ClientAsyncReaderWriter<v1::LookupRequest, v1::LookupResponse>>
        rw;
    v1::LookupResponse response;
    grpc::Status status;
    std::deque<Clock::time_point> sent;  // Written, not yet answered.
    bool writing = false;
    bool writes_done = false;
  };

  static void* Tag(Stream* stream, Op op) {
    return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(stream) |
                                   static_cast<uintptr_t>(op));
  }

  void MaybeWrite(Stream* stream) {
    if (stream->writing || stream->writes_done) return;
    if (Clock::now() >= window_.end) {
      stream->writes_done = true;
      stream->rw->WritesDone(Tag(stream, Op::kWritesDone));
      return;
    }
    if (static_cast<int>(stream->sent.size()) >= per_stream_) return;
    stream->writing = true;
    stream->sent.push_back(Clock::now());
    stream->rw->Write(pool_[next_request_++ % pool_.size()],
                      Tag(stream, Op::kWrite));
  }

  // Returns true when the stream has finished.
  bool OnEvent(Stream* stream, Op op, bool ok) {
    switch (op) {
      case Op::kStart:
        stream->rw->Read(&stream->response, Tag(stream, Op::kRead));
        MaybeWrite(stream);
        return false;
      case Op::kWrite:
        stream->writing = false;
        MaybeWrite(stream);
        return false;
      case Op::kRead: {
        if (!ok) {
          stream->rw->Finish(&stream->status, Tag(stream, Op::kFinish));
          return false;
        }
        const Clock::time_point now = Clock::now();
        stats_->Record(window_, stream->sent.front(), now,
                       CheckTensorBytes(stream->response.embeddings(),
                                        config_.PayloadBytes()),
                       config_);
        stream->sent.pop_front();
        stream->rw->Read(&stream->response, Tag(stream, Op::kRead));
        MaybeWrite(stream);
        return false;
      }
      case Op::kWritesDone:
        return false;
      case Op::kFinish:
        if (!stream->status.ok() && stats_->errors++ == 0) {
          stats_->first_error = FromGrpcStatus(stream->status).ToString();
        }
        return true;
    }
    return false;
  }

  const Config& config_;
  const std::vector<v1::LookupRequest>& pool_;
  const Window& window_;
  ThreadStats* const stats_;
  const int per_stream_;
  grpc::CompletionQueue queue_;
  std::vector<std::unique_ptr<Stream>> streams_;
  size_t next_request_ = 0;
};

absl::Status RunGrpc(const Config& config,
                     const std::vector<std::vector<int64_t>>& ids,
                     const Window& window, std::vector<ThreadStats>* stats) {
  EMBEDDING_ASSIGN_OR_RETURN(
      const std::vector<std::unique_ptr<Stub>> stubs,
      MakeStubs(config, config.address, config.channels));
  const int64_t bytes = config.PayloadBytes();
  if (config.workload == "lookup" || config.workload == "lookup_stream") {
    std::vector<v1::LookupRequest> pool(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      pool[i].set_table(config.table);
      pool[i].mutable_indices()->Add(ids[i].begin(), ids[i].end());
    }
    if (config.workload == "lookup_stream") {
      std::vector<std::thread> threads;
      for (int t = 0; t < config.threads; ++t) {
        threads.emplace_back([&, t] {
          LookupStreams(config, stubs, pool, window, &(*stats)[t]).Run();
        });
      }
      for (std::thread& thread : threads) thread.join();
      return absl::OkStatus();
    }
    RpcKind<v1::LookupRequest, v1::LookupResponse> kind{
        &Stub::PrepareAsyncLookup, [bytes](const v1::LookupResponse& r) {
          return CheckTensorBytes(r.embeddings(), bytes);
        }};
    RunGrpcThreads(config, stubs, kind, pool, window, stats);
  } else if (config.workload == "bag") {
    std::vector<v1::LookupBagRequest> pool(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      pool[i].set_table(config.table);
      pool[i].mutable_indices()->Add(ids[i].begin(), ids[i].end());
      for (int64_t start = 0; start < config.batch; start += config.bag_size) {
        pool[i].add_offsets(start);
      }
      pool[i].set_mode(v1::BAG_MODE_SUM);
    }
    RpcKind<v1::LookupBagRequest, v1::LookupBagResponse> kind{
        &Stub::PrepareAsyncLookupBag, [bytes](const v1::LookupBagResponse& r) {
          return CheckTensorBytes(r.embeddings(), bytes);
        }};
    RunGrpcThreads(config, stubs, kind, pool, window, stats);
  } else {
    std::vector<v1::PushGradientsRequest> pool(ids.size());
    std::mt19937 random(config.id_seed);
    std::uniform_real_distribution<float> value(-1e-3f, 1e-3f);
    for (size_t i = 0; i < ids.size(); ++i) {
      pool[i].set_table(config.table);
      pool[i].mutable_indices()->Add(ids[i].begin(), ids[i].end());
      v1::Tensor* grad = pool[i].mutable_grad();
      grad->set_dtype(v1::DTYPE_FLOAT32);
      grad->add_shape(config.batch);
      grad->add_shape(config.dim);
      std::vector<float> values(config.batch * config.dim);
      for (float& v : values) v = value(random);
      grad->set_data(values.data(), values.size() * sizeof(float));
    }
    RpcKind<v1::PushGradientsRequest, v1::PushGradientsResponse> kind{
        &Stub::PrepareAsyncPushGradients,
        [](const v1::PushGradientsResponse& r) {
          return r.rows_updated() > 0
                     ? absl::OkStatus()
                     : absl::InternalError("push updated no rows");
        }};
    RunGrpcThreads(config, stubs, kind, pool, window, stats);
  }
  return absl::OkStatus();
}

// ------------------------------------------------- ShardedEmbeddingClient --

absl::StatusOr<std::unique_ptr<ShardedEmbeddingClient>> ConnectCluster(
    const Config& config) {
  return ShardedEmbeddingClient::Connect(absl::StrSplit(config.address, ','),
                                         config.client);
}

// Creates the workload's table on every shard unless it exists.
absl::Status EnsureClusterTable(const ShardedEmbeddingClient& client,
                                const Config& config) {
  absl::StatusOr<v1::TableInfo> info = client.GetTable(config.table);
  if (info.ok()) {
    if (info->spec().num_embeddings() != config.table_rows ||
        info->spec().embedding_dim() != config.dim) {
      return absl::FailedPreconditionError(
          absl::StrCat("table ", config.table, " exists with another size"));
    }
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(info.status())) return info.status();
  if (!config.setup) {
    return absl::NotFoundError(
        absl::StrCat("table ", config.table, " does not exist (--nosetup)"));
  }
  v1::TableSpec spec;
  spec.set_name(config.table);
  spec.set_num_embeddings(config.table_rows);
  spec.set_embedding_dim(config.dim);
  spec.set_seed(config.seed);
  if (config.IsPush()) {
    OptimizerToProto(DefaultOptimizerSpec(config.PushOptimizer()->kind),
                     spec.mutable_optimizer());
  }
  CallOptions call;
  call.timeout = absl::Seconds(300);
  return client.CreateTable(spec, call).status();
}

absl::StatusOr<std::string> ClusterGather(const ShardedEmbeddingClient& client,
                                          const Config& config,
                                          const std::vector<int64_t>& ids) {
  EMBEDDING_ASSIGN_OR_RETURN(const FloatTensor rows,
                             client.Lookup(config.table, ids));
  return std::string(reinterpret_cast<const char*>(rows.data.data()),
                     rows.data.size() * sizeof(float));
}

// One call of the workload through the client library. Lookups land in
// `rows`, the caller's buffer reused from call to call, as a serving loop
// would keep it: a fresh 1 MiB result per call would cost the page faults
// of new memory each time (glibc hands such blocks back to the kernel).
absl::Status ClusterCall(const ShardedEmbeddingClient& client,
                         const Config& config, const std::vector<int64_t>& ids,
                         absl::Span<const int64_t> offsets,
                         absl::Span<const float> grad, FloatTensor* rows) {
  if (config.workload == "lookup") {
    return client.LookupInto(config.table, ids, rows);
  }
  if (config.workload == "bag") {
    Bags bags;
    bags.indices = ids;
    bags.offsets = offsets;
    bags.mode = v1::BAG_MODE_SUM;
    return client.LookupBag(config.table, bags).status();
  }
  EMBEDDING_ASSIGN_OR_RETURN(const PushGradientsResult pushed,
                             client.PushGradients(config.table, ids, grad));
  return pushed.rows_updated > 0 ? absl::OkStatus()
                                 : absl::InternalError("push updated no rows");
}

// threads x outstanding callers, each with one call in flight (the library
// is synchronous per call; each call fans out to the shards at once).
absl::Status RunCluster(const ShardedEmbeddingClient& client,
                        const Config& config,
                        const std::vector<std::vector<int64_t>>& ids,
                        const Window& window, std::vector<ThreadStats>* stats) {
  std::vector<int64_t> offsets;
  for (int64_t start = 0; start < config.batch; start += config.bag_size) {
    offsets.push_back(start);
  }
  std::vector<float> grad;
  if (config.IsPush()) {
    std::mt19937 random(config.id_seed);
    std::uniform_real_distribution<float> value(-1e-3f, 1e-3f);
    grad.resize(config.batch * config.dim);
    for (float& v : grad) v = value(random);
  }
  const int callers = config.threads * config.outstanding;
  std::vector<ThreadStats> caller_stats(callers);
  std::vector<std::thread> threads;
  for (int c = 0; c < callers; ++c) {
    threads.emplace_back([&, c] {
      FloatTensor rows;
      for (size_t next = c * 13; Clock::now() < window.end; ++next) {
        const Clock::time_point start = Clock::now();
        const absl::Status status = ClusterCall(
            client, config, ids[next % ids.size()], offsets, grad, &rows);
        caller_stats[c].Record(window, start, Clock::now(), status, config);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // Each thread's stats gather its callers'.
  for (int c = 0; c < callers; ++c) {
    ThreadStats& into = (*stats)[c % config.threads];
    const ThreadStats& from = caller_stats[c];
    into.requests += from.requests;
    into.rows += from.rows;
    into.payload_bytes += from.payload_bytes;
    if (into.errors == 0 && from.errors > 0)
      into.first_error = from.first_error;
    into.errors += from.errors;
    into.latencies_ns.insert(into.latencies_ns.end(), from.latencies_ns.begin(),
                             from.latencies_ns.end());
  }
  return absl::OkStatus();
}

// --------------------------------------------------------------- Redis ----

struct RedisDeleter {
  void operator()(redisContext* context) const { redisFree(context); }
};
using RedisConnection = std::unique_ptr<redisContext, RedisDeleter>;
struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

absl::StatusOr<RedisConnection> ConnectRedis(const std::string& address) {
  std::vector<std::string> parts = absl::StrSplit(address, ':');
  int port = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad --redis_address ", address));
  }
  const timeval timeout{10, 0};
  RedisConnection connection(
      redisConnectWithTimeout(parts[0].c_str(), port, timeout));
  if (connection == nullptr || connection->err != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot connect to redis at ", address, ": ",
        connection == nullptr ? "out of memory" : connection->errstr));
  }
  return connection;
}

absl::StatusOr<RedisReply> RedisGetReply(redisContext* connection) {
  void* raw = nullptr;
  if (redisGetReply(connection, &raw) != REDIS_OK) {
    return absl::UnavailableError(
        absl::StrCat("redis connection: ", connection->errstr));
  }
  RedisReply reply(static_cast<redisReply*>(raw));
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(absl::StrCat("redis: ", reply->str));
  }
  return reply;
}

std::string RedisLoadedKey(const Config& config) {
  return absl::StrCat("bench:loaded:", config.table_rows, "x", config.dim, ":s",
                      config.seed);
}

// Stores every row as a binary value under its decimal id, in pipelined MSETs,
// unless a marker says this table is already loaded.
absl::Status EnsureRedisRows(const Config& config) {
  EMBEDDING_ASSIGN_OR_RETURN(const RedisConnection connection,
                             ConnectRedis(config.redis_address));
  redisContext* c = connection.get();
  const std::string marker = RedisLoadedKey(config);
  {
    redisAppendCommand(c, "EXISTS %b", marker.data(), marker.size());
    EMBEDDING_ASSIGN_OR_RETURN(const RedisReply reply, RedisGetReply(c));
    if (reply->integer == 1) return absl::OkStatus();
  }
  if (!config.setup) {
    return absl::NotFoundError(
        "redis holds no rows for this table (--nosetup)");
  }
  constexpr int64_t kRowsPerCommand = 1000;
  constexpr int64_t kCommandsInFlight = 16;
  const size_t row_bytes = config.dim * sizeof(float);
  std::vector<float> rows(kRowsPerCommand * config.dim);
  std::vector<std::string> keys(kRowsPerCommand);
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  int64_t pending = 0;
  // Reads the replies of the commands sent so far.
  auto drain = [&]() -> absl::Status {
    for (; pending > 0; --pending) {
      EMBEDDING_RETURN_IF_ERROR(RedisGetReply(c).status());
    }
    return absl::OkStatus();
  };
  for (int64_t first = 0; first < config.table_rows; first += kRowsPerCommand) {
    const int64_t count = std::min(kRowsPerCommand, config.table_rows - first);
    argv.assign(1, "MSET");
    lengths.assign(1, 4);
    for (int64_t i = 0; i < count; ++i) {
      FillRow(DefaultInitializer(), config.seed, first + i, config.dim,
              &rows[i * config.dim]);
      keys[i] = absl::StrCat(first + i);
      argv.push_back(keys[i].data());
      lengths.push_back(keys[i].size());
      argv.push_back(reinterpret_cast<const char*>(&rows[i * config.dim]));
      lengths.push_back(row_bytes);
    }
    redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(),
                           lengths.data());
    // hiredis copies the arguments into its output buffer, so rows and keys
    // may be reused at once.
    if (++pending == kCommandsInFlight) EMBEDDING_RETURN_IF_ERROR(drain());
  }
  EMBEDDING_RETURN_IF_ERROR(drain());
  redisAppendCommand(c, "SET %b 1", marker.data(), marker.size());
  return RedisGetReply(c).status();
}

// One MGET command, pre-encoded.
struct RedisRequest {
  std::vector<std::string> keys;
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
};

RedisRequest MakeRedisRequest(const std::vector<int64_t>& ids) {
  RedisRequest request;
  request.keys.reserve(ids.size());
  for (int64_t id : ids) request.keys.push_back(absl::StrCat(id));
  request.argv.push_back("MGET");
  request.lengths.push_back(4);
  for (const std::string& key : request.keys) {
    request.argv.push_back(key.data());
    request.lengths.push_back(key.size());
  }
  return request;
}

// Copies an MGET reply into one [batch, dim] buffer, as a client would.
absl::Status GatherRedisReply(const redisReply& reply, size_t row_bytes,
                              char* out) {
  if (reply.type != REDIS_REPLY_ARRAY) {
    return absl::InternalError("MGET did not return an array");
  }
  for (size_t i = 0; i < reply.elements; ++i) {
    const redisReply* element = reply.element[i];
    if (element->type != REDIS_REPLY_STRING ||
        static_cast<size_t>(element->len) != row_bytes) {
      return absl::InternalError(
          absl::StrCat("MGET element ", i, " is missing or of wrong size"));
    }
    std::memcpy(out + i * row_bytes, element->str, row_bytes);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RedisGather(const Config& config,
                                        const std::vector<int64_t>& ids) {
  EMBEDDING_ASSIGN_OR_RETURN(const RedisConnection connection,
                             ConnectRedis(config.redis_address));
  RedisRequest request = MakeRedisRequest(ids);
  redisAppendCommandArgv(connection.get(),
                         static_cast<int>(request.argv.size()),
                         request.argv.data(), request.lengths.data());
  EMBEDDING_ASSIGN_OR_RETURN(const RedisReply reply,
                             RedisGetReply(connection.get()));
  const size_t row_bytes = config.dim * sizeof(float);
  std::string out(ids.size() * row_bytes, '\0');
  EMBEDDING_RETURN_IF_ERROR(GatherRedisReply(*reply, row_bytes, out.data()));
  return out;
}

// One connection per thread, `outstanding` MGETs pipelined on it.
void RunRedisThread(int thread_index, const Config& config,
                    const std::vector<RedisRequest>& pool, const Window& window,
                    ThreadStats* stats) {
  absl::StatusOr<RedisConnection> connection =
      ConnectRedis(config.redis_address);
  if (!connection.ok()) {
    stats->errors = 1;
    stats->first_error = connection.status().ToString();
    return;
  }
  redisContext* c = connection->get();
  const size_t row_bytes = config.dim * sizeof(float);
  std::vector<char> out(config.batch * row_bytes);
  size_t next_request = thread_index * 13;
  std::deque<Clock::time_point> starts;
  auto issue = [&] {
    const RedisRequest& request = pool[next_request++ % pool.size()];
    // hiredis 0.14 takes non-const argv but does not write it.
    redisAppendCommandArgv(c, static_cast<int>(request.argv.size()),
                           const_cast<const char**>(request.argv.data()),
                           request.lengths.data());
    starts.push_back(Clock::now());
  };
  for (int i = 0; i < config.outstanding; ++i) issue();
  while (!starts.empty()) {
    absl::StatusOr<RedisReply> reply = RedisGetReply(c);
    const Clock::time_point now = Clock::now();
    absl::Status status = reply.status();
    if (status.ok()) status = GatherRedisReply(**reply, row_bytes, out.data());
    stats->Record(window, starts.front(), now, status, config);
    starts.pop_front();
    if (!reply.ok()) break;  // The connection is unusable.
    if (now < window.end) issue();
  }
}

absl::Status RunRedis(const Config& config,
                      const std::vector<std::vector<int64_t>>& ids,
                      const Window& window, std::vector<ThreadStats>* stats) {
  std::vector<RedisRequest> pool;
  for (const std::vector<int64_t>& batch : ids) {
    pool.push_back(MakeRedisRequest(batch));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < config.threads; ++t) {
    threads.emplace_back(
        [&, t] { RunRedisThread(t, config, pool, window, &(*stats)[t]); });
  }
  for (std::thread& thread : threads) thread.join();
  return absl::OkStatus();
}

// --------------------------------------------------------------- Local ----

std::vector<float> MakeLocalTable(const Config& config) {
  std::vector<float> table(config.table_rows * config.dim);
  for (int64_t row = 0; row < config.table_rows; ++row) {
    FillRow(DefaultInitializer(), config.seed, row, config.dim,
            &table[row * config.dim]);
  }
  return table;
}

void LocalGather(const std::vector<float>& table, int64_t dim,
                 const std::vector<int64_t>& ids, char* out) {
  const size_t row_bytes = dim * sizeof(float);
  for (size_t i = 0; i < ids.size(); ++i) {
    std::memcpy(out + i * row_bytes, &table[ids[i] * dim], row_bytes);
  }
}

absl::Status RunLocal(const Config& config, const std::vector<float>& table,
                      const std::vector<std::vector<int64_t>>& ids,
                      const Window& window, std::vector<ThreadStats>* stats) {
  std::vector<std::thread> threads;
  for (int t = 0; t < config.threads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<char> out(config.batch * config.dim * sizeof(float));
      size_t next = t * 13;
      while (true) {
        const Clock::time_point start = Clock::now();
        if (start >= window.end) break;
        LocalGather(table, config.dim, ids[next++ % ids.size()], out.data());
        // Keeps the copy from being optimised away.
        asm volatile("" : : "r"(out.data()) : "memory");
        (*stats)[t].Record(window, start, Clock::now(), absl::OkStatus(),
                           config);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return absl::OkStatus();
}

// -------------------------------------------------------------- Report ----

double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1,
                            static_cast<size_t>(q * (sorted.size() - 1) + 0.5));
  return sorted[i] / 1e3;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += absl::StrFormat("\\u%04x", ch);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string Report(const Config& config, const std::vector<ThreadStats>& stats,
                   double seconds, const std::string& verified) {
  ThreadStats total;
  for (const ThreadStats& s : stats) {
    total.requests += s.requests;
    total.rows += s.rows;
    total.errors += s.errors;
    total.dropped += s.dropped;
    total.payload_bytes += s.payload_bytes;
    total.latencies_ns.insert(total.latencies_ns.end(), s.latencies_ns.begin(),
                              s.latencies_ns.end());
    if (total.first_error.empty()) total.first_error = s.first_error;
  }
  std::sort(total.latencies_ns.begin(), total.latencies_ns.end());
  double mean = 0;
  for (int64_t ns : total.latencies_ns) mean += ns / 1e3;
  if (!total.latencies_ns.empty()) mean /= total.latencies_ns.size();
  const double max =
      total.latencies_ns.empty() ? 0 : total.latencies_ns.back() / 1e3;
  return absl::StrFormat(
      "{\"target\": %s, \"workload\": %s, \"table\": %s, \"table_rows\": %d, "
      "\"dim\": %d, \"batch\": %d, \"bag_size\": %d, \"threads\": %d, "
      "\"channels\": %d, \"outstanding\": %d, \"mode\": %s, \"rate\": %g, "
      "\"duration_s\": %.6f, \"requests\": %d, \"rows\": %d, \"errors\": %d, "
      "\"dropped\": %d, \"payload_bytes\": %d, \"rows_per_s\": %.1f, "
      "\"requests_per_s\": %.1f, \"payload_mb_per_s\": %.3f, "
      "\"latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f, "
      "\"mean\": %.1f, \"max\": %.1f}, \"verified\": %s, \"first_error\": "
      "%s}",
      JsonString(config.target), JsonString(config.workload),
      JsonString(config.table), config.table_rows, config.dim, config.batch,
      config.bag_size, config.threads, config.channels, config.outstanding,
      JsonString(config.rate > 0 ? "open" : "closed"), config.rate, seconds,
      total.requests, total.rows, total.errors, total.dropped,
      total.payload_bytes, total.rows / seconds, total.requests / seconds,
      total.payload_bytes / seconds / 1e6, Percentile(total.latencies_ns, 0.5),
      Percentile(total.latencies_ns, 0.99),
      Percentile(total.latencies_ns, 0.999), mean, max, verified,
      JsonString(total.first_error));
}

absl::StatusOr<Config> ConfigFromFlags() {
  Config c;
  c.target = absl::GetFlag(FLAGS_target);
  c.address = absl::GetFlag(FLAGS_address);
  c.redis_address = absl::GetFlag(FLAGS_redis_address);
  c.workload = absl::GetFlag(FLAGS_workload);
  c.table_rows = absl::GetFlag(FLAGS_table_rows);
  c.dim = absl::GetFlag(FLAGS_dim);
  c.batch = absl::GetFlag(FLAGS_batch);
  c.bag_size = absl::GetFlag(FLAGS_bag_size);
  c.threads = absl::GetFlag(FLAGS_threads);
  c.channels = absl::GetFlag(FLAGS_channels);
  c.outstanding = absl::GetFlag(FLAGS_outstanding);
  c.rate = absl::GetFlag(FLAGS_rate);
  c.max_outstanding = absl::GetFlag(FLAGS_max_outstanding);
  c.duration_s = absl::GetFlag(FLAGS_duration_s);
  c.warmup_s = absl::GetFlag(FLAGS_warmup_s);
  c.setup = absl::GetFlag(FLAGS_setup);
  c.verify_address = absl::GetFlag(FLAGS_verify_address);
  c.client_library =
      absl::GetFlag(FLAGS_client_library) || absl::StrContains(c.address, ',');
  c.seed = absl::GetFlag(FLAGS_seed);
  c.id_seed = absl::GetFlag(FLAGS_id_seed);
  c.request_pool = absl::GetFlag(FLAGS_request_pool);
  c.client.max_message_bytes = std::numeric_limits<int>::max();
  c.client.default_timeout = absl::Seconds(60);
  // The token and TLS apply to every gRPC address of the run (--address,
  // --verify_address).
  EMBEDDING_ASSIGN_OR_RETURN(c.client.security,
                             ClientSecurityOptionsFromFlags());
  c.contexts = std::make_shared<const CallContextPreparer>(c.client);
  const bool known_target = c.target == "service" || c.target == "bare" ||
                            c.target == "redis" || c.target == "local";
  const bool known_workload = c.workload == "lookup" ||
                              c.workload == "lookup_stream" ||
                              c.workload == "bag" || c.PushOptimizer();
  if (!known_target || !known_workload) {
    return absl::InvalidArgumentError(
        "--target must be service, bare, redis or local and --workload "
        "lookup, lookup_stream, bag or push_OPTIMIZER (push_sgd, "
        "push_adagrad, ...)");
  }
  if (c.workload == "lookup_stream" && c.rate > 0) {
    return absl::InvalidArgumentError("lookup_stream is closed loop only");
  }
  if (c.workload != "lookup" && c.target != "service") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--workload=", c.workload, " runs against --target=service only"));
  }
  if (c.table_rows <= 0 || c.dim <= 0 || c.batch <= 0 || c.bag_size <= 0 ||
      c.threads <= 0 || c.channels <= 0 || c.outstanding <= 0 || c.rate < 0 ||
      c.max_outstanding <= 0 || c.duration_s <= 0 || c.warmup_s < 0) {
    return absl::InvalidArgumentError(
        "sizes, counts and durations must be positive");
  }
  if (c.client_library &&
      (c.target != "service" || c.rate > 0 || c.workload == "lookup_stream")) {
    return absl::InvalidArgumentError(
        "several addresses (or --client_library) are for --target=service, "
        "closed loop, lookup, bag or push workloads");
  }
  if (c.rate > 0 && (c.target == "redis" || c.target == "local")) {
    return absl::InvalidArgumentError(
        "open loop (--rate) is for the gRPC targets only");
  }
  c.table = absl::GetFlag(FLAGS_table);
  if (c.table.empty()) {
    const std::string kind = c.IsPush() ? c.workload : "lookup";
    c.table = absl::StrCat("bench_", kind, "_", c.table_rows, "x", c.dim, "_s",
                           c.seed);
  }
  return c;
}

int Main() {
  absl::StatusOr<Config> parsed = ConfigFromFlags();
  if (!parsed.ok()) {
    std::cerr << "embedding_bench: " << parsed.status().message() << "\n";
    return 2;
  }
  const Config& config = *parsed;
  const std::vector<std::vector<int64_t>> ids = MakeIdPool(config);

  // Set up the target, then optionally check it returns the anchor's bytes.
  std::vector<float> local_table;
  std::unique_ptr<Stub> setup_stub;
  absl::Status status;
  std::unique_ptr<ShardedEmbeddingClient> cluster;
  if (config.client_library) {
    absl::StatusOr<std::unique_ptr<ShardedEmbeddingClient>> connected =
        ConnectCluster(config);
    status = connected.status();
    if (connected.ok()) {
      cluster = *std::move(connected);
      status = EnsureClusterTable(*cluster, config);
    }
  } else if (config.target == "service" || config.target == "bare") {
    absl::StatusOr<std::vector<std::unique_ptr<Stub>>> stubs =
        MakeStubs(config, config.address, 1);
    status = stubs.status();
    if (stubs.ok()) {
      setup_stub = std::move((*stubs)[0]);
      status = EnsureGrpcTable(*setup_stub, config);
    }
  } else if (config.target == "redis") {
    status = EnsureRedisRows(config);
  } else {
    local_table = MakeLocalTable(config);
  }
  if (!status.ok()) {
    std::cerr << "embedding_bench: setup failed: " << status << "\n";
    return 1;
  }
  std::string verified = "null";
  if (!config.verify_address.empty() && config.workload == "lookup") {
    const absl::StatusOr<std::string> expected =
        ReferenceGather(config, ids[0]);
    absl::StatusOr<std::string> actual;
    if (cluster != nullptr) {
      actual = ClusterGather(*cluster, config, ids[0]);
    } else if (setup_stub != nullptr) {
      actual = GrpcGather(*setup_stub, config, ids[0]);
    } else if (config.target == "redis") {
      actual = RedisGather(config, ids[0]);
    } else {
      actual = std::string(config.batch * config.dim * sizeof(float), '\0');
      LocalGather(local_table, config.dim, ids[0], actual->data());
    }
    if (!expected.ok() || !actual.ok()) {
      std::cerr << "embedding_bench: verification lookup failed: "
                << (expected.ok() ? actual.status() : expected.status())
                << "\n";
      return 1;
    }
    verified = *expected == *actual ? "true" : "false";
  }

  std::vector<ThreadStats> stats(config.threads);
  Window window;
  window.start =
      Clock::now() +
      std::chrono::microseconds(static_cast<int64_t>(config.warmup_s * 1e6));
  window.end =
      window.start +
      std::chrono::microseconds(static_cast<int64_t>(config.duration_s * 1e6));
  if (cluster != nullptr) {
    status = RunCluster(*cluster, config, ids, window, &stats);
  } else if (config.target == "service" || config.target == "bare") {
    status = RunGrpc(config, ids, window, &stats);
  } else if (config.target == "redis") {
    status = RunRedis(config, ids, window, &stats);
  } else {
    status = RunLocal(config, local_table, ids, window, &stats);
  }
  if (!status.ok()) {
    std::cerr << "embedding_bench: " << status << "\n";
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(window.end - window.start).count();
  const std::string json = Report(config, stats, seconds, verified);
  const std::string path = absl::GetFlag(FLAGS_json);
  if (path == "-") {
    std::cout << json << std::endl;
  } else if (!path.empty()) {
    std::ofstream out(path);
    out << json << "\n";
    if (!out) {
      std::cerr << "embedding_bench: cannot write " << path << "\n";
      return 1;
    }
  }
  std::cerr << absl::StrFormat("%s %s batch %d: %s\n", config.target,
                               config.workload, config.batch, json);
  return 0;
}

}  // namespace
}  // namespace embedding

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load generator for the Embedding Service and its anchors.\n"
      "usage: embedding_bench --target=service|bare|redis|local [flags]");
  absl::FlagsUsageConfig usage_config;
  // --help lists this file's flags and the token and TLS ones.
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "embedding_bench.cc") ||
           embedding::DefinesClientSecurityFlags(file);
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::ParseCommandLine(argc, argv);
  // As a client looping over large batches should (and the Python client
  // does for itself): without it every 1 MiB call faults its pages in.
  embedding::KeepLargeBuffersOnHeap();
  return embedding::Main();
}

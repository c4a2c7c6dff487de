// ShardedEmbeddingClient: the EmbeddingClient API over a table split across
// M servers. Server k (addresses[k]) holds the global rows g with
// g % M == k (common/shard_layout.h); every server takes and returns global
// row ids. The client routes each index to its shard, sends the sub-requests
// of one call to all the shards involved at once (asynchronous gRPC, no
// thread per call), and reassembles the results in the caller's order, so
// results equal those of one server holding the whole table.
//
//   auto client = embedding::ShardedEmbeddingClient::Connect(
//       {"10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"});
//   if (!client.ok()) return client.status();
//   auto info = (*client)->CreateTable(spec);       // on every shard
//   auto rows = (*client)->Lookup("users", {1, 2, 3});
//
// A dynamic table (spec.dynamic set) routes by hash instead: server k holds
// the ids whose SplitMix64(id) % M is k (ShardLayout::Routing::kHash), any
// int64 but INT64_MIN, which the client refuses as the server does
// (INVALID_ARGUMENT naming the position in the caller's batch). Its merged
// TableInfo sums the shards' DynamicStats, its pushes' results their
// rows_admitted, rows_dropped and rows_evicted. What the client cannot split
// by shard for a dynamic table yet is UNIMPLEMENTED naming the table as
// dynamic: bags, range reads and writes (ReadRowRange*, WriteRowRange).
//
// With one address it passes every call through to one EmbeddingClient,
// with no cluster checks (so it can talk to a single shard too).
//
// Cluster check, per shard: the first use of a table asks every shard for it
// (in parallel) and takes the spec from the lowest shard that answers;
// shard k must report shard_index k, shard_count M and that same spec, else
// FAILED_PRECONDITION naming the server and what differs ("shard K
// (ADDRESS): reports shard_index I of shard_count C, expected K of M",
// "shard K (ADDRESS): table T differs from shard 0 in FIELD: VALUE vs
// VALUE0"). A shard that did not answer (UNAVAILABLE, DEADLINE_EXCEEDED) is
// checked the first time a call needs it. Several failing shards give one
// error: the first one's code, every shard's message, "; "-separated. The
// spec and the checked shards are kept per table until DeleteTable,
// CreateTable or SetOptimizer of that name through this client.
//
// Errors from a shard keep the server's code, with the message prefixed
// "shard K (ADDRESS): ". A shard that is down fails only the calls that need
// it (UNAVAILABLE naming it), also in a client made while it was down.
//
// Pushes reach every shard (an empty sub-push where a shard holds none of
// the rows) so each shard counts the same optimizer steps as one server
// would; all sub-pushes carry the client's id and the same sequence, so a
// retry with PushGradientsOptions::sequence set applies only where the push
// is missing. Bags are pooled on the client from a sharded lookup of their
// rows, with the server's arithmetic (client/cpp/bag_pooling.h).
//
// Bulk reads (ReadRows, ranges) go shard by shard, each in the bulk-sized
// chunks of EmbeddingClient; writes go to the shards at once, chunk by
// chunk.
//
// Thread-safe: may be shared by many threads without external
// synchronization (immutable clients; the table cache behind a mutex).
#ifndef CLIENT_CPP_SHARDED_CLIENT_H_
#define CLIENT_CPP_SHARDED_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/shard_fanout.h"
#include "common/shard_layout.h"

namespace embedding {

class ShardedEmbeddingClient {
 public:
  // Opens one channel per address, in shard-index order (lazily, as
  // EmbeddingClient::Connect). All shards' pushes carry one client id.
  // INVALID_ARGUMENT for no address, an empty one or bad options.
  static absl::StatusOr<std::unique_ptr<ShardedEmbeddingClient>> Connect(
      std::vector<std::string> addresses, const ClientOptions& options = {});

  // Wraps clients of the shards, in shard-index order, with their addresses
  // (for messages). REQUIRES: as many of each, at least one.
  ShardedEmbeddingClient(std::vector<std::unique_ptr<EmbeddingClient>> shards,
                         std::vector<std::string> addresses);

  ShardedEmbeddingClient(const ShardedEmbeddingClient&) = delete;
  ShardedEmbeddingClient& operator=(const ShardedEmbeddingClient&) = delete;

  int shard_count() const { return static_cast<int>(shards_.size()); }
  const std::vector<std::string>& addresses() const { return addresses_; }
  const std::string& client_id() const { return shards_[0]->client_id(); }
  // The client of shard `k`, e.g. for a single-server tool.
  const EmbeddingClient& shard(int k) const { return *shards_[k]; }

  // Creates the table on every shard (weights: the global table; each
  // shard keeps its rows) and checks the cluster as above. If any shard
  // fails or mismatches, deletes the table on the shards where this call
  // created it and returns that shard's error. Codes as
  // EmbeddingClient::CreateTable, plus FAILED_PRECONDITION.
  absl::StatusOr<v1::TableInfo> CreateTable(const v1::TableSpec& spec,
                                            const CallOptions& call = {}) const;
  absl::StatusOr<v1::TableInfo> CreateTable(
      const v1::TableSpec& spec, absl::Span<const float> initial_weights,
      const CallOptions& call = {}) const;

  // One TableInfo for the whole table: the global spec (shard_index 0,
  // shard_count M), rows, memory and versions summed over the shards, the
  // largest step (all equal unless a push was half applied), a dynamic
  // table's DynamicStats summed (capacity too: the cluster's), and
  // last_checkpoint when every shard has one (versions summed, earliest
  // time, shard 0's path). NOT_FOUND; FAILED_PRECONDITION.
  absl::StatusOr<v1::TableInfo> GetTable(absl::string_view name,
                                         const CallOptions& call = {}) const;
  // Every table of the cluster, merged by name (as GetTable), sorted; a
  // table missing on some shard is left out.
  absl::StatusOr<std::vector<v1::TableInfo>> ListTables(
      const CallOptions& call = {}) const;
  // Deletes the table on every shard, all of them tried; the failures are
  // reported together (the first one's code). NOT_FOUND.
  absl::Status DeleteTable(absl::string_view name,
                           const CallOptions& call = {}) const;

  // As EmbeddingClient, on the rows' shards only.
  absl::StatusOr<FloatTensor> Lookup(absl::string_view table,
                                     absl::Span<const int64_t> indices,
                                     const LookupOptions& options = {},
                                     const CallOptions& call = {}) const;
  // As EmbeddingClient::LookupInto: the rows land in `result`'s buffer,
  // memory already touched, instead of a fresh allocation per call.
  absl::Status LookupInto(absl::string_view table,
                          absl::Span<const int64_t> indices,
                          FloatTensor* result,
                          const LookupOptions& options = {},
                          const CallOptions& call = {}) const;
  absl::StatusOr<BagLookupResult> LookupBag(
      absl::string_view table, const Bags& bags,
      v1::DType dtype = kDefaultLookupDType,
      const CallOptions& call = {}) const;

  // As EmbeddingClient; every shard gets a sub-push. The result sums
  // rows_updated, rows_admitted, rows_dropped, rows_evicted and the shards'
  // versions; duplicate only when every shard had already applied the push.
  absl::StatusOr<PushGradientsResult> PushGradients(
      absl::string_view table, absl::Span<const int64_t> indices,
      absl::Span<const float> grad, const PushGradientsOptions& push = {},
      const CallOptions& call = {}) const;
  absl::StatusOr<PushGradientsResult> PushBagGradients(
      absl::string_view table, const Bags& bags, absl::Span<const float> grad,
      absl::Span<const int64_t> max_indices = {},
      const PushGradientsOptions& push = {},
      const CallOptions& call = {}) const;

  // As EmbeddingClient, routed by row: the shards' first bulk chunks at
  // once, then their second ones, and so on; a failure stops after its
  // round (earlier chunks stay written) and reports every failing shard.
  // The version is the sum over the shards written.
  absl::StatusOr<WriteResult> WriteRows(absl::string_view table,
                                        absl::Span<const int64_t> indices,
                                        absl::Span<const float> values,
                                        const CallOptions& call = {}) const;
  absl::StatusOr<WriteResult> WriteRowRange(absl::string_view table,
                                            int64_t start_row,
                                            int64_t embedding_dim,
                                            absl::Span<const float> values,
                                            const CallOptions& call = {}) const;

  // As EmbeddingClient, rows in the caller's (or global) order.
  absl::StatusOr<ReadRowsResult> ReadRows(absl::string_view table,
                                          absl::Span<const int64_t> indices,
                                          const CallOptions& call = {}) const;
  absl::StatusOr<ReadRowsResult> ReadRowRange(
      absl::string_view table, int64_t start_row, int64_t end_row,
      const CallOptions& call = {}) const;
  // As EmbeddingClient: chunks of at most one bulk message of rows in
  // global order, each read from every shard and merged before it goes to
  // `sink` (one chunk in memory at a time).
  absl::Status ReadRowRangeInChunks(
      absl::string_view table, int64_t start_row, int64_t end_row,
      absl::FunctionRef<absl::Status(const ReadRowsResult& chunk)> sink,
      const CallOptions& call = {}) const;

  int64_t BulkRows(int64_t embedding_dim, bool with_indices) const {
    return shards_[0]->BulkRows(embedding_dim, with_indices);
  }

  // Broadcast; the failures of all shards reported together. The result
  // merges the shards' replies as GetTable does.
  absl::StatusOr<v1::TableInfo> SetOptimizer(
      absl::string_view table, const v1::Optimizer& optimizer,
      const CallOptions& call = {}) const;
  // Broadcast; one entry per table saved, merged over the shards (rows,
  // bytes and versions summed, the earliest time, shard 0's path).
  absl::StatusOr<v1::SaveCheckpointResponse> SaveCheckpoint(
      absl::Span<const std::string> tables = {}, bool incremental = false,
      const CallOptions& call = {}) const;

  // A table's spec as its reference shard (the lowest that answered)
  // reported it.
  struct CheckedTable {
    v1::TableSpec spec;  // Global: shard_index 0, shard_count M.
    ShardLayout layout;
    int reference_shard = 0;
  };
  // The cache entry of a table: its spec and the shards that passed the
  // check against it.
  struct CachedTable {
    std::shared_ptr<const CheckedTable> table;
    std::vector<bool> checked;  // Per shard.
  };
  using TableInfoCalls =
      std::vector<internal::SubCall<v1::GetTableRequest, v1::TableInfo>>;

  // The checked table and the indices of a call, checked against its rows
  // and split by shard.
  struct RoutedRows {
    std::shared_ptr<const CheckedTable> table;
    internal::ShardRoutes routes;
  };

  bool single() const { return shards_.size() == 1; }
  absl::StatusOr<RoutedRows> CheckAndRoute(absl::string_view name,
                                           absl::Span<const int64_t> indices,
                                           const CallOptions& call) const;
  // The table `name`, from the cache or asked of every shard: the shards
  // that answer are checked, those that are down are left for CheckShards
  // (unless none answers); any other failure is returned.
  absl::StatusOr<std::shared_ptr<const CheckedTable>> Table(
      absl::string_view name, const CallOptions& call) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // GetTable of `name` sent to `shards` at once.
  TableInfoCalls AskTables(absl::string_view name, absl::Span<const int> shards,
                           const CallOptions& call) const;
  // FAILED_PRECONDITION unless `info` says shard k of M with `table`'s spec.
  absl::Status CheckShard(const CheckedTable& table, int k,
                          const v1::TableInfo& info) const;
  // Checks the shards that answered in `calls` (in shard order) against the
  // lowest one's spec and caches the table with them checked.
  absl::StatusOr<std::shared_ptr<const CheckedTable>> CheckCluster(
      absl::string_view name, const TableInfoCalls& calls) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Checks those of `shards` not yet checked for `table` (asked at once);
  // their errors as a call's.
  absl::Status CheckShards(absl::string_view name, const CheckedTable& table,
                           absl::Span<const int> shards,
                           const CallOptions& call) const
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<int> AllShards() const;
  void Forget(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);
  // `status` of shard `k`, its message prefixed with the shard.
  absl::Status ShardError(int k, const absl::Status& status) const;
  // One TableInfo of the whole table from the shards' ones.
  v1::TableInfo Merge(absl::Span<const v1::TableInfo> infos) const;
  // Replaces `out` with the rows `indices` (in range) of a checked table,
  // as float32 in the caller's order (reusing its buffer), each shard asked
  // for its rows at once.
  absl::Status RoutedLookup(const CheckedTable& table, absl::string_view name,
                            absl::Span<const int64_t> indices, v1::DType dtype,
                            const CallOptions& call,
                            std::vector<float>* out) const;
  absl::Status CheckBagCall(const CheckedTable& table, const Bags& bags) const;
  // Sends each shard its rows of a checked push (an empty one where it has
  // none), all with one sequence.
  absl::StatusOr<PushGradientsResult> ShardedPush(
      const CheckedTable& table, absl::string_view name,
      absl::Span<const int64_t> indices, absl::Span<const float> grad,
      const PushGradientsOptions& push, const CallOptions& call) const;
  absl::StatusOr<int64_t> RangeEnd(const CheckedTable& table,
                                   absl::string_view name, int64_t start_row,
                                   int64_t end_row,
                                   const CallOptions& call) const;
  absl::StatusOr<ReadRowsResult> ReadRangeMerged(const CheckedTable& table,
                                                 absl::string_view name,
                                                 int64_t start_row,
                                                 int64_t end_row,
                                                 const CallOptions& call) const;

  const std::vector<std::unique_ptr<EmbeddingClient>> shards_;
  const std::vector<std::string> addresses_;
  // The next push sequence (sub-pushes share it). Relaxed: only the value
  // handed out matters.
  mutable std::atomic<uint64_t> next_sequence_{1};
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, CachedTable> tables_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace embedding

#endif  // CLIENT_CPP_SHARDED_CLIENT_H_

// What the C++ clients check locally for a dynamic table (TableSpec.dynamic
// present: any int64 id but INT64_MIN, rows created by pushes), with the
// server's own messages, so that a sharded client's refusal reads as one
// server's would (positions in the caller's batch, not a shard's).
//
//   EMBEDDING_RETURN_IF_ERROR(CheckDynamicIds(indices));
//   EMBEDDING_RETURN_IF_ERROR(DenseOnly(spec, "read a row range"));
//   absl::StatusOr<ReadRowsResult> rows = ReadHeldRows(client, "users");
//
// Thread-safe (pure functions, and reads through thread-safe clients).
#ifndef CLIENT_CPP_DYNAMIC_TABLE_H_
#define CLIENT_CPP_DYNAMIC_TABLE_H_

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/sharded_client.h"
#include "embedding/v1/embedding_service.pb.h"

namespace embedding {

// The id no dynamic table holds (it marks empty bags on the wire).
inline constexpr int64_t kReservedDynamicId =
    std::numeric_limits<int64_t>::min();

// The server's refusal of CreateTable with weights for a dynamic spec
// (server/core/embedding_table.h, kNoInitialWeightsForDynamicTables).
inline constexpr char kNoInitialWeightsForDynamicTables[] =
    "a dynamic table takes no initial_weights: its rows are created by "
    "pushes, from the initializer";

// INVALID_ARGUMENT "index ID at position P is reserved: no id of a dynamic
// table" for the first kReservedDynamicId in `ids`, as the server says it.
absl::Status CheckDynamicIds(absl::Span<const int64_t> ids);

// UNIMPLEMENTED naming the table as dynamic when `spec` is one: the client
// cannot `what` ("read a row range") of a dynamic table yet. OK otherwise.
absl::Status DenseOnly(const v1::TableSpec& spec, absl::string_view what);

// Every row the dynamic `table` holds, with its id (ReadRows without ids or
// range), in no particular order; retried whole on UNAVAILABLE. Not a
// consistent cut: rows admitted or evicted meanwhile may be missed or
// seen. Codes as ReadRows, plus FAILED_PRECONDITION for a table split over
// several servers (this one holds only some rows) and UNIMPLEMENTED for a
// dense table (ReadRowRange reads it). Over a ShardedEmbeddingClient, every
// shard's rows, shard after shard.
absl::StatusOr<ReadRowsResult> ReadHeldRows(const EmbeddingClient& client,
                                            absl::string_view table,
                                            const CallOptions& call = {});
absl::StatusOr<ReadRowsResult> ReadHeldRows(
    const ShardedEmbeddingClient& client, absl::string_view table,
    const CallOptions& call = {});

}  // namespace embedding

#endif  // CLIENT_CPP_DYNAMIC_TABLE_H_

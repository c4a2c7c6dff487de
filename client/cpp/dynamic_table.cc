#include "client/cpp/dynamic_table.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

// UNIMPLEMENTED for a dense table: ReadHeldRows is of dynamic ones.
absl::Status DynamicOnly(const v1::TableSpec& spec) {
  if (spec.has_dynamic()) return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("table ", QuoteForMessage(spec.name()),
                   " is dense: read its rows by range (ReadRowRange)"));
}

}  // namespace

absl::Status CheckDynamicIds(absl::Span<const int64_t> ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == kReservedDynamicId) {
      return absl::InvalidArgumentError(
          absl::StrCat("index ", ids[i], " at position ", i,
                       " is reserved: no id of a dynamic table"));
    }
  }
  return absl::OkStatus();
}

absl::Status DenseOnly(const v1::TableSpec& spec, absl::string_view what) {
  if (!spec.has_dynamic()) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(
      "table ", QuoteForMessage(spec.name()),
      " is dynamic: this client cannot ", what, " of a dynamic table yet"));
}

absl::StatusOr<ReadRowsResult> ReadHeldRows(const EmbeddingClient& client,
                                            absl::string_view table,
                                            const CallOptions& call) {
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             client.GetTable(table, call));
  const v1::TableSpec& spec = info.spec();
  EMBEDDING_RETURN_IF_ERROR(DynamicOnly(spec));
  if (spec.shard_count() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "table ", QuoteForMessage(spec.name()), " is split over ",
        spec.shard_count(), " servers and this one holds shard ",
        spec.shard_index(), " only; reading every row needs them all"));
  }
  // Without ids, a zero range: the server streams every row it holds.
  EMBEDDING_ASSIGN_OR_RETURN(ReadRowsResult rows,
                             client.ReadRowRange(table, 0, 0, call));
  rows.values.shape = {static_cast<int64_t>(rows.indices.size()),
                       spec.embedding_dim()};
  return rows;
}

absl::StatusOr<ReadRowsResult> ReadHeldRows(
    const ShardedEmbeddingClient& client, absl::string_view table,
    const CallOptions& call) {
  if (client.shard_count() == 1) {
    return ReadHeldRows(client.shard(0), table, call);
  }
  // The cluster check, and the dense refusal.
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             client.GetTable(table, call));
  EMBEDDING_RETURN_IF_ERROR(DynamicOnly(info.spec()));
  ReadRowsResult all;
  for (int k = 0; k < client.shard_count(); ++k) {
    EMBEDDING_ASSIGN_OR_RETURN(ReadRowsResult rows,
                               client.shard(k).ReadRowRange(table, 0, 0, call));
    if (k == 0) {
      all = std::move(rows);
      continue;
    }
    all.indices.insert(all.indices.end(), rows.indices.begin(),
                       rows.indices.end());
    all.values.data.insert(all.values.data.end(), rows.values.data.begin(),
                           rows.values.data.end());
  }
  all.values.shape = {static_cast<int64_t>(all.indices.size()),
                      info.spec().embedding_dim()};
  return all;
}

}  // namespace embedding

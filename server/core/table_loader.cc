#include "server/core/table_loader.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/checked_math.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

absl::Status CheckFinite(absl::Span<const float> values, int64_t width,
                         absl::Span<const int64_t> rows, const char* what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " of row ", rows[i / width], " has a non-finite value (",
          values[i], ") at column ", i % width));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TableLoader>> TableLoader::Create(
    TableSpec spec) {
  EMBEDDING_RETURN_IF_ERROR(ValidateTableSpec(spec));
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<EmbeddingTable> table,
                             EmbeddingTable::Allocate(std::move(spec)));
  EMBEDDING_RETURN_IF_ERROR(table->DenseOnly("load the rows"));
  return std::unique_ptr<TableLoader>(new TableLoader(std::move(table)));
}

TableLoader::TableLoader(std::unique_ptr<EmbeddingTable> table)
    : table_(std::move(table)), put_(table_->local_rows_, false) {}

absl::Status TableLoader::Put(absl::Span<const int64_t> global_rows,
                              absl::Span<const float> weights,
                              absl::Span<const float> state) {
  const int64_t n = static_cast<int64_t>(global_rows.size());
  const int64_t dim = table_->dim_;
  const int64_t state_width = table_->state_width_;
  const std::optional<int64_t> weight_floats = CheckedMul(n, dim);
  const std::optional<int64_t> state_floats = CheckedMul(n, state_width);
  if (weight_floats != static_cast<int64_t>(weights.size()) ||
      state_floats != static_cast<int64_t>(state.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows: ", n, ", weights: ", weights.size(),
                     " values, state: ", state.size(), " values; expected [", n,
                     ", ", dim, "] and [", n, ", ", state_width, "]"));
  }
  EMBEDDING_RETURN_IF_ERROR(table_->ValidateIndices(global_rows, "row"));
  EMBEDDING_RETURN_IF_ERROR(CheckFinite(weights, dim, global_rows, "weights"));
  EMBEDDING_RETURN_IF_ERROR(
      CheckFinite(state, state_width, global_rows, "optimizer state"));
  // Nobody else sees the table yet: no locks needed.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t local = table_->LocalRow(global_rows[i]);
    // Pointers, not [] (hardened, and `state` is empty for SGD).
    std::copy_n(weights.data() + i * dim, dim, table_->RowData(local));
    std::copy_n(state.data() + i * state_width, state_width,
                table_->StateData(local));
    if (!put_[local]) {
      put_[local] = true;
      ++rows_put_;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EmbeddingTable>> TableLoader::Finish(
    const TableMetadata& metadata) && {
  {
    ReaderLock lock(&table_->spec_mu_);
    EMBEDDING_RETURN_IF_ERROR(CheckSameTable(table_->spec_, metadata.spec));
  }
  if (rows_put_ != table_->local_rows_) {
    const int64_t missing =
        std::find(put_.begin(), put_.end(), false) - put_.begin();
    return absl::InvalidArgumentError(
        absl::StrCat("row ", table_->GlobalRow(missing), " is missing (",
                     table_->local_rows_ - rows_put_, " rows missing)"));
  }
  if (metadata.version < 0 || metadata.step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("version ", metadata.version,
                                                   " and step ", metadata.step,
                                                   " must be >= 0"));
  }
  EMBEDDING_RETURN_IF_ERROR(table_->SetOptimizer(metadata.spec.optimizer));
  EMBEDDING_RETURN_IF_ERROR(
      table_->exactly_once_.Import(metadata.exactly_once));
  table_->version_.store(metadata.version, std::memory_order_relaxed);
  table_->step_.store(metadata.step, std::memory_order_relaxed);
  return std::move(table_);
}

}  // namespace embedding

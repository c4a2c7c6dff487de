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
  return std::unique_ptr<TableLoader>(new TableLoader(std::move(table)));
}

TableLoader::TableLoader(std::unique_ptr<EmbeddingTable> table)
    : table_(std::move(table)), put_(table_->local_rows_, false) {}

absl::Status TableLoader::Put(absl::Span<const int64_t> global_rows,
                              absl::Span<const float> weights,
                              absl::Span<const float> state) {
  if (table_->dynamic_ != nullptr) {
    return absl::InvalidArgumentError(
        "the rows of a dynamic table are put by slot, with their ids");
  }
  EMBEDDING_RETURN_IF_ERROR(table_->ValidateIndices(global_rows, "row"));
  std::vector<int64_t> local_rows(global_rows.size());
  for (size_t i = 0; i < global_rows.size(); ++i) {
    local_rows[i] = table_->LocalRow(global_rows[i]);
  }
  EMBEDDING_RETURN_IF_ERROR(CheckRows(global_rows, weights, state));
  StoreRows(local_rows, weights, state);
  return absl::OkStatus();
}

absl::Status TableLoader::PutDynamic(absl::Span<const int64_t> slots,
                                     absl::Span<const DynamicKey> keys,
                                     absl::Span<const float> weights,
                                     absl::Span<const float> state) {
  DynamicRows* dynamic = table_->dynamic_.get();
  if (dynamic == nullptr) {
    return absl::InvalidArgumentError("the table is not dynamic");
  }
  if (keys.size() != slots.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "slots: ", slots.size(), ", keys: ", keys.size(), "; expected equal"));
  }
  std::vector<int64_t> ids;
  ids.reserve(keys.size());
  for (const DynamicKey& key : keys) {
    if (key.id != kReservedId) ids.push_back(key.id);
  }
  EMBEDDING_RETURN_IF_ERROR(table_->ValidateIndices(ids, "id"));
  for (size_t i = 0; i < slots.size(); ++i) {
    EMBEDDING_RETURN_IF_ERROR(dynamic->CheckRestore(slots[i], keys[i].id));
  }
  EMBEDDING_RETURN_IF_ERROR(CheckRows(slots, weights, state));
  StoreRows(slots, weights, state);
  for (size_t i = 0; i < slots.size(); ++i) {
    dynamic->Restore(slots[i], keys[i].id, keys[i].usage);
  }
  return absl::OkStatus();
}

absl::Status TableLoader::PutDynamicIds(absl::Span<const DynamicKey> keys,
                                        absl::Span<const float> weights,
                                        absl::Span<const float> state) {
  DynamicRows* dynamic = table_->dynamic_.get();
  if (dynamic == nullptr) {
    return absl::InvalidArgumentError("the table is not dynamic");
  }
  std::vector<int64_t> ids(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) ids[i] = keys[i].id;
  EMBEDDING_RETURN_IF_ERROR(table_->ValidateIndices(ids, "id"));
  // Checked before RestoreById gives the ids rows.
  EMBEDDING_RETURN_IF_ERROR(CheckRows(ids, weights, state));
  std::vector<int64_t> slots(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    EMBEDDING_ASSIGN_OR_RETURN(slots[i],
                               dynamic->RestoreById(ids[i], keys[i].usage));
  }
  StoreRows(slots, weights, state);
  return absl::OkStatus();
}

absl::Status TableLoader::MergeAdmission(
    const DynamicRows::Admission& admission) {
  if (!admission_.has_value()) {
    admission_ = admission;
    return absl::OkStatus();
  }
  if (admission.counters.size() != admission_->counters.size() ||
      admission.counts.size() != admission_->counts.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "admission sketch of ", admission.counters.size(), " counters and ",
        admission.counts.size(), " stripe counts; the table's has ",
        admission_->counters.size(), " and ", admission_->counts.size()));
  }
  for (size_t i = 0; i < admission.counters.size(); ++i) {
    admission_->counters[i] =
        std::max(admission_->counters[i], admission.counters[i]);
  }
  for (size_t i = 0; i < admission.counts.size(); ++i) {
    admission_->counts[i] =
        std::max(admission_->counts[i], admission.counts[i]);
  }
  return absl::OkStatus();
}

absl::Status TableLoader::CheckRows(absl::Span<const int64_t> names,
                                    absl::Span<const float> weights,
                                    absl::Span<const float> state) const {
  const int64_t n = static_cast<int64_t>(names.size());
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
  EMBEDDING_RETURN_IF_ERROR(CheckFinite(weights, dim, names, "weights"));
  return CheckFinite(state, state_width, names, "optimizer state");
}

void TableLoader::StoreRows(absl::Span<const int64_t> local_rows,
                            absl::Span<const float> weights,
                            absl::Span<const float> state) {
  const int64_t dim = table_->dim_;
  const int64_t state_width = table_->state_width_;
  // Nobody else sees the table yet: no locks needed.
  for (int64_t i = 0; i < static_cast<int64_t>(local_rows.size()); ++i) {
    const int64_t local = local_rows[i];
    // Pointers, not [] (hardened, and `state` is empty for SGD).
    std::copy_n(weights.data() + i * dim, dim, table_->RowData(local));
    std::copy_n(state.data() + i * state_width, state_width,
                table_->StateData(local));
    if (!put_[local]) {
      put_[local] = true;
      ++rows_put_;
    }
  }
}

absl::StatusOr<std::unique_ptr<EmbeddingTable>> TableLoader::Finish(
    const TableMetadata& metadata) && {
  {
    ReaderLock lock(&table_->spec_mu_);
    EMBEDDING_RETURN_IF_ERROR(CheckSameTable(table_->spec_, metadata.spec));
  }
  if (table_->dynamic_ != nullptr) {
    EMBEDDING_RETURN_IF_ERROR(table_->dynamic_->ImportAdmission(
        admission_.has_value() ? *admission_ : metadata.admission));
    table_->dynamic_->CountRestoredRows();
  } else if (rows_put_ != table_->local_rows_) {
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
  table_->pushes_applied_.store(metadata.step, std::memory_order_relaxed);
  return std::move(table_);
}

}  // namespace embedding

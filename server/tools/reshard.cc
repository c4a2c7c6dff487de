#include "server/tools/reshard.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/shard_layout.h"
#include "common/status_macros.h"
#include "server/checkpoint/checkpoint_format.h"
#include "server/checkpoint/checkpoint_writer.h"
#include "server/checkpoint/file_io.h"
#include "server/core/table_loader.h"
#include "server/tools/checkpoint_chain.h"

namespace embedding {
namespace {

using internal::JoinPath;

// The newest chain of one table in each input directory, by shard index.
struct TableInputs {
  std::string table;
  std::vector<CheckpointChain> shards;
};

std::string ShardOf(const TableSpec& spec) {
  return absl::StrCat("shard ", spec.shard_index, " of ", spec.shard_count);
}

std::string ShardDirectory(const std::string& root, int32_t shard) {
  return JoinPath(root, absl::StrCat("shard-", shard));
}

absl::Status CheckOptions(const ReshardOptions& options) {
  if (options.from.empty()) {
    return absl::InvalidArgumentError("no input directory (--from) given");
  }
  if (options.to.empty()) {
    return absl::InvalidArgumentError("no output directory (--to) given");
  }
  if (options.shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shards must be >= 1, got ", options.shards));
  }
  for (size_t i = 0; i < options.from.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      std::error_code error;
      if (std::filesystem::equivalent(options.from[j], options.from[i],
                                      error)) {
        return absl::InvalidArgumentError(
            absl::StrCat("input directory ", options.from[i],
                         " is given twice (inputs ", j, " and ", i, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// OUT must not exist (its parent must) or be an empty directory.
absl::Status CheckOutput(const std::string& to) {
  std::error_code error;
  if (!std::filesystem::exists(to, error)) {
    const std::string parent = std::filesystem::path(to).parent_path().string();
    if (!internal::IsDirectory(parent.empty() ? "." : parent)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the parent of the output directory ", to, " does not exist"));
    }
    return absl::OkStatus();
  }
  if (!internal::IsDirectory(to)) {
    return absl::FailedPreconditionError(
        absl::StrCat("output ", to, " exists and is not a directory"));
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::vector<std::string> entries,
                             internal::ListDirectory(to));
  if (!entries.empty()) {
    std::sort(entries.begin(), entries.end());
    return absl::FailedPreconditionError(absl::StrCat(
        "output directory ", to, " is not empty (it holds \"", entries.front(),
        "\"", entries.size() > 1 ? " and more" : "",
        "); give a new or empty directory"));
  }
  return absl::OkStatus();
}

// The tables asked for, or every table of any input.
absl::StatusOr<std::vector<std::string>> TablesToReshard(
    const ReshardOptions& options) {
  std::set<std::string> found;
  for (const std::string& directory : options.from) {
    EMBEDDING_ASSIGN_OR_RETURN(std::vector<std::string> tables,
                               ListCheckpointTables(directory));
    found.insert(tables.begin(), tables.end());
  }
  if (!options.tables.empty()) {
    for (const std::string& table : options.tables) {
      if (!found.contains(table)) {
        return absl::NotFoundError(absl::StrCat(
            "table \"", table, "\" has no checkpoint in any input directory"));
      }
    }
    const std::set<std::string> asked(options.tables.begin(),
                                      options.tables.end());
    return std::vector<std::string>(asked.begin(), asked.end());
  }
  if (found.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no table checkpoint in ", options.from.front(),
                     options.from.size() > 1 ? " or the other inputs" : ""));
  }
  return std::vector<std::string>(found.begin(), found.end());
}

absl::StatusOr<TableInputs> ReadInputs(const ReshardOptions& options,
                                       const std::string& table) {
  TableInputs inputs{.table = table};
  absl::Status missing;
  for (const std::string& directory : options.from) {
    absl::StatusOr<CheckpointChain> chain = ReadNewestChain(directory, table);
    if (absl::IsNotFound(chain.status())) {
      if (missing.ok()) missing = chain.status();
      continue;
    }
    if (!chain.ok()) return chain.status();
    inputs.shards.push_back(*std::move(chain));
  }
  if (inputs.shards.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "table \"", table, "\" has no complete checkpoint in any input"));
  }
  if (!missing.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        missing.message(),
        ": the inputs are not the shards of one table set (or the table's "
        "first save on that shard never completed)"));
  }
  return inputs;
}

// The inputs are shards 0..M-1 of one layout, in order, each once.
absl::Status CheckShards(const ReshardOptions& options,
                         const TableInputs& inputs) {
  const int32_t given = static_cast<int32_t>(options.from.size());
  const TableSpec& first = inputs.shards.front().table().spec;
  std::vector<int> holder(first.shard_count, -1);  // Input of each shard.
  for (int32_t i = 0; i < given; ++i) {
    const TableSpec& spec = inputs.shards[i].table().spec;
    if (spec.shard_count != first.shard_count) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table \"", inputs.table, "\": ", options.from[0], " holds ",
          ShardOf(first), " but ", options.from[i], " holds ", ShardOf(spec),
          ": not shards of one cluster"));
    }
    if (holder[spec.shard_index] >= 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table \"", inputs.table, "\": ", ShardOf(spec), " is given twice: ",
          options.from[holder[spec.shard_index]], " and ", options.from[i]));
    }
    holder[spec.shard_index] = i;
  }
  if (first.shard_count != given) {
    std::vector<int32_t> missing;
    for (int32_t k = 0; k < first.shard_count; ++k) {
      if (holder[k] < 0) missing.push_back(k);
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "table \"", inputs.table, "\" was saved on ", first.shard_count,
        " shards but ", given, " input directories were given: shard",
        missing.size() > 1 ? "s " : " ", absl::StrJoin(missing, ", "),
        missing.size() > 1 ? " are" : " is", " missing"));
  }
  for (int32_t i = 0; i < given; ++i) {
    const TableSpec& spec = inputs.shards[i].table().spec;
    if (spec.shard_index != i) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table \"", inputs.table, "\": input ", i, " (", options.from[i],
          ") holds ", ShardOf(spec), ", expected shard ", i,
          ": give the directories in shard-index order"));
    }
  }
  return absl::OkStatus();
}

// Every shard has the spec of shard 0 (but for its shard fields), the
// optimizer's hyper-parameters included, and the same step.
absl::Status CheckSameTableAndStep(const ReshardOptions& options,
                                   const TableInputs& inputs) {
  const TableMetadata& first = inputs.shards.front().table();
  for (size_t i = 1; i < inputs.shards.size(); ++i) {
    const TableMetadata& shard = inputs.shards[i].table();
    TableSpec expected = first.spec;
    expected.shard_index = shard.spec.shard_index;
    absl::Status same = CheckSameTable(expected, shard.spec);
    for (const HyperParameter& param :
         InfoOf(first.spec.optimizer.kind).params) {
      if (!same.ok()) break;
      const float want = first.spec.optimizer.*param.field;
      const float got = shard.spec.optimizer.*param.field;
      if (want != got) {
        same = absl::InvalidArgumentError(absl::StrCat(
            "optimizer ", param.name, " is ", got, ", not ", want));
      }
    }
    if (!same.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("table \"", inputs.table, "\": the spec in ",
                       inputs.shards[i].path(), " differs from the one in ",
                       inputs.shards[0].path(), ": ", same.message()));
    }
  }
  for (size_t i = 1; i < inputs.shards.size(); ++i) {
    if (inputs.shards[i].table().step == first.step) continue;
    std::vector<std::string> steps;
    for (size_t k = 0; k < inputs.shards.size(); ++k) {
      steps.push_back(absl::StrCat("shard ", k, " (", options.from[k],
                                   ") step ", inputs.shards[k].table().step));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "table \"", inputs.table,
        "\": the shards disagree on the optimizer "
        "step: ",
        absl::StrJoin(steps, ", "),
        ". A sharded client sends every push to every shard, so they are "
        "equal unless a push failed on some shard or a shard's checkpoint "
        "is older than the others'; the step drives SparseAdam's bias "
        "correction and Adagrad's lr_decay, so merging them would change "
        "the training. Save every shard again once no push is in flight."));
  }
  return absl::OkStatus();
}

// What output shard `shard` of `shards` starts from: the common step, the
// largest version, and the exactly-once windows only if the layout stays.
TableMetadata OutputMetadata(const TableInputs& inputs, int32_t shard,
                             int32_t shards) {
  TableMetadata metadata = inputs.shards.front().table();
  metadata.spec.shard_index = shard;
  metadata.spec.shard_count = shards;
  metadata.exactly_once.clear();
  for (const CheckpointChain& input : inputs.shards) {
    metadata.version = std::max(metadata.version, input.table().version);
  }
  if (shards == static_cast<int32_t>(inputs.shards.size())) {
    metadata.exactly_once = inputs.shards[shard].table().exactly_once;
  }
  return metadata;
}

// Copies the rows that `layout` puts on `shard` from every input shard.
absl::StatusOr<std::unique_ptr<EmbeddingTable>> BuildOutputShard(
    const TableInputs& inputs, const ShardLayout& layout, int32_t shard,
    int64_t* bytes_read) {
  const TableMetadata metadata =
      OutputMetadata(inputs, shard, layout.shard_count());
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<TableLoader> output,
                             TableLoader::Create(metadata.spec));
  const int64_t dim = output->dim();
  const int64_t state_width = output->state_width();
  // About a megabyte of rows at a time.
  const int64_t chunk =
      std::max<int64_t>(1, (int64_t{1} << 20) / ((dim + state_width) * 4 + 8));
  const bool dynamic = metadata.spec.dynamic.has_value();
  std::vector<int64_t> ids(chunk);
  std::vector<float> weights(chunk * dim), state(chunk * state_width);
  // A dynamic table's rows are slots; its ids come with them.
  std::vector<DynamicKey> keys(dynamic ? chunk : 0);
  for (const CheckpointChain& chain : inputs.shards) {
    EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<EmbeddingTable> input,
                               LoadChain(chain, bytes_read));
    EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<TableSnapshot> snapshot,
                               input->BeginSnapshot(std::nullopt));
    if (dynamic) {
      // Ids not admitted yet may be counted on any input shard: every output
      // shard gets the counters' maximum (never late; early as often as on
      // one shard).
      EMBEDDING_RETURN_IF_ERROR(
          output->MergeAdmission(snapshot->metadata().admission));
    }
    while (const int64_t n = snapshot->Read(chunk, ids.data(), weights.data(),
                                            state.data(), keys.data())) {
      // Compacts this output shard's rows to the front, in place.
      int64_t kept = 0;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t id = dynamic ? keys[i].id : ids[i];
        if (layout.OwnerShard(id) != shard) continue;
        ids[kept] = ids[i];
        if (dynamic) keys[kept] = keys[i];
        std::copy_n(weights.data() + i * dim, dim, weights.data() + kept * dim);
        std::copy_n(state.data() + i * state_width, state_width,
                    state.data() + kept * state_width);
        ++kept;
      }
      const auto kept_weights = absl::MakeConstSpan(weights.data(), kept * dim);
      const auto kept_state =
          absl::MakeConstSpan(state.data(), kept * state_width);
      if (dynamic) {
        absl::Status put = output->PutDynamicIds(
            absl::MakeConstSpan(keys.data(), kept), kept_weights, kept_state);
        if (put.code() == absl::StatusCode::kFailedPrecondition) {
          return absl::FailedPreconditionError(absl::StrCat(
              "table \"", inputs.table, "\": output shard ", shard, " of ",
              layout.shard_count(),
              " cannot hold its rows within the table's capacity: ",
              put.message(),
              ". Reshard onto more servers, or recreate the "
              "table with a larger capacity"));
        }
        EMBEDDING_RETURN_IF_ERROR(put);
      } else {
        EMBEDDING_RETURN_IF_ERROR(output->Put(
            absl::MakeConstSpan(ids.data(), kept), kept_weights, kept_state));
      }
    }
  }
  return std::move(*output).Finish(metadata);
}

// Writes `table` as checkpoint 1 (full) of its shard under `root`.
absl::StatusOr<int64_t> WriteOutputShard(const std::string& root, int32_t shard,
                                         const std::string& name,
                                         EmbeddingTable& table,
                                         absl::Time time) {
  const std::string shard_directory = ShardDirectory(root, shard);
  const std::string table_directory =
      JoinPath(shard_directory, internal::TableDirectoryName(name));
  EMBEDDING_RETURN_IF_ERROR(internal::MakeDirectory(table_directory).status());
  EMBEDDING_RETURN_IF_ERROR(internal::SyncDirectory(shard_directory));
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<TableSnapshot> snapshot,
                             table.BeginSnapshot(std::nullopt));
  EMBEDDING_ASSIGN_OR_RETURN(
      internal::WrittenCheckpoint written,
      internal::WriteCheckpoint({.table_directory = table_directory,
                                 .name = {.sequence = 1, .delta = false},
                                 .time = time},
                                std::move(snapshot)));
  return written.bytes;
}

absl::StatusOr<ReshardedTable> ReshardTable(const ReshardOptions& options,
                                            const std::string& table,
                                            const std::string& root) {
  EMBEDDING_ASSIGN_OR_RETURN(const TableInputs inputs,
                             ReadInputs(options, table));
  EMBEDDING_RETURN_IF_ERROR(CheckShards(options, inputs));
  EMBEDDING_RETURN_IF_ERROR(CheckSameTableAndStep(options, inputs));
  // The output's checkpoint is as of the newest input cut.
  absl::Time time = absl::InfinitePast();
  for (const CheckpointChain& input : inputs.shards) {
    time = std::max(time, input.headers.back().time);
  }
  // A dynamic table's ids go to SplitMix64(id) % shards.
  const bool dynamic = inputs.shards.front().table().spec.dynamic.has_value();
  EMBEDDING_ASSIGN_OR_RETURN(
      const ShardLayout layout,
      ShardLayout::Create(options.shards, dynamic
                                              ? ShardLayout::Routing::kHash
                                              : ShardLayout::Routing::kModulo));
  ReshardedTable result{.table = table};
  for (int32_t shard = 0; shard < options.shards; ++shard) {
    EMBEDDING_ASSIGN_OR_RETURN(
        std::unique_ptr<EmbeddingTable> output,
        BuildOutputShard(inputs, layout, shard, &result.bytes_read));
    result.rows += output->Stats().local_rows;
    EMBEDDING_ASSIGN_OR_RETURN(
        const int64_t bytes,
        WriteOutputShard(root, shard, table, *output, time));
    result.bytes_written += bytes;
  }
  const TableMetadata metadata = OutputMetadata(inputs, 0, options.shards);
  result.step = metadata.step;
  result.version = metadata.version;
  return result;
}

// Everything but the final rename, into `root`.
absl::StatusOr<std::vector<ReshardedTable>> ReshardInto(
    const ReshardOptions& options, const std::string& root) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<std::string> tables,
                             TablesToReshard(options));
  EMBEDDING_RETURN_IF_ERROR(internal::MakeDirectory(root).status());
  for (int32_t shard = 0; shard < options.shards; ++shard) {
    EMBEDDING_RETURN_IF_ERROR(
        internal::MakeDirectory(ShardDirectory(root, shard)).status());
  }
  EMBEDDING_RETURN_IF_ERROR(internal::SyncDirectory(root));
  std::vector<ReshardedTable> done;
  for (const std::string& table : tables) {
    absl::StatusOr<ReshardedTable> resharded =
        ReshardTable(options, table, root);
    // A table none of whose first saves completed: a server would not
    // restore it either.
    if (absl::IsNotFound(resharded.status()) && options.tables.empty()) {
      continue;
    }
    if (!resharded.ok()) return resharded.status();
    done.push_back(*std::move(resharded));
  }
  std::sort(done.begin(), done.end(),
            [](const ReshardedTable& a, const ReshardedTable& b) {
              return a.table < b.table;
            });
  return done;
}

}  // namespace

absl::StatusOr<std::vector<ReshardedTable>> Reshard(
    const ReshardOptions& options) {
  EMBEDDING_RETURN_IF_ERROR(CheckOptions(options));
  std::string to = options.to;
  while (to.size() > 1 && to.back() == '/') to.pop_back();
  EMBEDDING_RETURN_IF_ERROR(CheckOutput(to));
  // Built beside OUT and renamed onto it (rename replaces an empty
  // directory), so OUT is never seen half written. A leftover of an
  // interrupted run is ours to remove.
  const std::string temporary = absl::StrCat(to, ".reshard-tmp");
  EMBEDDING_RETURN_IF_ERROR(internal::RemoveTree(temporary));
  absl::StatusOr<std::vector<ReshardedTable>> done =
      ReshardInto(options, temporary);
  if (done.ok()) {
    const std::string parent = std::filesystem::path(to).parent_path().string();
    absl::Status renamed = internal::Rename(temporary, to);
    if (renamed.ok()) {
      renamed = internal::SyncDirectory(parent.empty() ? "." : parent);
      // Not durable: withdrawn, so that OUT is complete or absent.
      if (!renamed.ok()) internal::RemoveTree(to).IgnoreError();
    }
    if (!renamed.ok()) done = renamed;
  }
  if (!done.ok()) internal::RemoveTree(temporary).IgnoreError();
  return done;
}

}  // namespace embedding

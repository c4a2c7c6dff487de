#include "server/tools/checkpoint_chain.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/checkpoint/checkpoint_format.h"
#include "server/checkpoint/file_io.h"
#include "server/core/table_loader.h"

namespace embedding {

using internal::CheckpointHeader;
using internal::CheckpointName;
using internal::JoinPath;

absl::StatusOr<std::vector<std::string>> ListCheckpointTables(
    const std::string& directory) {
  if (!internal::IsDirectory(directory)) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint directory ", directory,
                     " does not exist or is not a ", "directory"));
  }
  absl::StatusOr<std::vector<std::string>> entries =
      internal::ListDirectory(directory);
  if (!entries.ok()) {
    return absl::FailedPreconditionError(entries.status().message());
  }
  std::vector<std::string> tables;
  for (const std::string& entry : *entries) {
    std::optional<std::string> table = internal::TableOfDirectory(entry);
    if (table.has_value() &&
        internal::IsDirectory(JoinPath(directory, entry))) {
      tables.push_back(*std::move(table));
    }
  }
  std::sort(tables.begin(), tables.end());
  return tables;
}

absl::StatusOr<CheckpointChain> ReadNewestChain(const std::string& directory,
                                                const std::string& table) {
  const std::string table_directory =
      JoinPath(directory, internal::TableDirectoryName(table));
  if (!internal::IsDirectory(table_directory)) {
    return absl::NotFoundError(
        absl::StrCat(directory, " has no checkpoint of table \"", table, "\""));
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::vector<std::string> entries,
                             internal::ListDirectory(table_directory));
  std::vector<CheckpointName> names;
  for (const std::string& entry : entries) {
    // Temporaries (saves in progress or interrupted) are not checkpoints.
    if (std::optional<CheckpointName> name = CheckpointName::Parse(entry)) {
      names.push_back(*name);
    }
  }
  std::sort(names.begin(), names.end(),
            [](const CheckpointName& a, const CheckpointName& b) {
              return a.sequence < b.sequence;
            });
  auto full = std::find_if(names.rbegin(), names.rend(),
                           [](const CheckpointName& n) { return !n.delta; });
  if (full == names.rend()) {
    return absl::NotFoundError(absl::StrCat(
        table_directory, " holds no complete full checkpoint of table \"",
        table, "\""));
  }
  CheckpointChain chain;
  EMBEDDING_ASSIGN_OR_RETURN(
      CheckpointHeader full_header,
      internal::ReadCheckpointHeader(table_directory, table, *full));
  chain.headers.push_back(std::move(full_header));
  // Deltas extend the chain in sequence order, each naming the one before
  // as its base; others (of an abandoned chain) are passed over, as the
  // server's restore does.
  for (auto delta = full.base(); delta != names.end(); ++delta) {
    if (!delta->delta) continue;
    EMBEDDING_ASSIGN_OR_RETURN(
        CheckpointHeader header,
        internal::ReadCheckpointHeader(table_directory, table, *delta));
    if (header.base_sequence != chain.headers.back().name.sequence) continue;
    if (absl::Status same =
            CheckSameTable(chain.headers.front().table.spec, header.table.spec);
        !same.ok()) {
      return absl::DataLossError(absl::StrCat(header.path, ": not a delta of ",
                                              chain.headers.front().path, ": ",
                                              same.message()));
    }
    chain.headers.push_back(std::move(header));
  }
  return chain;
}

absl::StatusOr<std::unique_ptr<EmbeddingTable>> LoadChain(
    const CheckpointChain& chain, int64_t* bytes_read) {
  EMBEDDING_ASSIGN_OR_RETURN(
      std::unique_ptr<TableLoader> loader,
      TableLoader::Create(chain.headers.front().table.spec));
  for (const CheckpointHeader& header : chain.headers) {
    EMBEDDING_ASSIGN_OR_RETURN(const int64_t bytes,
                               internal::LoadCheckpointRows(header, *loader));
    *bytes_read += bytes;
  }
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
      std::move(*loader).Finish(chain.table());
  if (!table.ok()) {
    return absl::DataLossError(
        absl::StrCat(chain.path(), ": ", table.status().message()));
  }
  return table;
}

}  // namespace embedding

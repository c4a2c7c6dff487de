#include "server/service/checkpoint_proto.h"

#include "absl/time/time.h"

namespace embedding {

void ToProto(const CheckpointRecord& record, v1::CheckpointInfo* info) {
  info->set_version(record.version);
  info->set_time_unix_micros(absl::ToUnixMicros(record.time));
  info->set_path(record.path);
  info->set_incremental(record.incremental);
}

void ToProto(const SavedTable& saved, v1::SaveCheckpointResponse::Saved* out) {
  out->set_table(saved.table);
  ToProto(saved.checkpoint, out->mutable_checkpoint());
  out->set_bytes_written(saved.bytes_written);
  out->set_rows(saved.rows);
}

}  // namespace embedding

// Conversions of the checkpoint manager's results to the wire
// (embedding.v1.CheckpointInfo, SaveCheckpointResponse.Saved). Separate from
// proto_convert.h, which the checkpoint library itself links.
//
//   ToProto(*checkpointer->LastCheckpoint(name),
//   info.mutable_last_checkpoint());
#ifndef SERVER_SERVICE_CHECKPOINT_PROTO_H_
#define SERVER_SERVICE_CHECKPOINT_PROTO_H_

#include "embedding/v1/embedding_service.pb.h"
#include "server/checkpoint/checkpoint_manager.h"

namespace embedding {

void ToProto(const CheckpointRecord& record, v1::CheckpointInfo* info);
void ToProto(const SavedTable& saved, v1::SaveCheckpointResponse::Saved* out);

}  // namespace embedding

#endif  // SERVER_SERVICE_CHECKPOINT_PROTO_H_

#include "client/cpp/lookup_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "client/cpp/wire_codec.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace embedding {

LookupStream::LookupStream(const EmbeddingClient& client,
                           absl::string_view table, int depth,
                           const CallOptions& call)
    : table_(table), depth_(depth) {
  client.PrepareContext(call, &context_);
  deadline_ = absl::FromChrono(context_.deadline());
  // The headers go out with the first request instead of on their own, so
  // opening the stream does not wait on the network.
  context_.set_initial_metadata_corked(true);
  stream_ = client.stub().LookupStream(&context_);
}

LookupStream::~LookupStream() {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
  }
  Cancel();
  Finish().IgnoreError();
}

bool LookupStream::SendMayProceed() const {
  return in_flight_ < depth_ || cancelled_ || writes_done_ ||
         final_status_.has_value();
}

bool LookupStream::ReceiveMayProceed() const {
  return in_flight_ > 0 || cancelled_ || writes_done_ ||
         final_status_.has_value();
}

std::optional<absl::Status> LookupStream::EndedStatus() const {
  if (cancelled_) return absl::CancelledError("the stream was cancelled");
  if (final_status_.has_value() && !final_status_->ok()) return *final_status_;
  if (finished_) return absl::FailedPreconditionError("the stream is finished");
  return std::nullopt;
}

absl::Status LookupStream::Send(absl::Span<const int64_t> indices,
                                const LookupOptions& options) {
  absl::MutexLock sending(&send_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithDeadline(
            absl::Condition(this, &LookupStream::SendMayProceed), deadline_)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the stream's deadline passed while Send waited for one of ",
          in_flight_, " lookups in flight to be received"));
    }
    if (std::optional<absl::Status> ended = EndedStatus()) return *ended;
    if (writes_done_ || final_status_.has_value()) {
      return absl::FailedPreconditionError(
          "Send after WritesDone, or after the server ended the stream");
    }
    ++in_flight_;
  }
  if (stream_->Write(internal::LookupRequestOf(table_, indices, options))) {
    return absl::OkStatus();
  }
  return StatusAfterFailedWrite();
}

absl::Status LookupStream::StatusAfterFailedWrite() {
  absl::MutexLock receiving(&receive_mu_);
  v1::LookupResponse reply;
  while (ReadReply(&reply)) {
    absl::MutexLock lock(&mu_);
    replies_read_.push_back(std::move(reply));
  }
  absl::MutexLock lock(&mu_);
  --in_flight_;  // The request that could not be written.
  if (std::optional<absl::Status> ended = EndedStatus()) return *ended;
  return absl::UnavailableError(
      "the server ended the stream before the lookup was sent");
}

bool LookupStream::ReadReply(v1::LookupResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    if (final_status_.has_value()) return false;  // Finish was called.
  }
  if (stream_->Read(response)) return true;
  // Every reply is read: the call's status is there (gRPC wants Finish
  // only then).
  absl::Status status = FromGrpcStatus(stream_->Finish());
  absl::MutexLock lock(&mu_);
  final_status_ = std::move(status);
  return false;
}

absl::StatusOr<FloatTensor> LookupStream::Receive() {
  FloatTensor result;
  EMBEDDING_RETURN_IF_ERROR(Receive(&result));
  return result;
}

absl::Status LookupStream::Receive(FloatTensor* result) {
  absl::MutexLock receiving(&receive_mu_);
  v1::LookupResponse reply;
  bool have_reply = false;
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithDeadline(
            absl::Condition(this, &LookupStream::ReceiveMayProceed),
            deadline_)) {
      return absl::DeadlineExceededError(
          "the stream's deadline passed while Receive waited for a Send");
    }
    if (cancelled_) return *EndedStatus();
    if (!replies_read_.empty()) {
      reply = std::move(replies_read_.front());
      replies_read_.pop_front();
      have_reply = true;
    } else if (std::optional<absl::Status> ended = EndedStatus()) {
      return *ended;
    } else if (in_flight_ == 0) {
      return absl::OutOfRangeError(
          "Receive with no lookup in flight after WritesDone");
    }
  }
  if (!have_reply && !ReadReply(&reply)) {
    absl::MutexLock lock(&mu_);
    if (std::optional<absl::Status> ended = EndedStatus()) return *ended;
    return absl::InternalError(absl::StrCat("the server ended the stream with ",
                                            in_flight_, " lookups unanswered"));
  }
  absl::Status decoded = internal::DecodeTensorInto(reply.embeddings(), result);
  absl::MutexLock lock(&mu_);
  --in_flight_;
  return decoded;
}

void LookupStream::WritesDone() {
  {
    // First, so that a Send waiting for room (in another thread) gives up
    // and lets go of send_mu_.
    absl::MutexLock lock(&mu_);
    if (writes_done_) return;
    writes_done_ = true;
  }
  absl::MutexLock sending(&send_mu_);
  // False when the call has already ended; its status says why.
  stream_->WritesDone();
}

absl::Status LookupStream::Finish() {
  WritesDone();
  absl::MutexLock receiving(&receive_mu_);
  v1::LookupResponse dropped;
  while (ReadReply(&dropped)) {
  }
  absl::MutexLock lock(&mu_);
  replies_read_.clear();
  in_flight_ = 0;
  finished_ = true;
  if (cancelled_) return absl::CancelledError("the stream was cancelled");
  return *final_status_;
}

void LookupStream::Cancel() {
  context_.TryCancel();
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

int LookupStream::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

}  // namespace embedding

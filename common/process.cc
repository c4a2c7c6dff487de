#include "common/process.h"

#include <malloc.h>
#include <pthread.h>

#include <filesystem>
#include <fstream>
#include <system_error>

namespace embedding {

ShutdownSignals BlockShutdownSignals() {
  ShutdownSignals signals;
  sigemptyset(&signals.set);
  sigaddset(&signals.set, SIGINT);
  sigaddset(&signals.set, SIGTERM);
  sigaddset(&signals.set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals.set, nullptr);
  return signals;
}

int WaitForSignal(const ShutdownSignals& signals) {
  int signal_number = 0;
  sigwait(&signals.set, &signal_number);
  return signal_number;
}

int WaitForShutdownSignal(const ShutdownSignals& signals) {
  int signal_number;
  while ((signal_number = WaitForSignal(signals)) == SIGHUP) {
  }
  return signal_number;
}

bool WritePortFile(const std::string& path, int port) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp);
    out << port << "\n";
    if (!out) return false;
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  return !error;
}

void KeepLargeBuffersOnHeap() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace embedding

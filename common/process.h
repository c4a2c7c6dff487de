// What a server binary's main does around its server: block the shutdown
// and reload signals before any thread starts, publish the bound port, wait
// for a signal. Shared by embedding_server and the benchmark's bare server.
//
//   const ShutdownSignals signals = BlockShutdownSignals();  // first thing
//   ... start the server ...
//   if (!WritePortFile(path, port)) return 1;
//   int signal;
//   while ((signal = WaitForSignal(signals)) == SIGHUP) Reload();
//   // or, with nothing to reload: WaitForShutdownSignal(signals)
//
// Thread-safe (each function acts on the calling thread or on a file).
#ifndef COMMON_PROCESS_H_
#define COMMON_PROCESS_H_

#include <signal.h>

#include <string>

namespace embedding {

// SIGINT, SIGTERM and SIGHUP, blocked in the caller; threads started
// afterwards inherit the mask, so only the Wait functions see them (a
// SIGHUP therefore never kills the process).
struct ShutdownSignals {
  sigset_t set;
};
ShutdownSignals BlockShutdownSignals();

// Blocks until SIGINT, SIGTERM or SIGHUP (reload) arrives; returns its
// number.
int WaitForSignal(const ShutdownSignals& signals);

// Blocks until SIGINT or SIGTERM arrives (SIGHUPs are consumed and
// ignored); returns its number.
int WaitForShutdownSignal(const ShutdownSignals& signals);

// Writes "PORT\n" to a temporary name beside `path` and renames it, so a
// reader never sees a partial port. False when either step fails.
bool WritePortFile(const std::string& path, int port);

// Keeps allocations below 64 MiB on malloc's heap and lets up to 1 GiB of
// free heap stay resident. With glibc's defaults a process that sends or
// receives messages of a few MiB mmaps and unmaps (or trims) a buffer on
// every call and faults its pages in again: 2-5x the time of a 1 MiB lookup
// (BENCHMARKS.md, "Performance II"). Tables, larger, are still mmapped and
// go back to the system when freed. Called first thing by the server, the
// bare server and the load generator; a C++ client program that moves large
// batches in a loop should do the same.
void KeepLargeBuffersOnHeap();

}  // namespace embedding

#endif  // COMMON_PROCESS_H_

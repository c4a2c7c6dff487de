// Transparent huge pages for the tables' arrays.
#ifndef SERVER_CORE_HUGE_PAGES_H_
#define SERVER_CORE_HUGE_PAGES_H_

#include <cstdint>

namespace embedding {

// Asks the kernel to back `bytes` at `data` (allocated, not yet touched)
// with transparent huge pages where 2 MiB pages fit inside it. Rows are read
// and written at random: with 4 KiB pages nearly every row access also
// misses the TLB (a 1M x 64 table spans 64 Ki pages, 128 huge ones). A hint:
// when the kernel gives no huge pages (THP "never"), nothing else changes.
// Thread-safe.
void AdviseHugePages(void* data, int64_t bytes);

}  // namespace embedding

#endif  // SERVER_CORE_HUGE_PAGES_H_

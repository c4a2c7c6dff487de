// SplitMix64's finaliser: a bijective 64-bit mix with full avalanche
// (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014). One function for every hash of an id the service computes:
// the initializer's draws, the shard that holds a dynamic table's id (here,
// in every client, and in client/python/embedding_client/routing.py), and a
// dynamic table's stripes (salted). Frozen: changing it moves every
// cluster's rows and every table's initial values.
#ifndef COMMON_HASH64_H_
#define COMMON_HASH64_H_

#include <cstdint>

namespace embedding {

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace embedding

#endif  // COMMON_HASH64_H_

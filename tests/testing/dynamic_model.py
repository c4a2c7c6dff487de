"""A reference model of a dynamic table (admission, LRU or LFU eviction,
expiry), with torch as the optimizer oracle. What the server should answer
to every lookup and push, and the DynamicStats it should report:

    model = DynamicModel(64, 8, optimizer=Opt("adagrad", lr=0.1),
                         initializer=Uniform(-1, 1), seed=3, admit_after=2,
                         eviction="lfu", ttl_pushes=20)
    client.create_table(..., dynamic=model.dynamic())
    rows = model.lookup(ids)                      # == client.lookup(...)
    counts = model.push(ids, grad)                # == the PushResult's rows_*
    model.stats()                                 # == info.dynamic_stats

The semantics modelled (docs/dynamic_tables_design.md §2 to §4, and
server/core/dynamic_rows.h):
- Ids belong to stripe (SplitMix64(uint64(id) ^ salt) >> 1) >> (63 -
  log2 S), S = clamp(pow2_floor(capacity / 512), 1, 65536); stripe s holds
  at most R_s = capacity // S + (s < capacity % S) rows.
- Every push of the table has a step (1 for the first; retries have none).
  A row pushed last at step t has expired once the table has done P pushes
  with P - t >= ttl_pushes: for a lookup P is the pushes done so far, for a
  push the pushes before it (its step - 1).
- An id without a row, or with an expired one, reads FillRow(seed, id)
  (initializer_model.fill_rows), renormed on the fly under max_norm, and
  creates nothing; the padding id reads zeros, never gets a row and is not
  counted as an absent lookup. Expired rows count as held until reclaimed.
- A push coalesces its ids (first-occurrence order) without the padding
  id. Stripe by stripe, in ascending order: the ids holding a live row are
  stepped first (each one the next touch of the push), then the others in
  order: the admission sketch decides (else the gradient is dropped); an
  admitted id takes its own expired row (an expiration), else a free row,
  else the stripe's victim: its least recently pushed row if that one
  expired (an expiration) or under LRU, else (LFU) the row with the fewest
  pushes since its admission, then the least recent (an eviction). The new
  row is FillRow(id), renormed under max_norm, with fresh optimizer state,
  stepped with its gradient; its LFU count starts at 1.
- The admission sketch (admit_after a > 1), per stripe: 4 rows of W =
  4 * R_max uint8 counters, R_max = ceil(capacity / S). Id x has counter
  k in column ((lo + k * (hi | 1)) mod 2^32) * W >> 32 of row k, where
  lo, hi are the 32-bit halves of SplitMix64(uint64(x) ^ SKETCH_SALT).
  A push of x is admitted when min(counters) + 1 >= a, changing nothing;
  otherwise the counters at the minimum grow by one, the stripe counts one
  more, and at 2 * R_max counts all its counters halve and the count
  restarts from 0.

Touches are compared within a stripe only, so their order is all that
matters: a touch here is (step << 24) | rank as on the server, rank being
the rows the push stepped before (saturated at 2^24 - 1: pushes of fewer
rows than that never tie).

The numbers come from torch: every admission gets a row of its own in one
oracle.TorchTable (nn.Embedding + the torch optimizer the conformance suite
checks the server's against); torch row 0 stands for the padding id, and
row 1 takes the gradients of dropped ids (never read: torch's sparse
optimizers refuse a step without a row when every id of a push but the
padding id is dropped). A row
that has never been stepped holds the optimizer's initial state, so an
evicted or expired id that is admitted again starts over from FillRow with
fresh state, as on the server; its former row is simply never used again.
The TorchTable steps once per push, as the server counts steps (Adagrad's
lr_decay and SparseAdam's bias correction use them).
"""

import collections
import dataclasses

import numpy as np
import torch

from embedding_client.options import Constant, Dynamic, Normal, Uniform
from embedding_client.routing import splitmix64
from tests.conformance.oracle import Opt, TorchTable
from tests.testing.initializer_model import fill_rows

# row_index.h: StripedSlots::kStripeSalt, kRowsPerStripe, kMaxStripes.
STRIPE_SALT = np.uint64(0x2545f4914f6cdd1d)
ROWS_PER_STRIPE = 512
MAX_STRIPES = 65536
# dynamic_rows.h / .cc: kRankBits, kSketchSalt, kSketchRows,
# kSketchWidthPerRow.
RANK_BITS = 24
MAX_RANK = (1 << RANK_BITS) - 1
SKETCH_SALT = np.uint64(0x6a09e667f3bcc909)
SKETCH_ROWS = 4
SKETCH_WIDTH_PER_ROW = 4

# The model's torch rows: the padding id's, the one that takes the
# gradients of dropped ids, then one per admission.
_PADDING_ROW = 0
_DROPPED_ROW = 1
_FIRST_ROW = 2


def stripes_for(capacity):
    """StripedSlots::StripesFor: clamp(pow2_floor(capacity / 512), 1,
    65536)."""
    stripes = 1
    while stripes < MAX_STRIPES and stripes * 2 <= capacity // ROWS_PER_STRIPE:
        stripes *= 2
    return stripes


def _salted_hash(ids, salt):
    """SplitMix64(uint64(id) ^ salt) of each id, as a 1-d uint64 array."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    return splitmix64((ids.view(np.uint64) ^ salt).view(np.int64))


def stripes_of(ids, stripes):
    """The stripe of each int64 id in a table of `stripes` stripes."""
    shift = np.uint64(63 - (stripes.bit_length() - 1))
    return ((_salted_hash(ids, STRIPE_SALT) >> np.uint64(1)) >>
            shift).astype(np.int64)


def sketch_columns(ids, width):
    """[len(ids), 4]: the column of each id's counter in each sketch row of
    `width` counters (DynamicRows::SketchCounter's double hashing)."""
    hashes = _salted_hash(ids, SKETCH_SALT)
    low32 = np.uint64(0xffffffff)
    a = hashes & low32
    b = (hashes >> np.uint64(32)) | np.uint64(1)
    k = np.arange(SKETCH_ROWS, dtype=np.uint64)
    mixed = (a[:, None] + k[None, :] * b[:, None]) & low32
    return ((mixed * np.uint64(width)) >> np.uint64(32)).astype(np.int64)


def _fill_arguments(initializer):
    """fill_rows' (kind, a, b) of an initializer dataclass."""
    if isinstance(initializer, Normal):
        return "normal", initializer.mean, initializer.std
    if isinstance(initializer, Uniform):
        return "uniform", initializer.low, initializer.high
    if isinstance(initializer, Constant):
        return "constant", initializer.value, 0.0
    raise TypeError(f"not an initializer dataclass: {initializer!r}")


@dataclasses.dataclass
class _Row:
    """A held row: its torch row, the touch of its last push and (LFU) its
    pushes since admission."""
    torch_row: int
    touch: int
    pushes: int = 1

    @property
    def step(self):
        return self.touch >> RANK_BITS


class AdmissionSketch:
    """The count-min sketch of one table (admit_after > 1), bit for bit."""

    def __init__(self, admit_after, stripes, rows_per_stripe):
        self.admit_after = admit_after
        self.width = SKETCH_WIDTH_PER_ROW * rows_per_stripe
        self.halve_at = 2 * rows_per_stripe
        self.counters = np.zeros((stripes, SKETCH_ROWS, self.width), np.uint8)
        self.counted = [0] * stripes

    def admits(self, stripe, columns):
        """Counts a push of the id whose sketch_columns are `columns`: True
        when it is admitted now."""
        rows = self.counters[stripe]
        picked = rows[np.arange(SKETCH_ROWS), columns]
        estimate = int(picked.min())
        if estimate + 1 >= self.admit_after:
            return True
        grow = picked == estimate
        rows[np.arange(SKETCH_ROWS)[grow], columns[grow]] += 1
        self.counted[stripe] += 1
        if self.counted[stripe] >= self.halve_at:
            self.counted[stripe] = 0
            rows >>= 1
        return False


class DynamicModel:
    """What a dynamic table of `capacity` rows on one server holds.
    optimizer: an oracle.Opt (default Opt("sgd")). initializer: Normal
    (default), Uniform or Constant. admit_after, eviction ("lru" or "lfu"),
    ttl_pushes: as embedding_client.options.Dynamic. max_admissions: torch
    rows set aside, one per admission."""

    def __init__(self, capacity, embedding_dim, *, optimizer=None,
                 initializer=None, seed=0, padding_idx=None, max_norm=None,
                 norm_type=None, scale_grad_by_freq=False, admit_after=1,
                 eviction="lru", ttl_pushes=None, max_admissions=1 << 14):
        if eviction not in ("lru", "lfu"):
            raise ValueError(f"eviction must be lru or lfu, got {eviction!r}")
        self.capacity = capacity
        self.dim = embedding_dim
        self.seed = seed
        self.padding_idx = padding_idx
        self.admit_after = admit_after
        self.eviction = eviction
        self.ttl_pushes = ttl_pushes
        self.fill = _fill_arguments(initializer or Normal())
        self.stripes = stripes_for(capacity)
        # Per stripe: id -> _Row, least recently pushed first.
        self._rows = [collections.OrderedDict()
                      for _ in range(self.stripes)]
        self._sketch = None
        if admit_after > 1:
            self._sketch = AdmissionSketch(admit_after, self.stripes,
                                           -(-capacity // self.stripes))
        self._torch = TorchTable(
            max_admissions + _FIRST_ROW, embedding_dim,
            padding_idx=None if padding_idx is None else _PADDING_ROW,
            max_norm=max_norm, norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            optimizer=optimizer or Opt("sgd"), seed=seed,
            weight=np.zeros((max_admissions + _FIRST_ROW, embedding_dim),
                            np.float32))
        self._next_row = _FIRST_ROW
        self.counts = dict(admissions=0, evictions=0, expirations=0,
                           dropped_rows=0, absent_rows_looked_up=0)

    # ---- what the server reports ------------------------------------------

    def dynamic(self):
        """The embedding_client.options.Dynamic of this table."""
        return Dynamic(self.capacity, admit_after=self.admit_after,
                       eviction=self.eviction, ttl_pushes=self.ttl_pushes)

    @property
    def max_norm(self):
        return self._torch.max_norm

    @property
    def pushes(self):
        return self._torch.pushes

    def stripe_capacity(self, stripe):
        """R_s: the most rows `stripe` holds."""
        return (self.capacity // self.stripes +
                (1 if stripe < self.capacity % self.stripes else 0))

    def held_ids(self):
        """Every id holding a row (expired ones too), as a set."""
        return {key for stripe in self._rows for key in stripe}

    def live_ids(self):
        """Every id holding a row that has not expired, as a set."""
        return {key for stripe in self._rows
                for key, row in stripe.items()
                if not self._expired(row, self.pushes)}

    def stats(self):
        """DynamicStats' fields, as a dict."""
        return dict(rows_held=sum(len(stripe) for stripe in self._rows),
                    capacity=self.capacity, **self.counts)

    # ---- lookups and pushes -----------------------------------------------

    def lookup(self, ids):
        """The rows at `ids` (any shape): live rows through the torch
        module (renormed in place under max_norm), the others FillRow's,
        renormed as read; a float32 torch tensor `ids.shape + (dim,)`."""
        ids = np.asarray(ids, np.int64)
        flat = ids.reshape(-1)
        rows = self._torch_rows(flat)
        held = rows > 0
        out = torch.empty(len(flat), self.dim)
        if held.any():
            out[torch.from_numpy(held)] = self._torch.lookup(rows[held])
        absent = ~held
        out[torch.from_numpy(absent)] = self._absent_rows(flat[absent])
        self.counts["absent_rows_looked_up"] += int(
            (absent & (flat != self.padding_idx)).sum())
        return out.reshape(ids.shape + (self.dim,))

    def push(self, ids, grad, learning_rate=None):
        """One push of `grad` (`ids.shape + (dim,)`): admissions, drops,
        evictions and expirations, then one torch step. Returns the push's
        counts as a dict of PushResult fields (rows_updated, rows_admitted,
        rows_evicted, rows_dropped)."""
        ids = np.asarray(ids, np.int64)
        flat = ids.reshape(-1)
        distinct = [key for key in dict.fromkeys(flat.tolist())
                    if key != self.padding_idx]
        columns = {}
        if self._sketch is not None and distinct:
            columns = dict(zip(distinct,
                               sketch_columns(distinct, self._sketch.width)))
        by_stripe = collections.defaultdict(list)
        for key, stripe in zip(distinct, stripes_of(distinct, self.stripes)):
            by_stripe[int(stripe)].append(key)
        pushes_before = self.pushes
        touches = _Touches(pushes_before + 1)
        # Ids -> torch rows as this push steps them (an id admitted and then
        # evicted by this same push is stepped all the same).
        stepped = {}
        result = dict(rows_updated=0, rows_admitted=0, rows_evicted=0,
                      rows_dropped=0)
        for stripe in sorted(by_stripe):
            held = self._rows[stripe]
            absent = []
            for key in by_stripe[stripe]:
                row = held.get(key)
                if row is None or self._expired(row, pushes_before):
                    absent.append(key)
                    continue
                row.touch = touches.next()
                row.pushes += 1
                held.move_to_end(key)
                stepped[key] = row.torch_row
            for key in absent:
                if self._sketch is not None and not self._sketch.admits(
                        stripe, columns[key]):
                    result["rows_dropped"] += 1
                    continue
                self._make_room(stripe, key, pushes_before, result)
                row = _Row(self._admit(key), touches.next())
                held[key] = row
                stepped[key] = row.torch_row
                result["rows_admitted"] += 1
        result["rows_updated"] = touches.count
        self.counts["admissions"] += result["rows_admitted"]
        self.counts["evictions"] += result["rows_evicted"]
        self.counts["dropped_rows"] += result["rows_dropped"]
        rows = np.array([_PADDING_ROW if key == self.padding_idx else
                         stepped.get(key, _DROPPED_ROW)
                         for key in flat.tolist()], np.int64)
        self._torch.push(rows.reshape(ids.shape), grad, learning_rate)
        return result

    # ---- internals --------------------------------------------------------

    def _expired(self, row, pushes):
        """Whether `row` has expired when the table has done `pushes`."""
        return self.ttl_pushes is not None and (
            pushes - row.step >= self.ttl_pushes)

    def _make_room(self, stripe, key, pushes_before, result):
        """Frees what the admission of `key` takes (AdmissionSlot, Occupy):
        its own expired row, nothing while the stripe has a free row, else
        the stripe's victim; counts what it replaced."""
        held = self._rows[stripe]
        if key in held:  # Its own row: expired, or it would have been held.
            del held[key]
            self.counts["expirations"] += 1
            return
        if len(held) < self.stripe_capacity(stripe):
            return
        least_recent = next(iter(held))
        if self._expired(held[least_recent], pushes_before):
            victim = least_recent
            self.counts["expirations"] += 1
        else:
            victim = least_recent
            if self.eviction == "lfu":
                victim = min(held, key=lambda k: (held[k].pushes,
                                                  held[k].touch))
            result["rows_evicted"] += 1
        del held[victim]

    def _torch_rows(self, flat):
        """The torch row of each id, 0 for the ids holding no live row."""
        stripes = stripes_of(flat, self.stripes)
        pushes = self.pushes
        out = np.zeros(len(flat), np.int64)
        for i, (key, stripe) in enumerate(zip(flat.tolist(),
                                              stripes.tolist())):
            row = self._rows[stripe].get(key)
            if row is not None and not self._expired(row, pushes):
                out[i] = row.torch_row
        return out

    def _absent_rows(self, ids):
        """What ids without a row read: FillRow (zeros for the padding
        id), renormed by torch's embedding_renorm_ under max_norm."""
        kind, a, b = self.fill
        rows = torch.from_numpy(fill_rows(kind, a, b, self.seed, ids,
                                          self.dim))
        if self.padding_idx is not None:
            rows[torch.from_numpy(ids == self.padding_idx)] = 0.0
        if self.max_norm is not None and len(ids):
            with torch.no_grad():
                torch.embedding_renorm_(rows, torch.arange(len(ids)),
                                        self.max_norm,
                                        self._torch.module.norm_type)
        return rows

    def _admit(self, key):
        """A fresh torch row holding FillRow(key) (renormed): its
        optimizer state is the initial one, since it was never stepped."""
        row = self._next_row
        if row >= self._torch.module.num_embeddings:
            raise RuntimeError(
                f"the model ran out of torch rows after "
                f"{row - _FIRST_ROW} "
                "admissions: raise max_admissions")
        self._next_row += 1
        with torch.no_grad():
            self._torch.module.weight[row] = self._absent_rows(
                np.array([key], np.int64))[0]
        return row


class _Touches:
    """The touches of one push, in the order it steps its rows."""

    def __init__(self, step):
        self.step = step
        self.count = 0

    def next(self):
        touch = (self.step << RANK_BITS) | min(self.count, MAX_RANK)
        self.count += 1
        return touch

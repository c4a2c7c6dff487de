"""A reference model of a dynamic table (admit_after 1, LRU), with torch as
the optimizer oracle. What the server should answer to every lookup and
push, and the DynamicStats it should report:

    model = DynamicModel(64, 8, optimizer=Opt("adagrad", lr=0.1),
                         initializer=Uniform(-1, 1), seed=3)
    rows = model.lookup(ids)                      # == client.lookup(...)
    counts = model.push(ids, grad)                # == the PushResult's rows_*
    model.stats()                                 # == info.dynamic_stats

The semantics modelled (docs/dynamic_tables_design.md §2 and §4):
- An id without a row reads FillRow(seed, id) (initializer_model.fill_rows),
  renormed on the fly under max_norm, and creates nothing; the padding id
  reads zeros, never gets a row and is not counted as an absent lookup.
- Ids belong to stripe (SplitMix64(uint64(id) ^ salt) >> 1) >> (63 -
  log2 S), S = clamp(pow2_floor(capacity / 512), 1, 65536); stripe s holds
  at most capacity // S + (s < capacity % S) rows.
- A push coalesces its ids (first-occurrence order) without the padding
  id. Per stripe: the ids holding a row are stepped first (each becomes
  the stripe's most recently pushed, in that order), then the others are
  admitted in order: a full stripe evicts its least recently pushed row
  (with its optimizer state), and the new row is FillRow(id), renormed
  under max_norm, with fresh optimizer state, stepped with its gradient.

The numbers come from torch: every admission gets a row of its own in one
oracle.TorchTable (nn.Embedding + the torch optimizer the conformance suite
checks the server's against), torch row 0 standing for the padding id. A
row that has never been stepped holds the optimizer's initial state, so an
evicted id that is admitted again starts over from FillRow with fresh
state, as on the server; the evicted row is simply never used again. The
TorchTable steps once per push, as the server counts steps (Adagrad's
lr_decay and SparseAdam's bias correction use them).
"""

import collections

import numpy as np
import torch

from embedding_client.options import Constant, Normal, Uniform
from embedding_client.routing import splitmix64
from tests.conformance.oracle import Opt, TorchTable
from tests.testing.initializer_model import fill_rows

# row_index.h: StripedSlots::kStripeSalt, kRowsPerStripe, kMaxStripes.
STRIPE_SALT = np.uint64(0x2545f4914f6cdd1d)
ROWS_PER_STRIPE = 512
MAX_STRIPES = 65536


def stripes_for(capacity):
    """StripedSlots::StripesFor: clamp(pow2_floor(capacity / 512), 1,
    65536)."""
    stripes = 1
    while stripes < MAX_STRIPES and stripes * 2 <= capacity // ROWS_PER_STRIPE:
        stripes *= 2
    return stripes


def stripes_of(ids, stripes):
    """The stripe of each int64 id in a table of `stripes` stripes."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    salted = (ids.view(np.uint64) ^ STRIPE_SALT).view(np.int64)
    shift = np.uint64(63 - (stripes.bit_length() - 1))
    return ((splitmix64(salted) >> np.uint64(1)) >> shift).astype(np.int64)


def _fill_arguments(initializer):
    """fill_rows' (kind, a, b) of an initializer dataclass."""
    if isinstance(initializer, Normal):
        return "normal", initializer.mean, initializer.std
    if isinstance(initializer, Uniform):
        return "uniform", initializer.low, initializer.high
    if isinstance(initializer, Constant):
        return "constant", initializer.value, 0.0
    raise TypeError(f"not an initializer dataclass: {initializer!r}")


class DynamicModel:
    """What a dynamic table of `capacity` rows (admit_after 1, LRU) on one
    server holds. optimizer: an oracle.Opt (default Opt("sgd")).
    initializer: Normal (default), Uniform or Constant. max_admissions:
    torch rows set aside, one per admission."""

    def __init__(self, capacity, embedding_dim, *, optimizer=None,
                 initializer=None, seed=0, padding_idx=None, max_norm=None,
                 norm_type=None, scale_grad_by_freq=False,
                 max_admissions=1 << 14):
        self.capacity = capacity
        self.dim = embedding_dim
        self.seed = seed
        self.padding_idx = padding_idx
        self.fill = _fill_arguments(initializer or Normal())
        self.stripes = stripes_for(capacity)
        # Per stripe: id -> torch row, least recently pushed first.
        self._rows = [collections.OrderedDict()
                      for _ in range(self.stripes)]
        self._torch = TorchTable(
            max_admissions + 1, embedding_dim,
            padding_idx=None if padding_idx is None else 0,
            max_norm=max_norm, norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            optimizer=optimizer or Opt("sgd"), seed=seed,
            weight=np.zeros((max_admissions + 1, embedding_dim), np.float32))
        self._next_row = 1  # Torch row 0 stands for the padding id.
        self.admissions = 0
        self.evictions = 0
        self.absent_rows_looked_up = 0

    # ---- what the server reports ------------------------------------------

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
        """Every id holding a row, as a set."""
        return {key for stripe in self._rows for key in stripe}

    def stats(self):
        """DynamicStats' fields, as a dict."""
        return dict(rows_held=sum(len(stripe) for stripe in self._rows),
                    capacity=self.capacity, admissions=self.admissions,
                    evictions=self.evictions, expirations=0, dropped_rows=0,
                    absent_rows_looked_up=self.absent_rows_looked_up)

    # ---- lookups and pushes -----------------------------------------------

    def lookup(self, ids):
        """The rows at `ids` (any shape): held rows through the torch
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
        self.absent_rows_looked_up += int(
            (absent & (flat != self.padding_idx)).sum())
        return out.reshape(ids.shape + (self.dim,))

    def push(self, ids, grad, learning_rate=None):
        """One push of `grad` (`ids.shape + (dim,)`): admissions and
        evictions, then one torch step. Returns the push's counts as a
        dict of PushResult fields (rows_updated, rows_admitted,
        rows_evicted, rows_dropped)."""
        ids = np.asarray(ids, np.int64)
        flat = ids.reshape(-1)
        distinct = [key for key in dict.fromkeys(flat.tolist())
                    if key != self.padding_idx]
        by_stripe = collections.defaultdict(list)
        for key, stripe in zip(distinct, stripes_of(distinct, self.stripes)):
            by_stripe[int(stripe)].append(key)
        # Ids -> torch rows as this push steps them (an id admitted and then
        # evicted by this same push is stepped all the same).
        stepped = {}
        admitted = evicted = 0
        for stripe, keys in by_stripe.items():
            held = self._rows[stripe]
            absent = []
            for key in keys:
                if key in held:
                    held.move_to_end(key)
                    stepped[key] = held[key]
                else:
                    absent.append(key)
            for key in absent:
                if len(held) == self.stripe_capacity(stripe):
                    held.popitem(last=False)
                    evicted += 1
                held[key] = stepped[key] = self._admit(key)
                admitted += 1
        self.admissions += admitted
        self.evictions += evicted
        rows = np.array([0 if key == self.padding_idx else stepped[key]
                         for key in flat.tolist()], np.int64)
        self._torch.push(rows.reshape(ids.shape), grad, learning_rate)
        return dict(rows_updated=len(distinct), rows_admitted=admitted,
                    rows_evicted=evicted, rows_dropped=0)

    # ---- internals --------------------------------------------------------

    def _torch_rows(self, flat):
        """The torch row of each id, 0 for the ids holding none."""
        stripes = stripes_of(flat, self.stripes)
        return np.array([self._rows[stripe].get(key, 0)
                         for key, stripe in zip(flat.tolist(),
                                                stripes.tolist())], np.int64)

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
                f"the model ran out of torch rows after {row - 1} "
                "admissions: raise max_admissions")
        self._next_row += 1
        with torch.no_grad():
            self._torch.module.weight[row] = self._absent_rows(
                np.array([key], np.int64))[0]
        return row

"""The server's initial rows in numpy: a model of FillRow
(server/core/initializer.cc), vectorised over ids and columns.

Value (id, column) is a pure function of (seed, id, column), for any int64
id: a dense table's row g is fill_rows(..., [g], dim), and a dynamic table
will read FillRow(id) for an id it does not hold (docs/dynamic_tables_design.md
§4), so the same call models its absent ids, negative and 10**12+k too.

    rows = fill_rows("uniform", -0.5, 0.5, seed, np.arange(1000), 64)

Exact to the bit for "uniform" and "constant" (same double arithmetic, in
the same order, rounded to float32 once as the C++ does); "normal" uses
numpy's log/cos/sin where the server uses libm's, so a value may differ by
one float32 ulp.
"""

import numpy as np

from embedding_client.routing import splitmix64

# UniformPair's constants (initializer.cc).
_ROW_MULTIPLIER = np.uint64(0x2545f4914f6cdd1d)
_SECOND_SALT = np.uint64(0xda942042e4dd58b5)
_SHIFT_TO_53_BITS = np.uint64(11)
_SMALLEST_UNIFORM = 2.0**-53  # internal::kSmallestUniform


def _uniform_pairs(seed, ids, count):
    """UniformPair(seed, id, k) for k in [0, count): (u1, u2), float64
    [len(ids), count], each (53-bit k + 1) * 2^-53 in (0, 1]."""
    seed_mix = splitmix64(np.array([seed], np.uint64))            # [1]
    row_mix = splitmix64(ids)[:, None] * _ROW_MULTIPLIER           # [n, 1]
    columns = np.arange(count, dtype=np.uint64)[None, :]           # [1, c]
    # Mix(Mix(seed) ^ Mix(row) * C ^ column): * binds tighter than ^.
    key = splitmix64(seed_mix ^ row_mix ^ columns)
    second = splitmix64(key ^ _SECOND_SALT)
    # key >> 11 < 2^53: the conversion, + 1 and * 2^-53 are all exact.
    return tuple(((bits >> _SHIFT_TO_53_BITS).astype(np.float64)
                  + 1.0) * _SMALLEST_UNIFORM for bits in (key, second))


def _uniform(a, b, seed, ids, dim):
    """FillRow's kUniform: min(below_b, float(low + width * (1 - u1)))."""
    a, b = np.float32(a), np.float32(b)
    below_b = np.nextafter(b, a) if b > a else a
    low = np.float64(a)
    width = np.float64(b) - low  # In double: b - a can overflow in float.
    u1, _ = _uniform_pairs(seed, ids, dim)
    values = (low + width * (1.0 - u1)).astype(np.float32)
    return np.minimum(below_b, values)


def _normal(mean, std, seed, ids, dim):
    """FillRow's kNormal (BoxMuller): pair k gives columns 2k (cosine) and
    2k + 1 (sine); an odd dim drops the last sine."""
    u1, u2 = _uniform_pairs(seed, ids, (dim + 1) // 2)
    radius = np.float64(np.float32(std)) * np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    mean = np.float64(np.float32(mean))
    out = np.empty((len(ids), dim), np.float32)
    out[:, 0::2] = (mean + radius * np.cos(angle)).astype(np.float32)
    out[:, 1::2] = (mean + radius * np.sin(angle))[:, :dim // 2].astype(
        np.float32)
    return out


def fill_rows(kind, a, b, seed, ids, dim):
    """FillRow of each id: float32 [len(ids), dim].

    kind: "normal" (a mean, b std), "uniform" ([a, b)) or "constant" (a;
    b unused). a and b are rounded to float32 (InitializerSpec holds
    floats); seed is a uint64, ids any int64.
    """
    ids = np.asarray(ids, np.int64).reshape(-1)
    if kind == "constant":
        return np.full((len(ids), dim), np.float32(a))
    if kind == "uniform":
        return _uniform(a, b, seed, ids, dim)
    if kind == "normal":
        return _normal(a, b, seed, ids, dim)
    raise ValueError(f"unknown initializer kind {kind!r}")

r"""A strict parser of the Prometheus text exposition format (version
0.0.4), for tests of the server's /metrics endpoint.

    families = parse(text)             # raises PromTextError on bad input
    families["grpc_server_started_total"].type          # "counter"
    value(families, "grpc_server_handled_total",
          grpc_method="Lookup", grpc_code="OK")         # a float, or None

Beyond the grammar (HELP/TYPE comments, names, label escapes \\ \"
\n, values including +Inf/-Inf/NaN in any case, optional timestamps) it
checks that a family has at most one HELP and one TYPE, both before its
samples; that its samples are contiguous; that no series appears twice;
that counters are not negative; and that a histogram has _bucket samples
with an `le` label whose counts never decrease, a +Inf bucket equal to
its _count, and a _sum.
"""

import dataclasses
import math
import re

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_NAME_RE = re.compile(_NAME)
_LABEL_NAME_RE = re.compile(_LABEL_NAME)
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_SUMMARY_SUFFIXES = ("_sum", "_count")


class PromTextError(ValueError):
    """Input that is not valid exposition text; says the line and why."""

    def __init__(self, line_number, message):
        super().__init__(f"line {line_number}: {message}")
        self.line_number = line_number


@dataclasses.dataclass
class Sample:
    name: str      # As written: with _bucket/_sum/_count for histograms.
    labels: dict   # Label name -> unescaped value.
    value: float
    timestamp: int = None


@dataclasses.dataclass
class Family:
    name: str
    help: str = None
    type: str = "untyped"
    samples: list = dataclasses.field(default_factory=list)
    typed: bool = False  # A TYPE line was given.


def _unescape(text, line_number, quotes):
    """Undoes \\\\, \\n and (when `quotes`) \\" escapes."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                raise PromTextError(line_number, "a lone backslash at the end")
            nxt = text[i + 1]
            if nxt == "\\":
                out.append("\\")
            elif nxt == "n":
                out.append("\n")
            elif nxt == '"' and quotes:
                out.append('"')
            else:
                raise PromTextError(line_number, f"bad escape \\{nxt}")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_value(text, line_number):
    # As Prometheus reads values (Go's ParseFloat): Inf and NaN in any case
    # (prometheus-cpp writes "Nan" for an empty summary's quantiles).
    special = re.fullmatch(r"([-+]?)(inf|infinity|nan)", text, re.IGNORECASE)
    if special:
        if special.group(2).lower() == "nan":
            return math.nan
        return -math.inf if special.group(1) == "-" else math.inf
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise PromTextError(line_number, f"not a number: {text!r}")
    return float(text)


def _parse_labels(text, pos, line_number):
    """Parses `{...}` starting at text[pos] == "{"; returns (labels, end)."""
    labels = {}
    pos += 1
    while True:
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        match = _LABEL_NAME_RE.match(text, pos)
        if not match:
            raise PromTextError(line_number, f"bad label name at {pos}")
        name = match.group(0)
        pos = match.end()
        if not text.startswith('="', pos):
            raise PromTextError(line_number, f'expected =" after {name}')
        pos += 2
        start = pos
        while pos < len(text) and text[pos] != '"':
            pos += 2 if text[pos] == "\\" else 1
        if pos >= len(text):
            raise PromTextError(line_number, f"unterminated value of {name}")
        if name in labels:
            raise PromTextError(line_number, f"label {name} given twice")
        labels[name] = _unescape(text[start:pos], line_number, quotes=True)
        pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "}":
            raise PromTextError(line_number, "expected , or } after a label")


def _parse_sample(line, line_number):
    match = _NAME_RE.match(line)
    if not match:
        raise PromTextError(line_number, f"bad metric name in {line!r}")
    name = match.group(0)
    pos = match.end()
    labels = {}
    if pos < len(line) and line[pos] == "{":
        labels, pos = _parse_labels(line, pos, line_number)
    rest = line[pos:]
    if not rest.startswith(" "):
        raise PromTextError(line_number, "expected a space before the value")
    fields = rest.split()
    if len(fields) not in (1, 2):
        raise PromTextError(line_number, f"expected value [timestamp]: {rest!r}")
    value = _parse_value(fields[0], line_number)
    timestamp = None
    if len(fields) == 2:
        if not re.fullmatch(r"-?\d+", fields[1]):
            raise PromTextError(line_number, f"bad timestamp {fields[1]!r}")
        timestamp = int(fields[1])
    return Sample(name, labels, value, timestamp)


def _family_of(sample_name, families):
    """The family a sample belongs to: its own name, or a histogram's or
    summary's with the suffix taken off."""
    for suffixes, kinds in ((_HISTOGRAM_SUFFIXES, ("histogram",)),
                            (_SUMMARY_SUFFIXES, ("summary",))):
        for suffix in suffixes:
            base = sample_name[: -len(suffix)]
            if (sample_name.endswith(suffix) and base in families
                    and families[base].type in kinds):
                return base
    return sample_name


def _check_histogram(family):
    """Buckets cumulative per series, +Inf bucket == _count, a _sum."""
    series = {}
    for sample in family.samples:
        key = tuple(sorted((k, v) for k, v in sample.labels.items()
                           if k != "le"))
        entry = series.setdefault(key, {"buckets": [], "sum": None,
                                        "count": None})
        if sample.name.endswith("_bucket"):
            if "le" not in sample.labels:
                raise PromTextError(0, f"{family.name}: a bucket without le")
            entry["buckets"].append(
                (_parse_value(sample.labels["le"], 0), sample.value))
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
        elif sample.name.endswith("_count"):
            entry["count"] = sample.value
        else:
            raise PromTextError(0, f"{family.name}: stray sample {sample.name}")
    for key, entry in series.items():
        buckets = sorted(entry["buckets"])
        where = f"{family.name}{dict(key)}"
        if not buckets or buckets[-1][0] != math.inf:
            raise PromTextError(0, f"{where}: no +Inf bucket")
        counts = [count for _, count in buckets]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise PromTextError(0, f"{where}: buckets not cumulative {counts}")
        if entry["count"] is None or entry["sum"] is None:
            raise PromTextError(0, f"{where}: missing _count or _sum")
        if entry["count"] != counts[-1]:
            raise PromTextError(
                0, f"{where}: _count {entry['count']} != +Inf {counts[-1]}")


def parse(text):
    """Families by name, in order of appearance. Raises PromTextError."""
    families = {}
    current = None   # The family whose samples come now.
    closed = set()   # Families whose samples ended.
    seen = set()     # (sample name, labels) already given.
    for line_number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not _NAME_RE.fullmatch(name):
                    raise PromTextError(line_number, f"bad name {name!r}")
                family = families.setdefault(name, Family(name))
                if family.samples:
                    raise PromTextError(
                        line_number, f"{parts[1]} of {name} after its samples")
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    if family.help is not None:
                        raise PromTextError(line_number, f"second HELP of {name}")
                    family.help = _unescape(rest, line_number, quotes=False)
                else:
                    if family.typed:
                        raise PromTextError(line_number, f"second TYPE of {name}")
                    if rest not in _TYPES:
                        raise PromTextError(line_number, f"bad type {rest!r}")
                    family.type = rest
                    family.typed = True
            continue  # Other comments are allowed.
        sample = _parse_sample(line, line_number)
        name = _family_of(sample.name, families)
        if name != current:
            if current is not None:
                closed.add(current)
            if name in closed:
                raise PromTextError(
                    line_number, f"samples of {name} are not contiguous")
            current = name
        family = families.setdefault(name, Family(name))
        key = (sample.name, tuple(sorted(sample.labels.items())))
        if key in seen:
            raise PromTextError(line_number, f"series given twice: {key}")
        seen.add(key)
        if family.type == "counter" and not sample.value >= 0:
            raise PromTextError(line_number, f"negative counter {sample.name}")
        family.samples.append(sample)
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return families


def samples(families, sample_name, **labels):
    """Samples named `sample_name` whose labels include `labels`."""
    family = families.get(_family_of(sample_name, families))
    if family is None:
        return []
    return [s for s in family.samples if s.name == sample_name
            and all(s.labels.get(k) == v for k, v in labels.items())]


def value(families, sample_name, **labels):
    """The value of the one sample matching (see samples), None if none;
    raises when several match."""
    found = samples(families, sample_name, **labels)
    if len(found) > 1:
        raise LookupError(f"{len(found)} samples of {sample_name} {labels}")
    return found[0].value if found else None

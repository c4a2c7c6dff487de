"""What Linux's /proc says about a process: its memory, threads and CPU time.

    peak = peak_rss_bytes(pid)     # VmHWM: the largest RSS it ever had
    now = rss_bytes(pid)           # VmRSS
    threads = thread_count(pid)    # Threads
    used = cpu_seconds(pid)        # utime + stime, in seconds

Each call reads /proc afresh; a process that has exited raises
FileNotFoundError (ProcessLookupError for a zombie's missing fields).
"""

import os
import pathlib

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def status(pid):
    """/proc/PID/status as a dict of field -> text ("VmRSS" -> "1234 kB")."""
    fields = {}
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kilobytes(pid, field):
    value = status(pid).get(field)
    if value is None:
        raise ProcessLookupError(f"/proc/{pid}/status has no {field}")
    number, unit = value.split()
    assert unit == "kB", value
    return int(number) * 1024


def rss_bytes(pid):
    """Resident set size now (VmRSS), in bytes."""
    return _kilobytes(pid, "VmRSS")


def peak_rss_bytes(pid):
    """The largest resident set size so far (VmHWM), in bytes."""
    return _kilobytes(pid, "VmHWM")


def thread_count(pid):
    """Threads of the process now."""
    return int(status(pid)["Threads"])


def cpu_seconds(pid):
    """User plus system CPU time the process has used so far, in seconds."""
    text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; it ends at the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    # utime and stime are fields 14 and 15; fields[0] is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND

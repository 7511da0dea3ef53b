"""The process's peak resident set size, the memory figure every benchmark reports."""


def peak_rss_mb():
    """Peak resident set size of this process (``VmHWM``), in MB (Linux only)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmHWM not found in /proc/self/status (Linux only).")

"""How labvm writes what both sides print: the host's scripts (autostop.py's log and warnings) and
labvm on the laptop (labvm.vm loads this file: `status`, `autostop`, the keeper's notifications).
It imports nothing, so that either side can load it alone.  Python 3.8+."""


def duration(seconds):
    """90s, 26m, 2h05m: seconds under two minutes, minutes under two hours, then hours and minutes."""
    seconds = int(seconds)
    if seconds < 120:
        return "%ds" % seconds
    if seconds < 7200:
        return "%dm" % (seconds // 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)

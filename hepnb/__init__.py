"""Notebook-first analysis environment for ML event reconstruction in particle-physics detectors"""

__version__ = "0.1.0"

import os as _os
# Arrow's allocator (mimalloc) keeps freed pages for a while before giving them back; a loader that streams a
# dataset then grows with the data read, not with what it holds. Return them at once (set before pyarrow loads;
# an explicit setting wins).
_os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

def _fixed_mmap_threshold(nbytes: int = 4 << 20) -> None:
    """glibc raises its mmap threshold each time a large block is freed (up to 32 MiB); from then on arrays of that
    size come from the heap, where a small live block above them keeps the freed memory from going back, so a loader
    streaming a dataset grows with the data read. A fixed threshold keeps big arrays (shuffle pools, read chunks) on
    their own pages, returned when freed. 4 MiB, not glibc's initial 128 KiB, and the heap trimmed only above 8 MiB
    free (twice the threshold, glibc's own rule when it moves it): a batch's arrays (a padded [256, 250, 5] float
    batch is 1.3 MB) then reuse heap pages, where fresh pages for each cost three times the gather that fills them.
    Set at import on Linux unless MALLOC_MMAP_THRESHOLD_ (or MALLOC_TRIM_THRESHOLD_, for the trim) is given."""
    import sys
    if not sys.platform.startswith("linux"): return
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        if "MALLOC_MMAP_THRESHOLD_" not in _os.environ: libc.mallopt(-3, nbytes)      # M_MMAP_THRESHOLD (glibc)
        if "MALLOC_TRIM_THRESHOLD_" not in _os.environ: libc.mallopt(-1, 2 * nbytes)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError): pass

_fixed_mmap_threshold()

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
    their own pages, returned when freed. 4 MiB, not glibc's initial 128 KiB: a batch's arrays (a padded [256, 250, 5]
    float batch is 1.3 MB) then reuse heap memory, where fresh pages for each would cost three times the copy that
    fills them. Set at import on Linux unless MALLOC_MMAP_THRESHOLD_ is given."""
    import sys
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in _os.environ: return
    try:
        import ctypes
        ctypes.CDLL(None).mallopt(-3, nbytes)          # M_MMAP_THRESHOLD (glibc; a no-op elsewhere)
    except (OSError, AttributeError): pass

_fixed_mmap_threshold()

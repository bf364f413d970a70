"""Notebook-first analysis environment for ML event reconstruction in particle-physics detectors"""

__version__ = "0.1.0"

import os as _os
# Arrow's allocator (mimalloc) keeps freed pages for a while before giving them back; a loader that streams a
# dataset then grows with the data read, not with what it holds. Return them at once (set before pyarrow loads;
# an explicit setting wins).
_os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

"""ToMe's functional ops: bipartite soft matching and merging."""
from .token_merging import (bipartite_soft_matching, max_merge, merge_schedule,
                            merge_wavg)

__all__ = ['bipartite_soft_matching', 'merge_wavg', 'merge_schedule',
           'max_merge']

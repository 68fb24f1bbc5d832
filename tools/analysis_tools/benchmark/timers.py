"""Timing and peak-memory measurement on CPU (and CUDA where present).

Peak memory on CPU has no allocator counter, so each case runs in a fresh
subprocess (:func:`.runner.run_isolated`) and reports ``peak RSS - RSS
after building the inputs`` (Linux ``ru_maxrss``; it includes what the C
library keeps of freed memory and the libraries' one-time buffers), and the
peak of live tensor memory of a later call, from the profiler's allocation
events (:func:`tensor_peak_mib`); on CUDA
``torch.cuda.max_memory_allocated``.
"""
import resource
import statistics
import time
from typing import Callable, Dict, List


def rss_mib() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    import os
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tensor_peak_mib(fn: Callable[[], None]) -> float:
    """Peak of live tensor memory (MiB) during ``fn()`` above what was live
    before it: the running sum of torch.profiler's CPU allocation and free
    events, in time order."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes())
                    for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def time_samples(fn: Callable[[], None], warmup: int = 1, repeat: int = 3,
                 sync: Callable[[], None] = lambda: None) -> List[float]:
    """Wall times in ms of ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def time_round_robin(fns: List[Callable[[], None]], repeat: int = 5,
                     sync: Callable[[], None] = lambda: None
                     ) -> List[List[float]]:
    """Wall times in ms of each of ``fns``, called in turn: a warm-up round,
    then ``repeat`` rounds, so that slow drifts of a shared machine hit all
    of them alike. Returns one list of ``repeat`` samples per function."""
    samples = [[] for _ in fns]
    for round_ in range(repeat + 1):
        for fn, times in zip(fns, samples):
            start = time.perf_counter()
            fn()
            sync()
            if round_:
                times.append((time.perf_counter() - start) * 1e3)
    return samples


def time_fn(fn: Callable[[], None], warmup: int = 1, repeat: int = 3,
            sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time in ms."""
    return statistics.median(time_samples(fn, warmup, repeat, sync))


def spread(name: str, samples: List[float]) -> Dict[str, float]:
    """``name``: the median of the samples; ``name_min``/``name_max``."""
    return {name: statistics.median(samples), f'{name}_min': min(samples),
            f'{name}_max': max(samples)}

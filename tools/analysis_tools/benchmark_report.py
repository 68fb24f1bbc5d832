"""Render the JSON of one ``benchmark_attention.py`` run as Markdown tables.

Ratios come first in every table; times are medians with (min-max).

  python tools/analysis_tools/benchmark_report.py docs/benchmarks > tables.md
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from benchmark.report import render  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('folder', help='the --out-dir of one run')
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.folder))


if __name__ == '__main__':
    main()

"""``python tools/analysis_tools/benchmark --case JSON``: one case in this
process, its result as one JSON line (:func:`benchmark.runner.main`)."""
import os.path as osp
import sys

_HERE = osp.dirname(osp.abspath(__file__))
# run as a folder, Python puts the folder itself first on sys.path: its
# modules are imported as the package ``benchmark`` from the folder above,
# and mmeffattn from this checkout
sys.path[:] = [p for p in sys.path if osp.abspath(p) != _HERE]
sys.path[:0] = [osp.dirname(_HERE), osp.join(_HERE, '..', '..', '..')]

from benchmark.runner import main  # noqa: E402

main()

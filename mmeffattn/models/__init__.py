from .attention import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .classifiers import *  # noqa: F401,F403

try:  # necks, heads, losses and RT-DETR extend mmdet's classes
    from .dense_heads import *  # noqa: F401,F403
    from .detectors import *  # noqa: F401,F403
    from .losses import *  # noqa: F401,F403
    from .necks import *  # noqa: F401,F403
except Exception as exc:  # mmdet raises AssertionError on a bad mmcv
    import warnings
    warnings.warn(f'mmdet is unusable ({exc!r}); SASAFPN and SASARetinaHead '
                  'and the RT-DETR classes are not registered')

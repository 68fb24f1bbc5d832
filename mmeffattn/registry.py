"""mmeffattn's registries.

``MODELS`` and ``HOOKS`` are children of mmengine's root registries with their
own scope, so any OpenMMLab toolbox config can name our classes as
``type='mmeffattn.SeTformer'`` or
``type='mmeffattn.LinearAngularAuxAnnealHook'``
without ``custom_imports``: mmengine imports ``mmeffattn.registry`` for the
``mmeffattn.`` prefix, and ``locations`` then imports the package that
registers them.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmeffattn',
    locations=['mmeffattn.models'])

HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mmeffattn',
    locations=['mmeffattn.engine'])

__all__ = ['MODELS', 'HOOKS']

"""mmeffattn's registry.

``MODELS`` is a child of mmengine's root ``MODELS`` with its own scope, so any
OpenMMLab toolbox config can name our classes as ``type='mmeffattn.SeTformer'``
without ``custom_imports``: mmengine imports ``mmeffattn.registry`` for the
``mmeffattn.`` prefix, and ``locations`` then imports ``mmeffattn.models``.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmeffattn',
    locations=['mmeffattn.models'])

__all__ = ['MODELS']

from .atomic_checkpoint_hook import AtomicCheckpointHook, CheckpointSaveError
from .linear_angular_aux_hook import LinearAngularAuxAnnealHook

__all__ = ['AtomicCheckpointHook', 'CheckpointSaveError',
           'LinearAngularAuxAnnealHook']

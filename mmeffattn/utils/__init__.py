from .checkpoint import (CheckpointError, load_checkpoint_file,
                         register_checkpoint_policy, trusted_checkpoints)

__all__ = ['CheckpointError', 'load_checkpoint_file',
           'register_checkpoint_policy', 'trusted_checkpoints']

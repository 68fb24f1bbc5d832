from .checkpoint import (TRUST_FLAG, CheckpointError, add_trust_argument,
                         load_checkpoint_file, load_state_dict_checked,
                         register_checkpoint_policy, trusted_checkpoints,
                         verify_hash)

__all__ = ['TRUST_FLAG', 'CheckpointError', 'add_trust_argument',
           'load_checkpoint_file', 'load_state_dict_checked',
           'register_checkpoint_policy', 'trusted_checkpoints', 'verify_hash']

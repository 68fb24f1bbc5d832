from .linear_angular_aux_hook import LinearAngularAuxAnnealHook

__all__ = ['LinearAngularAuxAnnealHook']

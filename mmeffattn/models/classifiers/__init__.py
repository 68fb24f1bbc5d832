from .module_imitation_classifier import ModuleImitationClassifier

__all__ = ['ModuleImitationClassifier']

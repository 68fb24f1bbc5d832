"""RIFormer's training recipe (Wang et al., CVPR 2023), which mmpretrain
lacks: distillation without labels, module imitation, and a student that
starts from its teacher."""
import os.path as osp
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.classifiers import ImageClassifier

from mmeffattn.registry import MODELS


def block_modules(model: nn.Module, suffix: str) -> Dict[str, nn.Module]:
    """Modules of ``model`` whose class name ends with ``suffix``, in
    forward order (PoolFormerBlock, RIFormerBlock, ...)."""
    return {name: m for name, m in model.named_modules()
            if type(m).__name__.endswith(suffix)}


@MODELS.register_module()
class ModuleImitationClassifier(ImageClassifier):
    """An mmpretrain ``ImageClassifier`` (the student) trained by a frozen
    teacher, as RIFormer trains its token-mixer-free students:

    - soft distillation: ``T^2 KL(softmax(t/T) || softmax(s/T))`` on the
      logits, without ground-truth labels (``label_weight=0``);
    - module imitation: mean-squared error between the output of every
      student block and the teacher block at the same position;
    - initialisation: after ``init_weights``, the student takes every teacher
      weight whose name and shape it shares; only the token mixers (keys
      containing ``token_mixer``) may be missing, anything else raises.

    The teacher is built from a config (its ``model``) and loaded from a
    checkpoint, weights-only and strict; it stays in eval mode and gets no
    gradient. Student and teacher share the student's data preprocessing.

    Args:
        teacher (str | dict): a config file path or a model config dict.
        teacher_checkpoint (str, optional): the teacher's weights;
            ``checkpoints/NAME.pth`` also finds the newest published
            ``NAME_<YYYYMMDD>-<hash>.pth``.
        kd_weight (float): weight of the logit distillation. Defaults to 1.
        imitation_weight (float): weight of the block-wise feature loss
            (summed over blocks, each averaged over elements). Defaults to 1.
        label_weight (float): weight of the student head's own loss on the
            labels; RIFormer's recipe uses none. Defaults to 0.
        temperature (float): distillation temperature T. Defaults to 1.
        block_suffix (str): class-name suffix of the imitated blocks.
            Defaults to ``'Block'``.
        init_from_teacher (bool): start the student from the teacher.
        **kwargs: ``ImageClassifier``'s arguments (the student).
    """

    def __init__(self,
                 teacher: Union[str, dict],
                 teacher_checkpoint: Optional[str] = None,
                 kd_weight: float = 1.0,
                 imitation_weight: float = 1.0,
                 label_weight: float = 0.0,
                 temperature: float = 1.0,
                 block_suffix: str = 'Block',
                 init_from_teacher: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(teacher, str):
            from mmengine.config import Config
            if not osp.isfile(teacher):
                raise FileNotFoundError(
                    f'ModuleImitationClassifier: teacher config {teacher} '
                    f'does not exist')
            teacher = Config.fromfile(teacher).model
        from mmengine.registry import MODELS as ROOT_MODELS
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            self.teacher = ROOT_MODELS.build(teacher)
        self.teacher.requires_grad_(False)
        self.teacher_checkpoint = teacher_checkpoint
        self.kd_weight, self.imitation_weight = kd_weight, imitation_weight
        self.label_weight, self.temperature = label_weight, temperature
        self.init_from_teacher = init_from_teacher

        student_blocks = block_modules(self.backbone, block_suffix)
        teacher_blocks = block_modules(self.teacher.backbone, block_suffix)
        if imitation_weight and len(student_blocks) != len(teacher_blocks):
            raise ValueError(
                f'ModuleImitationClassifier: the student has '
                f'{len(student_blocks)} *{block_suffix} modules and the '
                f'teacher {len(teacher_blocks)}; module imitation pairs them '
                f'one to one')
        self._features: Dict[str, List[torch.Tensor]] = dict(
            student=[], teacher=[])
        for role, blocks in (('student', student_blocks),
                             ('teacher', teacher_blocks)):
            for module in blocks.values():
                module.register_forward_hook(self._recorder(role))

    def _recorder(self, role):
        def hook(module, args, output):
            if self.training and self.imitation_weight:
                self._features[role].append(output)
        return hook

    def init_weights(self):
        super().init_weights()
        if self.teacher_checkpoint:
            from mmeffattn.utils import load_checkpoint_file

            from ..utils.pretrained import resolve_checkpoint

            # checkpoints/NAME.pth or its newest published NAME_<date>-<hash>
            path = resolve_checkpoint(self.teacher_checkpoint)
            state = load_checkpoint_file(path)
            self.teacher.load_state_dict(state.get('state_dict', state),
                                         strict=True)
        if self.init_from_teacher:
            self._copy_teacher_into_student()

    def _copy_teacher_into_student(self):
        own = {k: v for k, v in self.state_dict().items()
               if not k.startswith('teacher.')}
        given = self.teacher.state_dict()
        mismatched = [k for k in own if k in given
                      and own[k].shape != given[k].shape]
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        problems = mismatched + [k for k in missing if 'token_mixer' not in k]
        if problems or unexpected:
            raise ValueError(
                f'ModuleImitationClassifier: the student cannot start from '
                f'the teacher: only token-mixer weights may differ, but '
                f'{(problems + unexpected)[:8]} do (shape or name)')
        with torch.no_grad():
            for key, value in given.items():
                own[key].copy_(value)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        self._features = dict(student=[], teacher=[])
        with torch.no_grad():
            teacher_logits = self.teacher(inputs, mode='tensor')
        feats = self.extract_feat(inputs)
        student_logits = self.head(feats)
        t = self.temperature
        losses = dict(loss_kd=self.kd_weight * t * t * F.kl_div(
            F.log_softmax(student_logits / t, dim=1),
            F.log_softmax(teacher_logits / t, dim=1),
            reduction='batchmean', log_target=True))
        if self.imitation_weight:
            pairs = zip(self._features['student'], self._features['teacher'])
            losses['loss_imitation'] = self.imitation_weight * sum(
                F.mse_loss(s, t.detach()) for s, t in pairs)
        if self.label_weight:
            head_losses = self.head.loss(feats, data_samples)
            losses.update({k: v * self.label_weight
                           for k, v in head_losses.items()
                           if k.startswith('loss')})
        self._features = dict(student=[], teacher=[])
        return losses

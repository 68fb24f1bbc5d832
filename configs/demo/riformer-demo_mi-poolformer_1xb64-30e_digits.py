# RIFormer's training recipe on the embedded digits: the RIFormer demo student
# (backbone, neck and head inherited) starts from the PoolFormer demo teacher
# (all weights but the token mixers) and learns from the teacher alone: soft
# distillation of the logits (no labels) and module imitation (MSE between
# each student block and the teacher block at the same position).
_base_ = ['./riformer-demo_1xb64-30e_digits.py']

model = dict(
    type='mmeffattn.ModuleImitationClassifier',
    teacher='{{fileDirname}}/poolformer-demo_1xb64-30e_digits.py',
    teacher_checkpoint='{{fileDirname}}/../../checkpoints/demo/'
    'poolformer-demo_1xb64-30e_digits.pth',
    kd_weight=1.0,
    imitation_weight=1.0,
    label_weight=0.0,
    temperature=1.0)

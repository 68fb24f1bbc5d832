"""What the tests share: the repository's paths and demo configs, running a
tool, loading a tool script as a module, the published demo checkpoints and
gradient checks. Imported as ``helpers`` (``pythonpath = tests`` in
setup.cfg)."""
import glob
import importlib.util
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
DEMO = osp.join(REPO, 'configs', 'demo')
PARITY_DATA = osp.join(REPO, 'tests', 'data', 'parity')
CLS_CFG = osp.join(DEMO, 'sasa-r26-demo_1xb64-20e_digits.py')
RETINA_CFG = osp.join(DEMO, 'retinanet_sasa-r26-demo_fpn_1xb8-16e_digits.py')
MASK_CFG = osp.join(DEMO, 'mask-rcnn_sasa-r26-demo_fpn_1xb8-8e_digits.py')
SEG_CFG = osp.join(DEMO,
                   'upernet_sasa-r26-demo_1xb16-1500iter_digits-64x64.py')
SET_CFG = osp.join(DEMO, 'setformer-demo_1xb64-30e_digits.py')


def _devices():
    """'cpu', and 'cuda' where a GPU is present: the op tests that compare
    implementations take ``device`` from this list, so one run on a GPU
    machine checks the CUDA paths and a CPU run gains no case."""
    import torch
    return ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


DEVICES = _devices()


def published_checkpoint(name):
    """The one published ``checkpoints/demo/<name>_<date>-<hash>.pth``."""
    found = glob.glob(osp.join(REPO, 'checkpoints', 'demo', f'{name}_*.pth'))
    assert len(found) == 1, f'expected one published checkpoint of {name}'
    return found[0]


def run_tool(args, cwd, env=None, check=True, timeout=900):
    """Run ``python tools/<args>`` (or a .sh) in ``cwd``; return the
    process."""
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1',
                    PYTHON=sys.executable)
    full_env.update(env or {})
    cmd = args if args[0].endswith('.sh') else [sys.executable] + args
    if cmd[0].endswith('.sh'):
        cmd = ['bash'] + cmd
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{cmd} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def load_tool(relpath):
    """``tools/<relpath>`` imported as a module (its ``main(argv)`` and
    functions), without putting its folder on ``sys.path``."""
    name = 'tool_' + relpath.replace('/', '_')[:-3]
    spec = importlib.util.spec_from_file_location(
        name, osp.join(TOOLS, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_file(name, path):
    """The Python file ``path`` imported as a module named ``name`` (the
    parity fixtures' helpers)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parameters_without_gradient(model, data_batch):
    """Names of trainable parameters that get no gradient from one training
    step on ``data_batch``: exactly what DDP rejects without
    ``find_unused_parameters``."""
    model.train()
    for p in model.parameters():
        p.grad = None
    data = model.data_preprocessor(data_batch, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    return [name for name, p in model.named_parameters()
            if p.requires_grad and p.grad is None]


def assert_every_parameter_gets_a_gradient(model, data_batch):
    missing = parameters_without_gradient(model, data_batch)
    assert not missing, (
        f'{len(missing)} trainable parameters get no gradient (DDP fails '
        f'without find_unused_parameters): {missing}')


def assert_same_set_attention(module, reference, x, hw_shape, masks):
    """Two SeTAttention modules with the same weights agree for each mask in
    ``masks``: outputs, the input's and every parameter's gradient."""
    import torch
    weight = torch.randn_like(x)
    for mask in masks:
        module.zero_grad()
        reference.zero_grad()
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        out1, out2 = module(x1, hw_shape, mask), reference(x2, hw_shape, mask)
        (out1 * weight).sum().backward()
        (out2 * weight).sum().backward()
        torch.testing.assert_close(out1, out2)
        torch.testing.assert_close(x1.grad, x2.grad)
        for (name, p1), p2 in zip(module.named_parameters(),
                                  reference.parameters()):
            torch.testing.assert_close(p1.grad, p2.grad, msg=name)

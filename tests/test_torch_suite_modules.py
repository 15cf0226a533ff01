"""PyTorch's generic module checks (test/test_modules.py, TestModule) with the samples and error
samples of the six recurrent ModuleInfos (torch/testing/_internal/common_modules.py:
module_inputs_torch_nn_RNN_GRU / _LSTM / _RNN_GRU_Cell / _LSTMCell, module_error_inputs_torch_nn_
RNN_GRU / _RNN_GRU_Cell / _LSTMCell), torch 2.13, ported to pytest and pointed at lstmkit. Part of
the ported suite that is the drop-in spec (with tests/test_torch_suite_nn.py).

The samples are rebuilt here in our own code (same constructor arguments and input shapes as the
ModuleInfo functions); each check runs every sample, in train and eval mode where torch's does,
for torch's dtypes float32 and float64 (ModuleInfo default ``floating_types()``). The torch.nn
twin (tests/torch_suite.py) is the oracle wherever torch compares with a reference; the
no-batch-dim reference (run the sample with a batch of one, squeeze) is kept as torch has it.
Tolerances: float64 atol 1e-9, float32 atol 1e-5 (torch's assertEqual defaults are looser).

Checks ported (TestModule name -> test here):
  test_forward (reference_fn = no_batch_dim_reference_*)  -> test_forward
  test_factory_kwargs                                     -> test_factory_kwargs
  test_repr                                               -> test_repr
  test_pickle                                             -> test_pickle
  test_save_load                                          -> test_save_load
  test_non_contiguous_tensors                             -> test_non_contiguous_tensors
  test_grad (gradcheck)                                   -> test_grad
  test_gradgrad (gradgradcheck; supports_gradgrad=True for all six) -> test_gradgrad
  test_if_train_and_eval_modes_differ                     -> test_if_train_and_eval_modes_differ
  test_device_ctx_init                                    -> test_device_ctx_init
  test_to (with and without swap_module_params_on_conversion) -> test_to
  test_to_empty                                           -> test_to_empty
  test_errors (module_error_inputs_*)                     -> test_errors_*
Left out, with the reason:
  test_cpu_gpu_parity, test_multiple_device_transfer: CUDA-only.
  test_memory_format: applies to inputs that have a channels_last layout (4-D/5-D); these
      modules take 1-D to 3-D inputs, so torch's test does nothing for them.
  test_check_inplace: only for modules with an ``inplace`` argument.
  the MPS skips and cuDNN expected failures of rnn_gru_lstm_module_info_decorators: MPS/cuDNN-only.
"""

from __future__ import annotations

import io
import itertools
import pickle
import re

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.nn.utils.rnn import pack_padded_sequence
from torch_oracle import TOLERANCE
from torch_suite import CELLS, TWINS, flat, twin

import lstmkit

DTYPES = [torch.float32, torch.float64]


# ---- the samples of the six ModuleInfos -----------------------------------------------------------
# Each sample: (cls, constructor kwargs, a function of (dtype, requires_grad) -> forward args,
#               whether the no-batch-dim reference applies).

def _rnn_gru_samples(cls, is_rnn):
    samples = []
    nonlinearities = ("relu", "tanh") if is_rnn else (None,)
    for nl, bias, batch_first, bidir in itertools.product(nonlinearities, (False, True), (False, True),
                                                          (False, True)):
        base = {"input_size": 2, "num_layers": 2, "batch_first": batch_first, "bias": bias,
                "bidirectional": bidir, **({"nonlinearity": nl} if nl else {})}
        D = 4 if bidir else 2
        samples.append((cls, {**base, "hidden_size": 2}, lambda mk: (mk(3, 2),)))
        samples.append((cls, {**base, "hidden_size": 3}, lambda mk, D=D: (mk(3, 2), mk(D, 3))))
    return samples


def _lstm_samples():
    samples = []
    for bias, batch_first, bidir, proj in itertools.product((False, True), (False, True), (False, True), (0, 2)):
        kwargs = {"input_size": 2, "hidden_size": 3, "num_layers": 2, "proj_size": proj,
                  "batch_first": batch_first, "bias": bias, "bidirectional": bidir}
        D = 4 if bidir else 2
        samples.append((lstmkit.LSTM, kwargs, lambda mk: (mk(2, 2),)))
        samples.append((lstmkit.LSTM, kwargs, lambda mk, D=D, P=proj or 3: (mk(3, 2), (mk(D, P), mk(D, 3)))))
    return samples


def _cell_samples():
    samples = []
    for cls in (lstmkit.RNNCell, lstmkit.GRUCell):
        relu = ({"bias": True, "nonlinearity": "relu"},) if cls is lstmkit.RNNCell else ()
        for kwargs in ({}, {"bias": True}) + relu:
            samples.append((cls, {"input_size": 5, "hidden_size": 10, **kwargs}, lambda mk: (mk(5), mk(10))))
    for kwargs in ({}, {"bias": True}):
        samples.append((lstmkit.LSTMCell, {"input_size": 5, "hidden_size": 10, **kwargs},
                        lambda mk: (mk(5), (mk(10), mk(10)))))
    return samples


SAMPLES = (_rnn_gru_samples(lstmkit.RNN, True) + _rnn_gru_samples(lstmkit.GRU, False) + _lstm_samples()
           + _cell_samples())


def _sample_id(sample):
    cls, kwargs, _ = sample
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("input_size",))


def _inputs(make, dtype, requires_grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def mk(*shape):
        return torch.rand(*shape, generator=gen, dtype=dtype).mul(2).sub(1).requires_grad_(requires_grad)
    return make(mk)


def _build(cls, kwargs, dtype, training=True):
    torch.manual_seed(0)
    return cls(**kwargs).to(dtype).train(training)


def _batched_reference(m, args):
    """torch's no_batch_dim_reference_*: add a batch of one, run, squeeze it away again."""
    if isinstance(m, CELLS):
        x, hx = args[0], (args[1] if len(args) > 1 else None)
        hx = None if hx is None else (tuple(h.unsqueeze(0) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(0))
        out = m(x.unsqueeze(0), hx)
        return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
    batch_dim = 0 if m.batch_first else 1
    hx = args[1] if len(args) > 1 else None
    hx = None if hx is None else (tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1))
    out, h = m(args[0].unsqueeze(batch_dim), hx)
    h = tuple(t.squeeze(1) for t in h) if isinstance(h, tuple) else h.squeeze(1)
    return out.squeeze(batch_dim), h


def _assert_all_close(a, b, dtype, what=""):
    a, b = flat(a), flat(b)
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        torch.testing.assert_close(x, y, **TOLERANCE[dtype], msg=lambda m, i=i: f"{what} tensor {i}: {m}")


samples = pytest.mark.parametrize("sample", SAMPLES, ids=[_sample_id(s) for s in SAMPLES])
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
modes = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


# ---- TestModule checks -----------------------------------------------------------------------------

@samples
@dtypes
@modes
def test_forward(sample, dtype, training):
    """Unbatched forward equals the batched reference and torch.nn's output."""
    cls, kwargs, make = sample
    m = _build(cls, kwargs, dtype, training)
    args = _inputs(make, dtype)
    out = m(*args)
    _assert_all_close(out, _batched_reference(m, args), dtype, "no-batch-dim reference")
    _assert_all_close(out, twin(m)(*args), dtype, "torch.nn")


@pytest.mark.parametrize("cls", list(TWINS))
def test_factory_kwargs(cls):
    """dtype= and device= reach every parameter; the meta device allocates nothing."""
    m = cls(3, 4, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in m.parameters())
    m = cls(3, 4, device="meta")
    assert all(p.is_meta for p in m.parameters())
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in TWINS[cls](3, 4).named_parameters()]


@pytest.mark.parametrize("cls", list(TWINS))
def test_repr(cls):
    """repr and str work and read as torch.nn's, class name aside."""
    for kwargs in ({}, {"bias": False}):
        m = cls(3, 4, **kwargs)
        assert str(m) == repr(m)
        assert repr(m) == repr(TWINS[cls](3, 4, **kwargs))


@samples
def test_pickle(sample):
    cls, kwargs, make = sample
    m = _build(cls, kwargs, torch.float64, training=False)
    args = _inputs(make, torch.float64)
    m2 = pickle.loads(pickle.dumps(m))
    assert type(m2) is type(m)
    _assert_all_close(m2(*args), m(*args), torch.float64)


@samples
def test_save_load(sample):
    """torch.save of the module and of its state dict; weights_only loading of the state dict."""
    cls, kwargs, make = sample
    m = _build(cls, kwargs, torch.float64, training=False)
    args = _inputs(make, torch.float64)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    _assert_all_close(torch.load(buf, weights_only=False)(*args), m(*args), torch.float64, "module")
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = _build(cls, kwargs, torch.float64, training=False)
    with torch.no_grad():
        for p in m2.parameters():
            p.zero_()
    m2.load_state_dict(torch.load(buf, weights_only=True))
    _assert_all_close(m2(*args), m(*args), torch.float64, "state dict")


def _noncontiguous(t):
    return torch.stack([torch.zeros_like(t), t], t.dim()).select(t.dim(), 1).detach().requires_grad_(t.requires_grad)


def _grads(m, args):
    out = flat(m(*args))
    leaves = [t for t in flat(args) if t.requires_grad] + list(m.parameters())
    gen = torch.Generator().manual_seed(7)
    grads_out = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in out]
    return out, torch.autograd.grad(out, leaves, grads_out, allow_unused=True)


def _map(args, fn):
    return tuple(_map(a, fn) if isinstance(a, tuple) else fn(a) for a in args)


@samples
@dtypes
@modes
def test_non_contiguous_tensors(sample, dtype, training):
    """Non-contiguous inputs and states give the outputs and gradients of contiguous ones."""
    cls, kwargs, make = sample
    if training and kwargs.get("dropout"):
        pytest.skip("dropout draws differ between calls")
    m = _build(cls, kwargs, dtype, training)
    args = _inputs(make, dtype, requires_grad=True)
    out, grads = _grads(m, args)
    out_nc, grads_nc = _grads(m, _map(args, _noncontiguous))
    _assert_all_close(out_nc, out, dtype, "outputs")
    _assert_all_close([g for g in grads_nc if g is not None], [g for g in grads if g is not None], dtype, "grads")


def _flat_function(m, args):
    """A function of (inputs..., parameters...) for gradcheck, as torch's _test_gradients_helper."""
    params = list(m.parameters())
    n_inputs = len(flat(args))
    structure = args

    def rebuild(leaves):
        it = iter(leaves)
        return _map(structure, lambda _: next(it))

    def fn(*flat_args):
        inputs, weights = flat_args[:n_inputs], flat_args[n_inputs:]
        values = {name: w for (name, _), w in zip(m.named_parameters(), weights, strict=True)}
        return tuple(flat(torch.func.functional_call(m, values, rebuild(inputs))))

    return fn, [*flat(args), *[p.detach().requires_grad_() for p in params]]


def _one_per_kind(samples):
    """The first sample of each module: gradgradcheck of a 2-layer module costs 20-45 s here (the
    second derivative runs the composite forward, step by step in Python), so this check takes each
    module once; tests/test_dropin.py compares second derivatives of 2-layer bidirectional modules
    with torch.nn's exactly (gradient penalty, second-order MAML)."""
    seen, kept = set(), []
    for sample in samples:
        key = sample[0]
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept


GRADGRAD_SAMPLES = _one_per_kind(SAMPLES)


@samples
def test_grad(sample):
    """Train and eval modes compute the same (no sample has dropout): gradcheck in train mode."""
    cls, kwargs, make = sample
    m = _build(cls, kwargs, torch.float64, True)
    fn, leaves = _flat_function(m, _inputs(make, torch.float64, requires_grad=True))
    assert gradcheck(fn, leaves, check_batched_grad=False)


@pytest.mark.parametrize("sample", GRADGRAD_SAMPLES, ids=[_sample_id(s) for s in GRADGRAD_SAMPLES])
def test_gradgrad(sample):
    cls, kwargs, make = sample
    m = _build(cls, kwargs, torch.float64, True)
    fn, leaves = _flat_function(m, _inputs(make, torch.float64, requires_grad=True))
    assert gradgradcheck(fn, leaves, check_batched_grad=False)


@pytest.mark.parametrize("cls", [lstmkit.RNN, lstmkit.GRU, lstmkit.LSTM])
def test_if_train_and_eval_modes_differ(cls):
    """train_and_eval_differ=True for RNN/GRU/LSTM: dropout acts in train mode only; eval equals
    torch.nn in eval mode."""
    m = cls(4, 5, num_layers=2, dropout=0.5, dtype=torch.float64)
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    m.eval()
    _assert_all_close(m(x), twin(m)(x), torch.float64, "eval")
    _assert_all_close(m(x), m(x), torch.float64, "eval is deterministic")
    m.train()
    assert not torch.equal(m(x)[0], m(x)[0])


@pytest.mark.parametrize("cls", list(TWINS))
def test_device_ctx_init(cls):
    """Built inside ``with torch.device('meta')``, every parameter is on the meta device."""
    with torch.device("meta"):
        m = cls(3, 4)
    assert all(p.is_meta for p in m.parameters())


@pytest.mark.parametrize("cls", list(TWINS))
@pytest.mark.parametrize("swap", [False, True])
def test_to(cls, swap):
    """m.to(dtype): parameters converted, stay Parameters, the module still equals torch.nn."""
    previous = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(swap)
    try:
        m = cls(3, 4)
        ids = [id(p) for p in m.parameters()]
        m.to(torch.float64)
        assert all(isinstance(p, nn.Parameter) and p.dtype == torch.float64 for p in m.parameters())
        if swap:
            assert [id(p) for p in m.parameters()] == ids
    finally:
        torch.__future__.set_swap_module_params_on_conversion(previous)
    x = torch.randn(2, 3, dtype=torch.float64)
    _assert_all_close(m(x), twin(m)(x), torch.float64)   # the twin built outside the swap mode


@pytest.mark.parametrize("cls", list(TWINS))
def test_to_empty(cls):
    with torch.device("meta"):
        m = cls(3, 4)
    m.to_empty(device="cpu")
    assert all(p.device.type == "cpu" and isinstance(p, nn.Parameter) for p in m.parameters())
    m.reset_parameters()
    assert m(torch.randn(2, 3))[0].isfinite().all()


# ---- TestModule.test_errors with the error samples -------------------------------------------------
# Types are torch's; texts are lstmkit's own, so each case names a word the message must hold.

RNN_GRU_LSTM_ERRORS = [
    ((10, 0, 1), {}, ValueError, "hidden_size"),
    ((10, 10, 0), {}, ValueError, "num_layers"),
    ((3, 5), {"bias": 0}, TypeError, "bias"),
    ((3, 5), {"bias": 1}, TypeError, "bias"),
    ((3, 5), {"bias": "True"}, TypeError, "bias"),
    ((3, 5), {"batch_first": 0}, TypeError, "batch_first"),
    ((3, 5), {"batch_first": 1}, TypeError, "batch_first"),
    ((3, 5), {"batch_first": "False"}, TypeError, "batch_first"),
    ((3.0, 5), {}, TypeError, "input_size"),
    (("10", 5), {}, TypeError, "input_size"),
    ((0, 5), {}, ValueError, "input_size"),
    ((-1, 5), {}, ValueError, "input_size"),
    ((3, 5.0), {}, TypeError, "hidden_size"),
]


@pytest.mark.parametrize("cls", [lstmkit.RNN, lstmkit.GRU, lstmkit.LSTM])
@pytest.mark.parametrize("args, kwargs, error, word", RNN_GRU_LSTM_ERRORS,
                         ids=[f"{a}-{k}" for a, k, _, _ in RNN_GRU_LSTM_ERRORS])
def test_errors_construction(cls, args, kwargs, error, word):
    with pytest.raises(error, match=word):
        cls(*args, **kwargs)


@pytest.mark.parametrize("cls", [lstmkit.RNN, lstmkit.GRU, lstmkit.LSTM])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_errors_dtype_mismatch(cls, dtype):
    """The input's dtype differs from the weights': ValueError that says how to convert either."""
    other = torch.float64 if dtype == torch.float32 else torch.float32
    with pytest.raises(ValueError, match=r"(?s)input.*dtype.*input\.to\(.*model\.to\("):
        cls(3, 5, dtype=dtype)(torch.randn(2, 4, 3, dtype=other))


CELL_ERRORS = [  # (cell constructor args, input shape, hx shape, error, word)
    ((10, 20), (3, 11), (3, 20), RuntimeError, "11"),
    ((10, 20), (3, 10), (3, 21), RuntimeError, "21"),
    ((10, 20), (3, 10), (5, 20), RuntimeError, "5"),
    ((10, 20), (3, 10), (3, 1, 1, 20), ValueError, "4"),
]


@pytest.mark.parametrize("cls", [lstmkit.RNNCell, lstmkit.GRUCell, lstmkit.LSTMCell])
@pytest.mark.parametrize("args, x_shape, h_shape, error, word", CELL_ERRORS)
def test_errors_cells(cls, args, x_shape, h_shape, error, word):
    cell = cls(*args)
    h = torch.randn(h_shape)
    with pytest.raises(error, match=re.escape(word)):
        cell(torch.randn(x_shape), (h, h) if cls is lstmkit.LSTMCell else h)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_errors_rnn_cell_nonlinearity_hidden(nonlinearity):
    with pytest.raises(RuntimeError, match="21"):
        lstmkit.RNNCell(10, 20, nonlinearity=nonlinearity)(torch.randn(3, 10), torch.randn(3, 21))


def test_packed_sample_matches_torch():
    """module_inputs_torch_nn_RNN_GRU(with_packed_sequence=True): packed input, against torch.nn."""
    for cls in (lstmkit.RNN, lstmkit.GRU):
        m = cls(2, 2, num_layers=2, dtype=torch.float64)
        for shape, lengths in (((5, 2, 2), [5, 3]), ((5, 5, 2), [5, 3, 3, 2, 2])):
            x = pack_padded_sequence(torch.randn(*shape, dtype=torch.float64), torch.tensor(lengths))
            _assert_all_close(m(x), twin(m)(x), torch.float64, cls.__name__)

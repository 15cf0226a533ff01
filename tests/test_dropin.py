"""What users do around an nn.LSTM, done to lstmkit's modules with torch.nn's twin as the oracle.

Second derivatives (gradient penalties, second-order MAML through ``functional_call``,
``gradgradcheck``), ``torch.func`` (grad, jacrev, jvp) and forward-mode AD, parametrizations and
pruning on every kind of weight (new and old APIs), the AWD-LSTM / fastai weight-drop pattern (a
weight replaced by a plain tensor), float16/bfloat16 and CPU autocast, ``isinstance`` and
``all_weights``, in-place changes of outputs, batch size 0. Each test builds the torch.nn module,
copies its weights into lstmkit's, does the same thing to both and compares: float64 within 1e-9
unless stated.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize, prune

import lstmkit
from lstmkit.registry import RECURRENT

F64 = {"rtol": 1e-9, "atol": 1e-9}
SEQUENCE = {name: (r.module, r.torch_module) for name, r in RECURRENT.items()}
CELLS = {f"{name}_cell": (r.cell, r.torch_cell) for name, r in RECURRENT.items()}


def pair(kind: str, *args, dtype=torch.float64, **kwargs) -> tuple[nn.Module, nn.Module]:
    """(lstmkit module, torch.nn twin) with the same weights."""
    ours_cls, theirs_cls = {**SEQUENCE, **CELLS}[kind]
    torch.manual_seed(0)
    theirs = theirs_cls(*args, **kwargs, dtype=dtype)
    ours = ours_cls(*args, **kwargs, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def first(out):
    """The main output: y of a sequence module, h' of a cell."""
    return out[0] if isinstance(out, tuple) else out


def close(a, b, **tol):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **(tol or F64))


# ---- second derivatives ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(SEQUENCE) + list(CELLS))
def test_gradient_penalty_equals_torch(kind):
    """d/dθ ‖∂(y²)/∂x‖² (create_graph=True) for the input and every parameter."""
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 3, 4, **({"num_layers": 2, "bidirectional": True} if sequence else {}))
    x = torch.randn(*((5, 2, 3) if sequence else (2, 3)), dtype=torch.float64, requires_grad=True)

    def penalty_grads(module):
        y = first(module(x))
        (dx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(dx.pow(2).sum() + y.sum(), [x, *module.parameters()])
    close(penalty_grads(ours), penalty_grads(theirs))


@pytest.mark.parametrize("kind", list(SEQUENCE) + list(CELLS))
def test_gradient_penalty_through_a_module_used_three_times_equals_torch(kind):
    """The same weights in several places of one graph (a cell called step by step; a sequence
    module applied to its own output): a create_graph backward must not count the earlier uses
    twice. d/dθ ‖∂(y²)/∂x‖² for the input and every parameter, three uses."""
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 4, 4, **({"num_layers": 2} if sequence else {}))
    x = torch.randn(*((5, 2, 4) if sequence else (2, 4)), dtype=torch.float64, requires_grad=True)

    def penalty_grads(module):
        y, state = x, None
        for _ in range(3):
            if sequence:
                y = first(module(y))
            else:
                state = module(x, state)
                y = first(state)
        (dx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(dx.pow(2).sum() + y.sum(), [x, *module.parameters()])
    close(penalty_grads(ours), penalty_grads(theirs))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "lstm_cell"])
def test_second_order_maml_through_functional_call_equals_torch(kind):
    """One inner SGD step on fast weights (create_graph), the outer loss's meta-gradient."""
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 3, 4)
    x = torch.randn(*((6, 2, 3) if sequence else (2, 3)), dtype=torch.float64)

    def meta_grad(module):
        params = dict(module.named_parameters())
        inner = first(torch.func.functional_call(module, params, (x,))).pow(2).mean()
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        fast = {k: p - 0.5 * g for (k, p), g in zip(params.items(), grads, strict=True)}
        outer = first(torch.func.functional_call(module, fast, (x.flip(0),))).sum()
        return torch.autograd.grad(outer, list(params.values()))
    close(meta_grad(ours), meta_grad(theirs))


@pytest.mark.parametrize("kind, kwargs", [("lstm", {"proj_size": 2}), ("gru", {}), ("rnn", {"nonlinearity": "relu"})])
def test_module_gradgradcheck_with_lengths(kind, kwargs):
    ours, _ = pair(kind, 2, 3, **kwargs)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    params = list(ours.parameters())
    assert torch.autograd.gradgradcheck(lambda x, *p: ours(x, lengths=[4, 2])[0], (x, *params), atol=1e-6)


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_gradgradcheck(kind):
    ours, _ = pair(kind, 2, 3)
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, *p: first(ours(x)), (x, *ours.parameters()), atol=1e-6)


# ---- torch.func and forward-mode AD ------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(SEQUENCE) + ["gru_cell"])
def test_torch_func_grad_and_jacrev_equal_torch(kind):
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 3, 4)
    x = torch.randn(*((5, 2, 3) if sequence else (2, 3)), dtype=torch.float64)

    def loss(module):
        return lambda params, x: first(torch.func.functional_call(module, params, (x,))).tanh().sum()
    params = {k: v.detach() for k, v in theirs.named_parameters()}
    close(torch.func.grad(loss(ours))(params, x).values(), torch.func.grad(loss(theirs))(params, x).values())
    jacobians = [torch.func.jacrev(loss(m), argnums=1)(params, x) for m in (ours, theirs)]
    close(jacobians[:1], jacobians[1:])


@pytest.mark.parametrize("kind", list(SEQUENCE) + list(CELLS))
def test_forward_mode_ad_equals_torch(kind):
    """torch.autograd.forward_ad and torch.func.jvp: the tangent of the output along a tangent of x."""
    import torch.autograd.forward_ad as fwAD

    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 3, 4)
    x = torch.randn(*((5, 2, 3) if sequence else (2, 3)), dtype=torch.float64)
    v = torch.randn_like(x)
    tangents = []
    for module in (ours, theirs):
        with fwAD.dual_level():
            tangents.append(fwAD.unpack_dual(first(module(fwAD.make_dual(x, v)))).tangent)
    close(tangents[:1], tangents[1:])
    jvp = [torch.func.jvp(lambda x, m=m: first(m(x)), (x,), (v,))[1] for m in (ours, theirs)]
    close(jvp[:1], jvp[1:])


# ---- weights read as attributes: parametrizations, pruning, weight drop -----------------------------

def _weight_norm(m, name):
    parametrizations.weight_norm(m, name)


def _spectral_norm(m, name):
    parametrizations.spectral_norm(m, name)


def _orthogonal(m, name):
    parametrizations.orthogonal(m, name)


def _old_weight_norm(m, name):
    torch.nn.utils.weight_norm(m, name)


def _prune(m, name):
    prune.l1_unstructured(m, name, amount=0.5)


class _Scale(nn.Module):
    def forward(self, w):
        return 0.5 * w


def _register(m, name):
    parametrize.register_parametrization(m, name, _Scale())


WAYS = {"weight_norm": _weight_norm, "spectral_norm": _spectral_norm, "orthogonal": _orthogonal,
        "old_weight_norm": _old_weight_norm, "prune": _prune, "register_parametrization": _register}


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("kind, name", [("lstm", "weight_ih_l0"), ("lstm", "weight_hh_l1"), ("lstm", "bias_ih_l0"),
                                        ("lstm", "weight_hr_l0"), ("gru", "bias_hh_l0"), ("rnn", "weight_hh_l0"),
                                        ("lstm_cell", "weight_hh"), ("gru_cell", "bias_ih")])
def test_parametrized_or_pruned_weight_is_used_as_torch_uses_it(way, kind, name):
    if name.startswith("bias") and way in ("spectral_norm", "orthogonal", "weight_norm", "old_weight_norm"):
        pytest.skip("a norm or orthogonality of a 1-D bias is not defined")
    sequence = kind in SEQUENCE
    kwargs = {"num_layers": 2, "proj_size": 3} if kind == "lstm" else ({"num_layers": 2} if sequence else {})
    ours, theirs = pair(kind, 5, 6, **kwargs)
    for module in (ours, theirs):
        torch.manual_seed(1)                                # spectral_norm draws its vectors
        WAYS[way](module, name)
        if way == "spectral_norm":      # torch.nn.LSTM reads a weight twice per forward (each a power
            module.eval()               # iteration in training): compare where the iteration is frozen
    x = torch.randn(*((4, 2, 5) if sequence else (2, 5)), dtype=torch.float64)
    outs = [first(m(x)) for m in (ours, theirs)]
    close(outs[:1], outs[1:])
    grads = [torch.autograd.grad(o.sum(), list(m.parameters())) for o, m in zip(outs, (ours, theirs), strict=True)]
    close(grads[0], grads[1])


class WeightDrop(nn.Module):
    """The AWD-LSTM pattern: the raw weight is the parameter; before each forward a dropped copy is
    set on the module as a plain tensor attribute (fastai's WeightDropout does the same)."""

    def __init__(self, module: nn.Module, name: str, p: float):
        super().__init__()
        self.module, self.name, self.p = module, name, p
        raw = getattr(module, name)
        del module._parameters[name]
        module.register_parameter(name + "_raw", nn.Parameter(raw.detach().clone()))
        setattr(module, name, raw.detach().clone())

    def forward(self, *args):
        raw = getattr(self.module, self.name + "_raw")
        setattr(self.module, self.name, nn.functional.dropout(raw, self.p, training=self.training))
        return self.module(*args)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "lstm_cell"])
def test_weight_drop_pattern_equals_torch(kind):
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 3, 4)
    name = "weight_hh_l0" if sequence else "weight_hh"
    wrapped = [WeightDrop(m, name, 0.5) for m in (ours, theirs)]
    x = torch.randn(*((5, 2, 3) if sequence else (2, 3)), dtype=torch.float64)
    outs = []
    for w in wrapped:
        torch.manual_seed(3)                                # the same dropout mask for both
        outs.append(first(w(x)))
    close(outs[:1], outs[1:])
    grads = [torch.autograd.grad(o.sum(), list(w.parameters())) for o, w in zip(outs, wrapped, strict=True)]
    close(grads[0], grads[1])


def test_projection_weight_of_another_shape_is_refused_not_read_out_of_bounds():
    """A weight_hr set to a tensor of the wrong shape raises a RuntimeError (it never reaches a
    kernel that would read past its end)."""
    ours, _ = pair("lstm", 3, 6, proj_size=2, dtype=torch.float32)
    del ours._parameters["weight_hr_l0"]
    ours.weight_hr_l0 = torch.randn(2, 3)
    with pytest.raises(RuntimeError):
        ours(torch.randn(4, 2, 3))


# ---- dtypes: float16, bfloat16, CPU autocast ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", list(SEQUENCE) + ["lstm_cell"])
def test_reduced_precision_is_as_accurate_as_torch(kind, dtype):
    """Forward and input gradient in bfloat16/float16: the error against float64 is no larger than
    torch.nn's in the same dtype (plus one rounding step of the dtype)."""
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 8, 16, dtype=dtype)
    exact = {**SEQUENCE, **CELLS}[kind][1](8, 16, dtype=torch.float64)
    exact.load_state_dict(theirs.state_dict())
    x = torch.randn(*((20, 3, 8) if sequence else (3, 8)))
    ulp = torch.finfo(dtype).eps
    errors = []
    for module, cast in ((ours, dtype), (theirs, dtype), (exact, torch.float64)):
        xi = x.to(cast).requires_grad_()
        y = first(module(xi))
        assert y.dtype == cast
        (dx,) = torch.autograd.grad(y.float().pow(2).sum(), xi)
        errors.append((y.double(), dx.double()))
    for i in range(2):
        ours_err = (errors[0][i] - errors[2][i]).abs().max()
        torch_err = (errors[1][i] - errors[2][i]).abs().max()
        assert ours_err <= torch_err + ulp * errors[2][i].abs().max(), (i, ours_err, torch_err)


@pytest.mark.parametrize("kind", ["lstm", "gru", "lstm_cell"])
def test_cpu_autocast_gives_torch_dtypes_and_values(kind):
    """Under torch.autocast('cpu', bfloat16) nn.LSTM returns bfloat16, nn.GRU and the cells float32:
    lstmkit the same, with values within bfloat16's resolution. (On a CPU whose oneDNN has no bfloat16
    LSTM, AVX2 alone, nn.LSTM raises there; lstmkit still returns bfloat16, checked against float32.)"""
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 8, 16, dtype=torch.float32)
    x = torch.randn(*((10, 3, 8) if sequence else (3, 8)), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = first(ours(x))
        try:
            b = first(theirs(x))
        except RuntimeError as e:           # nn.LSTM's oneDNN path has no bfloat16 LSTM on this CPU (AVX2)
            if kind != "lstm" or "primitive descriptor" not in str(e):
                raise
            b = None
    if b is None:                           # then: the dtype it gives where it runs, values as in float32
        assert a.dtype == torch.bfloat16
        b = first(theirs(x))
    else:
        assert a.dtype == b.dtype
    torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=2e-2)
    a.float().sum().backward()
    assert x.grad is not None and all(p.grad.dtype == torch.float32 for p in ours.parameters())


# ---- what torch's utilities look for ------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(SEQUENCE) + list(CELLS))
def test_isinstance_of_the_torch_twin(kind):
    ours_cls, theirs_cls = {**SEQUENCE, **CELLS}[kind]
    module = ours_cls(3, 4)
    assert isinstance(module, theirs_cls)
    assert isinstance(module, nn.RNNBase if kind in SEQUENCE else nn.RNNCellBase)


def test_all_weights_lists_the_parameters_as_torch_does():
    ours, theirs = pair("lstm", 3, 4, num_layers=2, bidirectional=True, proj_size=2)
    assert [[tuple(w.shape) for w in ws] for ws in ours.all_weights] == \
        [[tuple(w.shape) for w in ws] for ws in theirs.all_weights]
    assert all(w is getattr(ours, n) for ws, names in zip(ours.all_weights, ours._all_weights, strict=True)
               for w, n in zip(ws, names, strict=True))


def test_user_init_loop_that_looks_for_lstms_reaches_lstmkit():
    model = nn.Sequential(lstmkit.LSTM(3, 4), nn.Linear(4, 2))
    for m in model.modules():
        if isinstance(m, nn.LSTM):
            for name, p in m.named_parameters():
                if "bias" in name:
                    nn.init.zeros_(p)
    assert all(p.abs().sum() == 0 for n, p in model[0].named_parameters() if "bias" in n)


# ---- in-place changes, edge sizes -------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(SEQUENCE))
def test_in_place_change_of_the_output_behaves_as_torch(kind):
    """torch.nn's RNNs in float64 let a caller scale y in place before backward (nn.LSTM in float32
    refuses: oneDNN saves y); lstmkit allows it in every dtype, with the twin's gradients."""
    ours, theirs = pair(kind, 3, 4)
    outcomes = []
    for module in (ours, theirs):
        x = torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
        y = first(module(x))
        y.mul_(2)
        outcomes.append(torch.autograd.grad(y.sum(), x)[0])
    close(outcomes[:1], outcomes[1:])


@pytest.mark.parametrize("kind", list(SEQUENCE) + list(CELLS))
def test_batch_of_zero_sequences_as_torch(kind):
    sequence = kind in SEQUENCE
    ours, theirs = pair(kind, 3, 4, **({"num_layers": 2, "bidirectional": True} if sequence else {}))
    x = torch.randn(*((5, 0, 3) if sequence else (0, 3)), dtype=torch.float64, requires_grad=True)
    a, b = first(ours(x)), first(theirs(x))
    assert a.shape == b.shape
    a.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in ours.parameters())

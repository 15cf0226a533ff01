"""Export and compilation, used as a user would: ``torch.jit.trace`` (and ``jit.save``/``load``),
``torch.export``, ``torch.compile`` and ``torch.onnx.export`` (both exporters, run in onnxruntime).

What it is: every test builds a module, exports or compiles it on one input, runs the result on a
NEW input (other values; for the exporters with dynamic dims, another batch size and length) and
compares with the eager module at a stated tolerance. The recurrences must reach these tools as
``lstmkit::`` operators (trace, export, compile) or as torch.nn's own operators (ONNX: ONNX's
LSTM/GRU/RNN nodes). Where torch.nn's own module does not export, lstmkit must fail the same way
(never a model that is silently wrong). What it is not: a test of the math (tests/test_modules_oracle.py).
``torch.fx.symbolic_trace`` is left out: it does not work for torch.nn.LSTM either.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lstmkit

TRACE_TOL = 1e-6        # float32: the same operators on the same numbers
COMPILE_TOL = 1e-5      # float32: a compiled graph may reassociate sums in backward
ONNX_TOL = 1e-5         # float32: onnxruntime's own LSTM/GRU/RNN kernels
T0, B0 = 4, 3           # the example input's length and batch size
T1, B1 = 6, 5           # the new input's, where the dims are dynamic

SEQUENCES = {
    "lstm_2layer_bidir": lambda: lstmkit.LSTM(3, 5, num_layers=2, bidirectional=True),
    "lstm_batch_first_proj": lambda: lstmkit.LSTM(3, 5, batch_first=True, proj_size=2),
    "gru_2layer_bidir_batch_first": lambda: lstmkit.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True),
    "rnn_tanh_2layer": lambda: lstmkit.RNN(3, 5, num_layers=2),
    "rnn_relu_bidir": lambda: lstmkit.RNN(3, 5, nonlinearity="relu", bidirectional=True),
}
CELLS = {
    "lstm_cell": lambda: lstmkit.LSTMCell(3, 5),
    "gru_cell": lambda: lstmkit.GRUCell(3, 5),
    "rnn_cell": lambda: lstmkit.RNNCell(3, 5, nonlinearity="relu"),
}
ALL = {**SEQUENCES, **CELLS}
ONNX_NODE = {lstmkit.LSTM: "LSTM", lstmkit.GRU: "GRU", lstmkit.RNN: "RNN"}


# ---- helpers ---------------------------------------------------------------------------------------

def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    return ALL[name]()


def is_cell(m: nn.Module) -> bool:
    return isinstance(m, nn.RNNCellBase)


def example(m: nn.Module, T: int, B: int, seed: int) -> torch.Tensor:
    """An input for m: (B,I) for a cell, else (T,B,I) or (B,T,I) with batch_first."""
    g = torch.Generator().manual_seed(seed)
    if is_cell(m):
        return torch.randn(B, m.input_size, generator=g)
    shape = (B, T, m.input_size) if m.batch_first else (T, B, m.input_size)
    return torch.randn(shape, generator=g)


def flat(out) -> list[torch.Tensor]:
    """A module's output (tensor, or nested tuples of tensors) as a flat list: y, h_n[, c_n]."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for part in out for t in flat(part)]


def assert_all_close(got, want, tol: float) -> None:
    got, want = flat(got), flat(want)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        g = torch.as_tensor(g)
        assert g.shape == w.shape
        torch.testing.assert_close(g, w.detach(), atol=tol, rtol=tol)


def grads(m: nn.Module, x: torch.Tensor, run=None) -> list[torch.Tensor]:
    """Gradients of a fixed random projection of every output w.r.t. x and each of m's parameters
    (by name), through run (a compiled m, or a traced copy with parameters of the same names)."""
    run = m if run is None else run
    params = dict(run.named_parameters()) if isinstance(run, torch.jit.ScriptModule) else dict(m.named_parameters())
    x = x.clone().requires_grad_()
    outs = flat(run(x))
    g = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in outs)
    names = [name for name, _ in m.named_parameters()]
    return list(torch.autograd.grad(loss, [x, *(params[n] for n in names)]))


def dynamic_dims(m: nn.Module) -> dict[int, torch.export.Dim]:
    """torch.export dims of the input: batch, and time for a sequence module."""
    B, T = torch.export.Dim("B", min=2, max=64), torch.export.Dim("T", min=2, max=64)
    if is_cell(m):
        return {0: B}
    return {0: B, 1: T} if m.batch_first else {0: T, 1: B}


def lstmkit_ops(nodes) -> list[str]:
    return [str(n) for n in nodes if "lstmkit" in str(n)]


# ---- torch.jit.trace ---------------------------------------------------------------------------------

@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("name", ALL)
def test_jit_trace_runs_new_inputs_and_survives_save_load(name, grad, tmp_path):
    m = make(name)
    x0, x1 = example(m, T0, B0, seed=1), example(m, T0, B0, seed=2)    # same shape, new values
    with torch.set_grad_enabled(grad):
        traced = torch.jit.trace(m, (x0,))                             # its check reruns under no_grad
    graph = traced.inlined_graph
    assert lstmkit_ops(n.kind() for n in graph.nodes()), "the recurrence must be an lstmkit:: operator"
    assert len(list(graph.inputs())) == 2                              # self and the input, no constant
    with torch.set_grad_enabled(grad):
        assert_all_close(traced(x1), m(x1), TRACE_TOL)
    torch.jit.save(traced, tmp_path / "m.pt")
    loaded = torch.jit.load(tmp_path / "m.pt")
    with torch.set_grad_enabled(grad):
        assert_all_close(loaded(x1), m(x1), TRACE_TOL)
    # one traced graph serves training too, wherever it was traced
    assert_all_close(grads(m, x1, loaded), grads(m, x1), TRACE_TOL)
    assert_all_close(grads(m, x1, traced), grads(m, x1), TRACE_TOL)


# ---- torch.export ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_export_dynamic_batch_and_length(name):
    m = make(name)
    x0, x1 = example(m, T0, B0, seed=1), example(m, T1, B1, seed=2)    # another batch and length
    ep = torch.export.export(m, (x0,), dynamic_shapes=(dynamic_dims(m),))
    assert lstmkit_ops(n.target for n in ep.graph.nodes if n.op == "call_function")
    with torch.no_grad():
        assert_all_close(ep.module()(x1), m(x1), TRACE_TOL)
        decomposed = ep.run_decompositions()
        assert_all_close(decomposed.module()(x1), m(x1), TRACE_TOL)


# ---- torch.compile -----------------------------------------------------------------------------------

@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ALL)
def test_compile_default_policy(name, fresh_dynamo):
    """Without allow_rnn, Dynamo leaves torch.nn's recurrent modules (and so lstmkit's) to eager:
    the answers and gradients are still the module's."""
    m = make(name)
    x = example(m, T0, B0, seed=2)
    compiled = torch.compile(m, backend="aot_eager")
    assert_all_close(compiled(x), m(x), COMPILE_TOL)
    for g, w in zip(grads(m, x, compiled), grads(m, x), strict=True):
        torch.testing.assert_close(g, w, atol=COMPILE_TOL, rtol=COMPILE_TOL)


@pytest.mark.parametrize("name", ALL)
def test_compile_allow_rnn_fullgraph(name, fresh_dynamo):
    """With allow_rnn the module compiles as one graph (fullgraph raises at any break) holding the
    lstmkit:: operators; forward and backward equal eager."""
    from torch._dynamo.testing import CompileCounterWithBackend

    m = make(name)
    x = example(m, T0, B0, seed=2)
    counter = CompileCounterWithBackend("aot_eager")
    with torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(m, backend=counter, fullgraph=True)
        assert_all_close(compiled(x), m(x), COMPILE_TOL)
        got = grads(m, x, compiled)
    assert counter.frame_count == 2                     # x without, then with requires_grad: one graph each
    for gm in counter.graphs:
        assert lstmkit_ops(n.target for n in gm.graph.nodes if n.op == "call_function")
    for g, w in zip(got, grads(m, x), strict=True):
        torch.testing.assert_close(g, w, atol=COMPILE_TOL, rtol=COMPILE_TOL)


def test_compile_inductor_lstm(fresh_dynamo):
    m = make("lstm_2layer_bidir")
    x = example(m, T0, B0, seed=2)
    with torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(m, fullgraph=True)
        assert_all_close(compiled(x), m(x), COMPILE_TOL)
        got = grads(m, x, compiled)
    for g, w in zip(got, grads(m, x), strict=True):
        torch.testing.assert_close(g, w, atol=COMPILE_TOL, rtol=COMPILE_TOL)


# ---- ONNX --------------------------------------------------------------------------------------------

def onnx_export(m: nn.Module, x0: torch.Tensor, path, dynamo: bool) -> None:
    """Export m with a dynamic batch (and, for a sequence module, length) to path."""
    dims = dynamic_dims(m)
    if dynamo:
        torch.onnx.export(m, (x0,), path, dynamo=True, dynamic_shapes=(dims,))
    else:
        axes = {"x": {axis: dim.__name__ for axis, dim in dims.items()}}
        torch.onnx.export(m, (x0,), path, dynamo=False, input_names=["x"], dynamic_axes=axes)


def onnx_run(path, x: torch.Tensor) -> list[torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(a) for a in session.run(None, {session.get_inputs()[0].name: x.numpy()})]


def torch_twin(m: nn.Module) -> nn.Module:
    """torch.nn's own module with m's configuration and weights."""
    if not is_cell(m):
        return m.to_torch()
    twin_type = next(c for c in type(m).__mro__ if c.__module__ == "torch.nn.modules.rnn")
    kwargs = {"nonlinearity": m.nonlinearity} if isinstance(m, nn.RNNCell) else {}
    twin = twin_type(m.input_size, m.hidden_size, m.bias, **kwargs)
    twin.load_state_dict(m.state_dict())
    return twin


def onnx_outcome(m: nn.Module, x0: torch.Tensor, x1: torch.Tensor, path, dynamo: bool):
    """("ok", outputs on x1) or the stage that failed ("export" or "run") and its exception."""
    try:
        onnx_export(m, x0, path, dynamo)
    except Exception as e:                               # noqa: BLE001 (compared with torch.nn's outcome)
        return "export", e
    try:
        return "ok", onnx_run(path, x1)
    except Exception as e:                               # noqa: BLE001
        return "run", e


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("name", ALL)
def test_onnx_runs_in_onnxruntime_with_dynamic_dims(name, dynamo, tmp_path):
    """onnxruntime on another batch size and length equals the module (outputs and final states)
    and the graph holds ONNX's own LSTM/GRU/RNN node. Where torch.nn's own module cannot do this
    with this exporter, lstmkit must fail too, at the same stage (export: the same exception type)."""
    pytest.importorskip("onnx", reason="the ONNX tests need the onnx package (dev extra)")
    pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (dev extra)")
    if dynamo:
        pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (dev extra)")
    import onnx

    m = make(name).eval()
    x0, x1 = example(m, T0, B0, seed=1), example(m, T1, B1, seed=2)
    stage, got = onnx_outcome(m, x0, x1, tmp_path / "m.onnx", dynamo)
    if stage != "ok":
        twin = torch_twin(m).eval()
        twin_stage, twin_got = onnx_outcome(twin, x0, x1, tmp_path / "twin.onnx", dynamo)
        ours = f"lstmkit fails at {stage}: {type(got).__name__}: {str(got)[:300]}"
        assert twin_stage == stage, f"torch.nn's own {type(twin).__name__}: {twin_stage}; {ours}"
        if stage == "export":
            assert type(twin_got) is type(got), f"torch.nn: {type(twin_got).__name__}: {twin_got}; {ours}"
        return
    with torch.no_grad():
        assert_all_close(got, m(x1), ONNX_TOL)
    if not is_cell(m):
        ops = {node.op_type for node in onnx.load(tmp_path / "m.onnx").graph.node}
        assert ONNX_NODE[type(m)] in ops


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_onnx_refuses_lengths(dynamo, tmp_path):
    pytest.importorskip("onnx", reason="the ONNX tests need the onnx package (dev extra)")
    if dynamo:
        pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (dev extra)")
    m = make("lstm_2layer_bidir").eval()
    x0 = example(m, T0, B0, seed=1)
    lengths = torch.tensor([4, 2, 3])
    with pytest.raises(Exception) as info:
        torch.onnx.export(m, (x0,), tmp_path / "m.onnx", kwargs={"lengths": lengths}, dynamo=dynamo)
    # the exporter may wrap it: the RuntimeError and its message are in the chain; or (dynamo=True
    # retries its capture outside ONNX mode) the conversion names the lstmkit operator it cannot map
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(e, RuntimeError) and "lengths= and return_trace have no ONNX operator" in str(e)
               or dynamo and "lstmkit.lstm_layer" in str(e) for e in chain), [f"{type(e).__name__}: {e}" for e in chain]


"""Functional core: one layer and direction of each recurrent model over a whole sequence.

Each model has a pure-PyTorch recurrence (forward and its hand-written backward, the contract
that compiled kernels in ``lstmkit.kernels`` follow: ``lstm.py``, ``gru.py``, ``rnn.py``), PyTorch
operators that run it with autograd (``lstmkit::lstm_layer`` ...: ``lstm_op.py``, ``gru_op.py``,
``rnn_op.py``, rules in ``ops.py``), and the same forward in plain differentiable operations for
higher derivatives and ``torch.func`` (``composite.py``). ``lstm_layer``, ``gru_layer`` and
``rnn_layer`` are the entries the modules call.
"""

from lstmkit.functional.composite import gru_layer_composite, lstm_layer_composite, rnn_layer_composite
from lstmkit.functional.gru import gru_recurrence_backward, gru_recurrence_forward
from lstmkit.functional.gru_op import gru_layer
from lstmkit.functional.lstm import lstm_layer_forward, lstm_recurrence_backward, lstm_recurrence_forward
from lstmkit.functional.lstm_op import lstm_layer
from lstmkit.functional.rnn import NONLINEARITIES, rnn_recurrence_backward, rnn_recurrence_forward
from lstmkit.functional.rnn_op import rnn_layer

__all__ = [
    "NONLINEARITIES", "gru_layer", "gru_layer_composite", "gru_recurrence_backward", "gru_recurrence_forward",
    "lstm_layer", "lstm_layer_composite", "lstm_layer_forward", "lstm_recurrence_backward",
    "lstm_recurrence_forward", "rnn_layer", "rnn_layer_composite", "rnn_recurrence_backward",
    "rnn_recurrence_forward",
]

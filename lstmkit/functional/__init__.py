"""Functional core: one layer and direction of each recurrent model over a whole sequence.

Each model has a pure-PyTorch recurrence (forward and its hand-written backward, the contract
that compiled kernels in ``lstmkit.kernels`` follow) and an ``autograd.Function`` that wraps it
with the input projection and the weight gradients as large matrix products. The LSTM and the GRU
also have ``lstm_layer_inference`` / ``gru_layer_inference``: the Function's forward without the
cache that backward needs.
"""

from lstmkit.functional.gru import (
    GRULayerFunction,
    gru_layer_inference,
    gru_recurrence_backward,
    gru_recurrence_forward,
)
from lstmkit.functional.lstm import (
    LSTMLayerFunction,
    lstm_layer_forward,
    lstm_layer_inference,
    lstm_recurrence_backward,
    lstm_recurrence_forward,
)
from lstmkit.functional.rnn import (
    NONLINEARITIES,
    RNNLayerFunction,
    rnn_recurrence_backward,
    rnn_recurrence_forward,
)

__all__ = [
    "GRULayerFunction", "LSTMLayerFunction", "NONLINEARITIES", "RNNLayerFunction",
    "gru_layer_inference", "gru_recurrence_backward", "gru_recurrence_forward",
    "lstm_layer_forward", "lstm_layer_inference", "lstm_recurrence_backward", "lstm_recurrence_forward",
    "rnn_recurrence_backward", "rnn_recurrence_forward",
]

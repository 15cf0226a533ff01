"""The executable specification: LSTM, RNN and GRU in NumPy float64, forward and hand-derived BPTT.

What it is: the oracle every other path of lstmkit is tested against; the article's equations
live in ``lstm.py``'s docstring (with the dimension legend), and nowhere else.
What it is not: fast, multi-layer, bidirectional or length-aware; it never imports torch.
References: the article "LSTM(Long Short-Term Memory): Gate를 도입해 RNN의 한계를 완화한 모델"
(2025); ``torch.nn.LSTM``/``RNN``/``GRU`` documentation.
"""

from .gru import (
    GRUCache,
    GRUGrads,
    GRUStepCache,
    GRUWeights,
    gru_backward,
    gru_forward,
    gru_step,
    gru_step_backward,
)
from .lstm import (
    LSTMCache,
    LSTMGrads,
    LSTMStepCache,
    LSTMWeights,
    lstm_backward,
    lstm_forward,
    lstm_step,
    lstm_step_backward,
    sigmoid,
)
from .rnn import (
    RNNCache,
    RNNGrads,
    RNNStepCache,
    RNNWeights,
    rnn_backward,
    rnn_forward,
    rnn_step,
    rnn_step_backward,
)

__all__ = [
    "LSTMWeights", "LSTMGrads", "LSTMStepCache", "LSTMCache",
    "lstm_step", "lstm_step_backward", "lstm_forward", "lstm_backward",
    "RNNWeights", "RNNGrads", "RNNStepCache", "RNNCache",
    "rnn_step", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "GRUWeights", "GRUGrads", "GRUStepCache", "GRUCache",
    "gru_step", "gru_step_backward", "gru_forward", "gru_backward",
    "sigmoid",
]

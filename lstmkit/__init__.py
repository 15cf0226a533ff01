"""lstmkit: the LSTM of the article, from its equations.

Exact to ``torch.nn.LSTM``, fast on the CPU, and able to show its gates at work.
"""

__version__ = "0.1.0"

from lstmkit.modules import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    GRUTrace,
    LSTMCell,
    LSTMTrace,
    RNNCell,
    RNNTrace,
    Trace,
    VariantLSTM,
    VariantLSTMCell,
    VariantTrace,
)

__all__ = ["GRU", "GRUCell", "GRUTrace", "LSTM", "LSTMCell", "LSTMTrace", "RNN", "RNNCell", "RNNTrace", "Trace",
           "VariantLSTM", "VariantLSTMCell", "VariantTrace"]

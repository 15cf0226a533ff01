"""PyTorch modules: LSTM, GRU, RNN and their cells, drop-in for ``torch.nn``'s, plus traces."""

from lstmkit.modules.cells import GRUCell, LSTMCell, RNNCell
from lstmkit.modules.gru import GRU
from lstmkit.modules.lstm import LSTM
from lstmkit.modules.rnn import RNN
from lstmkit.modules.trace import GRUTrace, LSTMTrace, RNNTrace, Trace

__all__ = ["GRU", "GRUCell", "GRUTrace", "LSTM", "LSTMCell", "LSTMTrace", "RNN", "RNNCell", "RNNTrace", "Trace"]

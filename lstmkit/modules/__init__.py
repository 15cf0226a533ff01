"""PyTorch modules: LSTM, GRU, RNN and their cells, drop-in for ``torch.nn``'s, plus traces;
VariantLSTM and its cell for the variants of ``lstmkit.variants``."""

from lstmkit.modules.cells import GRUCell, LSTMCell, RNNCell
from lstmkit.modules.gru import GRU
from lstmkit.modules.lstm import LSTM
from lstmkit.modules.rnn import RNN
from lstmkit.modules.trace import GRUTrace, LSTMTrace, RNNTrace, Trace, VariantTrace
from lstmkit.modules.variant_lstm import VariantLSTM, VariantLSTMCell

__all__ = ["GRU", "GRUCell", "GRUTrace", "LSTM", "LSTMCell", "LSTMTrace", "RNN", "RNNCell", "RNNTrace", "Trace",
           "VariantLSTM", "VariantLSTMCell", "VariantTrace"]

"""longstm.models"""

from longstm.models.attention import AttentionLSTM  # noqa: E402
from longstm.models.heads import MultiHorizonHead, NextStepHead, QuantileHead  # noqa: E402
from longstm.models.hierarchical import HierarchicalLSTM  # noqa: E402
from longstm.models.losses import PinballLoss, pinball_loss  # noqa: E402
from longstm.models.stacked import StackedLSTM  # noqa: E402

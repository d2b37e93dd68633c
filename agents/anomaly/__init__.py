"""Online ML for MEV Risk Stream (pure core: plain Python + River + numpy, no Faust).

* :mod:`~agents.anomaly.ticks` — per-asset/chain tick anomaly scoring.
* :mod:`~agents.anomaly.portfolio` — portfolio-state (risk snapshot) anomaly scoring.
* :mod:`~agents.anomaly.forecast` — P(HIGH/CRITICAL alert within H) with delayed labels.
* :mod:`~agents.anomaly.varcast` — VaR forecast h bars ahead with a 95 % interval.
* :mod:`~agents.anomaly.models` — the checkpointable bundle, status and seed API fields.
* :mod:`~agents.anomaly.importance` — feature importance of the risk-level classifier.
"""

from agents.anomaly.errors import AnomalyError, InvalidFeatureInput, ModelStateError
from agents.anomaly.forecast import RISK_LEVELS, AlertForecaster
from agents.anomaly.importance import level_model_importance
from agents.anomaly.models import (
    STATE_VERSION,
    ModelBundle,
    anomaly_detection,
    risk_classification,
)
from agents.anomaly.portfolio import (
    PortfolioAnomalyScorer,
    market_features,
    model_features,
    snapshot_features,
)
from agents.anomaly.ticks import TickAnomalyDetector, TickScore, tick_key
from agents.anomaly.varcast import VarForecaster

__all__ = [
    "RISK_LEVELS",
    "STATE_VERSION",
    "AlertForecaster",
    "AnomalyError",
    "InvalidFeatureInput",
    "ModelBundle",
    "ModelStateError",
    "PortfolioAnomalyScorer",
    "TickAnomalyDetector",
    "TickScore",
    "VarForecaster",
    "anomaly_detection",
    "level_model_importance",
    "market_features",
    "model_features",
    "risk_classification",
    "snapshot_features",
    "tick_key",
]

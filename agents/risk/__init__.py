"""Pure risk core (no Faust): bars and returns, EWMA covariance, VaR/ES, book,
stress, strategy health, rating, backtesting, the ``RiskEngine`` facade and the
offline calculator. Units: USD; P&L positive = profit; VaR/ES positive = loss.
"""

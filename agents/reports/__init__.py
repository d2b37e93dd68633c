"""Daily compliance reports: a pure model of one UTC day per portfolio, and its renderers.

``agents.reports.model.build_model`` turns the day's records (snapshots, alerts, controls,
audit, dead letters, strategy stats: plain dicts as read from the topics) into the report
model; ``agents.reports.render.build_daily_report`` renders it as HTML, PDF and JSON. No Faust
here: the topic reader is ``streams.report_reader``, the CLI ``mevrisk report daily``.
"""

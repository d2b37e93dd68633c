"""Run a worker with the API and dashboard wired in: ``python -m streams.api.devserver worker ...``.

Same as ``mevrisk worker`` plus what ``streams/worker.py`` and ``PipelineHost.publish`` do
once the API is integrated (both steps are skipped when already done, so this keeps
working afterwards). The browser tests start their worker this way.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import streams.worker
from streams.api import notify_listeners, register_views
from streams.host import PipelineHost, host


def wire() -> Any:
    app = streams.worker.app
    register_views(app, host)
    if "notify_listeners" not in inspect.getsource(PipelineHost.publish):
        original = PipelineHost.publish

        async def publish(self: PipelineHost, outputs: list[tuple[str, str, dict[str, Any]]]) -> None:
            await original(self, outputs)
            notify_listeners(outputs)

        PipelineHost.publish = publish  # type: ignore[method-assign]
    return app


def main(argv: list[str] | None = None) -> None:
    app = wire()
    sys.argv = ["mevrisk", *(sys.argv[1:] if argv is None else argv)]
    app.main()


if __name__ == "__main__":
    main()

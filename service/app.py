"""The FastAPI application factory."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.settings import Settings, get_settings
from service import observability, problems
from service.dispatch import Dispatcher
from service.maintenance import LostMessageWatch, Reaper, requeue_on_startup
from service.routes import artifacts, docs, health, jobs, spec, ui, validate
from service.site_guard import NoSniff, SiteGuard
from service.ui_session import session_key
from service.uploads import remove_stale_staging

log = logging.getLogger(__name__)

DESCRIPTION = """Upload a PyTorch state dict and a JSON spec; poll the job; download `model.pth` (dense,
loadable), `model.bin` (compact, Huffman-coded) and `metrics.json`. Errors are RFC 9457 problem+json.
Every route but /healthz and /readyz needs `Authorization: Bearer <token>` (`mcs token create`); a client
sees only its own jobs. `POST /jobs` honours `Idempotency-Key`."""


def create_app(settings: Settings | None = None, dispatcher: Dispatcher | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    sessions = make_session_factory(engine)
    dispatcher = dispatcher or Dispatcher(settings)
    if not settings.auth_enabled:
        log.warning(
            "AUTH IS DISABLED (MCS_AUTH=disabled): every caller is an admin and sees every job. "
            "Fine for one person on %s; for anything else create tokens with `mcs token create`.",
            settings.host,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # torch loads in the background now, not during the first upload's validation
        threading.Thread(target=importlib.import_module, args=("compression_core.io",), daemon=True).start()
        requeue_on_startup(sessions, dispatcher)
        if removed := remove_stale_staging(settings.staging_dir):
            log.info("removed %d upload folder(s) left by requests that died", removed)
        threads: list[Reaper | LostMessageWatch] = []
        if settings.reaper_interval_s > 0:
            threads.append(Reaper(settings, sessions, dispatcher))
            if settings.embedded:
                threads.append(LostMessageWatch(settings, sessions, dispatcher))
        for thread in threads:
            thread.start()
        yield
        for thread in threads:
            thread.stop()
        engine.dispose()

    app = FastAPI(  # /docs from installed files under a CSP (routes/docs.py); no CDN-loading pages
        title="Model Compression Service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings, app.state.engine, app.state.sessions = settings, engine, sessions
    app.state.dispatcher = dispatcher
    app.state.session_key = session_key(settings)  # signs the web page's cookies (service.ui_session)
    problems.install(app)
    app.add_middleware(SiteGuard, settings=settings)  # auth disabled: loopback Host, same-origin writes
    app.add_middleware(NoSniff)
    observability.install(app, settings, sessions)
    for module in (validate, jobs, artifacts, health, spec, ui, docs):  # validate: deploy (issue 12)
        app.include_router(module.router)
    return app

"""Long Logic calls off the event loop, with progress, cancel and errors shown in the page.

One job at a time runs in a worker thread so the page keeps receiving progress. While it runs
the views do not render (their render requests are blocked) and the page is covered by a
progress dialog, so nothing else touches the scene; the views render again when it ends.
A :class:`~RadiomicsLabLib.errors.RadiomicsLabError` becomes the page's error message; any other
exception is a bug, logged with its traceback and shown as such.
"""

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from trame_server.utils.typed_state import TypedState

from ..errors import RadiomicsLabError

log = logging.getLogger(__name__)


@dataclass
class JobState:
    busy: bool = False
    title: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    cancelling: bool = False
    error: str = ""
    notice: str = ""
    seconds: float = 0.0


class JobRunner:
    """Runs ``work(progress)`` in a worker thread; ``progress(done, total, message)`` returns False once cancelled."""

    def __init__(self, server, view_manager):
        self.server = server
        self.view_manager = view_manager
        self.typed_state = TypedState(server.state, JobState, namespace="job")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radiomicslab-job")
        self._cancel = threading.Event()
        self._main_thread = threading.main_thread()
        server.controller.job_cancel = self.cancel

    @property
    def data(self) -> JobState:
        return self.typed_state.data

    @property
    def name(self) -> JobState:
        return self.typed_state.name

    @property
    def busy(self) -> bool:
        return self.data.busy

    def cancel(self):
        self._cancel.set()
        self.data.cancelling = True

    def show_error(self, message: str):
        with self.server.state:
            self.data.error = message
            self.data.notice = ""

    def show_notice(self, message: str):
        with self.server.state:
            self.data.notice = message
            self.data.error = ""

    def clear_messages(self):
        with self.server.state:
            self.data.error = ""
            self.data.notice = ""

    async def run(self, title: str, work, *, apply=None, done_message=None):
        """Run ``work(progress)`` in the worker thread, then ``apply(result)`` on the event loop.

        ``apply`` puts the result into the page (tables, lists) before the views render again, so
        the page shows it without waiting for the views' frames. Returns the result, or None after
        an error (then shown in the page).
        """
        if self.busy:
            self.show_error(f"'{self.data.title}' is still running; wait for it or cancel it.")
            return None
        loop = asyncio.get_running_loop()
        self._cancel.clear()

        def progress(done, total, message=""):
            loop.call_soon_threadsafe(self._report, done, total, str(message))
            return not self._cancel.is_set()

        with self.server.state:
            self.data.busy, self.data.title, self.data.cancelling = True, title, False
            self.data.done, self.data.total, self.data.message = 0, 0, ""
            self.data.error = self.data.notice = ""
        await asyncio.sleep(0.05)  # let the progress dialog reach the page before the work starts
        views = self.view_manager.get_views()
        blocked = [view.set_render_blocked(True) for view in views]
        started = time.perf_counter()
        result = None
        try:
            result = await loop.run_in_executor(self._executor, work, progress)
            seconds = round(time.perf_counter() - started, 2)
            with self.server.state:
                self.data.busy, self.data.seconds = False, seconds
                if apply is not None:
                    apply(result)
                if done_message:
                    self.data.notice = done_message(result) if callable(done_message) else done_message
            await asyncio.sleep(0)  # the page's update goes out before the views render again
        except RadiomicsLabError as error:
            self.show_error(str(error))
            result = None
        except Exception as error:  # a bug: keep the app alive and say so
            log.exception("%s failed", title)
            self.show_error(f"{title} failed unexpectedly ({type(error).__name__}: {error}); see the server log.")
            result = None
        finally:
            for view, was_blocked in zip(views, blocked):
                view.set_render_blocked(was_blocked)
            with self.server.state:
                self.data.busy = False
        return result

    def _report(self, done, total, message):
        with self.server.state:
            self.data.done, self.data.total, self.data.message = int(done), int(total), message

    def guard(self, action, *args):
        """Run a quick action on the event loop; a RadiomicsLabError becomes the page's error message."""
        try:
            result = action(*args)
        except RadiomicsLabError as error:
            self.show_error(str(error))
            return None
        except Exception as error:
            log.exception("action failed")
            self.show_error(f"Unexpected error ({type(error).__name__}: {error}); see the server log.")
            return None
        return result

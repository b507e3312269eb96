"""Choosing the question presenter, lazily: the idle agent never imports the UI.

The default presenter is named by ``survey.presenter`` (``module:Class``) and imported only
when a question is due; where that module is missing, or there is no terminal to draw on,
the factory answers None and the agent counts the session as ``no_display``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable

from .config import SurveySection
from .survey_port import SurveyPresenter

log = logging.getLogger(__name__)

#: Answers a presenter for the question that is due, or None where there is no display.
PresenterFactory = Callable[[], SurveyPresenter | None]


def has_terminal(tty: str) -> bool:
    """Is there a terminal to draw on: ``tty`` writable, or ("") our own stdin/stdout?"""
    if tty:
        return os.access(tty, os.R_OK | os.W_OK)
    try:
        return os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())
    except (ValueError, OSError):  # closed or replaced streams (daemon, tests)
        return False


def import_presenter(spec: str) -> SurveyPresenter | None:
    """Import ``module:Class`` and make one; None where the module is not installed."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the presenter's own module (or a parent) missing means "no presenter";
        # a missing dependency inside it is a real fault and is raised.
        if exc.name is not None and module_name.startswith(exc.name):
            log.warning("question presenter %s is not installed", spec)
            return None
        raise
    presenter: SurveyPresenter = getattr(module, attr or "Presenter")()
    return presenter


def default_presenter_factory(survey: SurveySection) -> PresenterFactory:
    """The factory ``stb-widget run`` uses: terminal check, then the lazy import."""

    def factory() -> SurveyPresenter | None:
        if not has_terminal(survey.tty):
            return None
        return import_presenter(survey.presenter)

    return factory

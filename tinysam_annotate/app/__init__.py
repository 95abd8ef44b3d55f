"""The Gradio annotation app: ``tinysam-annotate app`` or :func:`build_app`.

GUI code only: every action is an :class:`~tinysam_annotate.session.AnnotationSession` call made by
:mod:`.handlers`; the model sits behind one shared, locked :class:`~.engine.Engine`.
"""

from .engine import AppConfig, Engine, EngineRegistry

__all__ = ["AppConfig", "Engine", "EngineRegistry"]

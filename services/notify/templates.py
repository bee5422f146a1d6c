"""Rendering of admin-written mail templates (salutations, signatures, auto responses, notices).

Templates are Jinja2 run in a sandbox: admins write them, so they are untrusted code. The sandbox
refuses attribute access such as ``''.__class__.__mro__``, and this module additionally refuses
operations that would make a template allocate without bound (``'x' * 10**9``) and caps the output.
CPU time is not bounded (nested loops over the sandbox's 100,000-item ranges): templates are
written by admins, and the sandbox is there to keep a careless or hostile admin template from
reaching Python internals or memory, not to make templates a public feature.

Two behaviours, because the two callers want different things:

* :func:`render_strict` (admin preview, saving a template): any problem raises a
  :class:`MailTemplateError` subclass naming the template and the problem.
* :func:`render_or_raw` (send time): a problem never drops the mail; the template's raw text is
  used instead and the problem is returned so the caller can log it.

Variables are plain strings (see :data:`TEMPLATE_VARIABLES`); a template naming any other
variable is an error, found before rendering so that a typo in a branch not taken is found too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import escape

TEMPLATE_VARIABLES: frozenset[str] = frozenset(
    {
        "customer_name",
        "customer_email",
        "ticket_number",
        "title",
        "subject",
        "queue",
        "agent_name",
        "body",
        "system_name",
        "system_email",
    }
)
"""The variables every template may use; all are strings (possibly empty)."""

SAMPLE_VARIABLES: Mapping[str, str] = {
    "customer_name": "Jane Doe",
    "customer_email": "jane@example.org",
    "ticket_number": "2009070610061359",
    "title": "Question about the logo",
    "subject": "Question about the logo",
    "queue": "Info-en",
    "agent_name": "Alex Agent",
    "body": "Thank you for your message.",
    "system_name": "Firstline Info",
    "system_email": "info@firstline.example",
}
"""Values for previewing a template in the admin UI."""

MAX_OUTPUT_CHARS = 1_000_000
MAX_SEQUENCE_LEN = 100_000
MAX_EXPONENT = 100


class MailTemplateError(Exception):
    """A template could not be rendered. ``template`` names which one (e.g. ``"signature"``)."""

    def __init__(self, template: str, detail: str) -> None:
        super().__init__(f"template {template!r}: {detail}")
        self.template = template
        self.detail = detail


class TemplateSyntaxInvalid(MailTemplateError):
    """The template does not parse."""


class UnknownTemplateVariable(MailTemplateError):
    """The template names a variable (or attribute) that does not exist."""


class UnsafeTemplate(MailTemplateError):
    """The sandbox refused an operation (attribute access, unbounded allocation, huge output)."""


@dataclass(frozen=True)
class Rendered:
    """Result of a send-time render: the text, and the problem if the raw text was used."""

    text: str
    error: MailTemplateError | None = None


class _MailSandbox(ImmutableSandboxedEnvironment):
    """Sandbox that also bounds ``*`` and ``**`` so a template cannot exhaust memory or CPU."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} exceeds {MAX_EXPONENT}")
        if operator_ == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        return super().call_binop(context, operator_, left, right)


def _check_repeat(seq: Any, times: Any) -> None:
    if isinstance(seq, str | list | tuple) and isinstance(times, int):
        if len(seq) * times > MAX_SEQUENCE_LEN:
            raise SecurityError(f"repetition would create more than {MAX_SEQUENCE_LEN} items")


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def _make_env(html: bool) -> _MailSandbox:
    return _MailSandbox(
        autoescape=html,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=_none_as_empty,
    )


_TEXT_ENV = _make_env(html=False)
_HTML_ENV = _make_env(html=True)
_GLOBALS: frozenset[str] = frozenset(_TEXT_ENV.globals)


@lru_cache(maxsize=512)
def _compile(source: str, html: bool) -> tuple[jinja2.Template, frozenset[str]]:
    """Compile once per distinct source: parsing costs far more than rendering."""
    env = _HTML_ENV if html else _TEXT_ENV
    undeclared = frozenset(meta.find_undeclared_variables(env.parse(source)))
    return env.from_string(source), undeclared


def _compiled(source: str, name: str, html: bool) -> tuple[jinja2.Template, frozenset[str]]:
    try:
        return _compile(source, html)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxInvalid(name, f"line {exc.lineno}: {exc.message}") from exc


def _check_variables(undeclared: frozenset[str], variables: Mapping[str, Any], name: str) -> None:
    unknown = sorted(undeclared - set(variables) - _GLOBALS)
    if unknown:
        known = ", ".join(sorted(variables))
        raise UnknownTemplateVariable(name, f"unknown variable {', '.join(unknown)} (known: {known})")


def _bounded_output(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    """Render chunk by chunk so an oversized output is stopped early, not after building it."""
    chunks: list[str] = []
    size = 0
    for chunk in template.generate(variables):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"output exceeds {MAX_OUTPUT_CHARS} characters")
        chunks.append(chunk)
    return "".join(chunks)


def _render(template: jinja2.Template, variables: Mapping[str, Any], name: str) -> str:
    try:
        return _bounded_output(template, variables)
    except (SecurityError, OverflowError) as exc:
        raise UnsafeTemplate(name, f"refused by the sandbox: {exc}") from exc
    except jinja2.UndefinedError as exc:
        raise UnknownTemplateVariable(name, exc.message or "undefined value") from exc
    except Exception as exc:  # the template is untrusted code: any failure is its failure
        raise MailTemplateError(name, f"{type(exc).__name__}: {exc}") from exc


def validate_template(source: str, *, name: str = "template", html: bool = False) -> None:
    """Check syntax and variable names without rendering (for saving a template)."""
    _template, undeclared = _compiled(source, name, html)
    _check_variables(undeclared, dict.fromkeys(TEMPLATE_VARIABLES), name)


def render_strict(source: str, variables: Mapping[str, Any], *, name: str = "template", html: bool = False) -> str:
    """Render or raise :class:`MailTemplateError`. ``html`` turns autoescaping on."""
    template, undeclared = _compiled(source, name, html)
    _check_variables(undeclared, variables, name)
    return _render(template, variables, name)


def render_or_raw(source: str, variables: Mapping[str, Any], *, name: str = "template", html: bool = False) -> Rendered:
    """Render; on any template problem return the raw source (escaped for HTML) and the error."""
    try:
        return Rendered(render_strict(source, variables, name=name, html=html))
    except MailTemplateError as exc:
        return Rendered(str(escape(source)) if html else source, exc)


def preview(source: str, *, name: str = "template", html: bool = False) -> str:
    """Render with :data:`SAMPLE_VARIABLES`, strictly: what the admin UI shows."""
    return render_strict(source, SAMPLE_VARIABLES, name=name, html=html)


__all__ = [
    "MAX_OUTPUT_CHARS",
    "SAMPLE_VARIABLES",
    "TEMPLATE_VARIABLES",
    "MailTemplateError",
    "Rendered",
    "TemplateSyntaxInvalid",
    "UnknownTemplateVariable",
    "UnsafeTemplate",
    "preview",
    "render_or_raw",
    "render_strict",
    "validate_template",
]

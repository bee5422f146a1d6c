"""Sandboxed template rendering: strict for admin preview, raw-text fallback at send time."""

from __future__ import annotations

import pytest
from jinja2.sandbox import SecurityError

from services.notify.queue_settings import (
    QueueMailSettings,
    default_queue_settings,
    validate_settings,
)
from services.notify.templates import (
    SAMPLE_VARIABLES,
    TEMPLATE_VARIABLES,
    MailTemplateError,
    TemplateSyntaxInvalid,
    UnknownTemplateVariable,
    UnsafeTemplate,
    preview,
    render_or_raw,
    render_strict,
    validate_template,
)

DEMO_QUEUES = ["Raw", "Junk", "Info-en", "Info-de", "Permissions", "Press"]


def test_renders_known_variables() -> None:
    text = render_strict("Dear {{ customer_name }}, re {{ ticket_number }}", SAMPLE_VARIABLES)
    assert text == "Dear Jane Doe, re 2009070610061359"


def test_sample_variables_cover_every_template_variable() -> None:
    assert set(SAMPLE_VARIABLES) == TEMPLATE_VARIABLES


def test_text_is_not_escaped_and_html_is() -> None:
    variables = {**SAMPLE_VARIABLES, "customer_name": "<Tom & Jerry>"}
    assert render_strict("{{ customer_name }}", variables) == "<Tom & Jerry>"
    assert render_strict("<b>{{ customer_name }}</b>", variables, html=True) == "<b>&lt;Tom &amp; Jerry&gt;</b>"


def test_none_renders_as_empty() -> None:
    assert render_strict("[{{ customer_name }}]", {"customer_name": None}) == "[]"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ customer_name.__class__ }}",
    ],
)
def test_sandbox_refuses_internals(source: str) -> None:
    with pytest.raises(UnsafeTemplate) as info:
        render_strict(source, SAMPLE_VARIABLES, name="signature")
    assert isinstance(info.value, MailTemplateError)
    assert isinstance(info.value.__cause__, SecurityError)
    assert "signature" in str(info.value) and "unsafe" in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 1000000000 }}",
        "{{ 1000000000 * 'x' }}",
        "{{ [0] * 1000000000 }}",
        "{{ 2 ** 100000 }}",
        "{% for i in range(1000000) %}{% endfor %}",
        "{% for i in range(100000) %}0123456789abcdef{% endfor %}",
    ],
)
def test_sandbox_refuses_unbounded_work(source: str) -> None:
    with pytest.raises(UnsafeTemplate):
        render_strict(source, SAMPLE_VARIABLES)


def test_unknown_variable_is_a_clear_error() -> None:
    with pytest.raises(UnknownTemplateVariable) as info:
        render_strict("Dear {{ custmer_name }},", SAMPLE_VARIABLES, name="salutation")
    message = str(info.value)
    assert "salutation" in message and "custmer_name" in message and "customer_name" in message
    assert info.value.template == "salutation"


def test_unknown_variable_in_a_branch_not_taken_is_found() -> None:
    with pytest.raises(UnknownTemplateVariable, match="typo"):
        render_strict("{% if false %}{{ typo }}{% endif %}", SAMPLE_VARIABLES)


def test_unknown_attribute_is_an_unknown_variable() -> None:
    with pytest.raises(UnknownTemplateVariable, match="foo"):
        render_strict("{{ customer_name.foo }}", SAMPLE_VARIABLES)


def test_globals_and_loop_variables_are_known() -> None:
    source = "{% for c in range(2) %}{{ loop.index }}{% endfor %}{% set x = 1 %}{{ x }}"
    assert render_strict(source, SAMPLE_VARIABLES) == "121"


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateSyntaxInvalid, match="line 2"):
        render_strict("ok\n{% if customer_name %}", SAMPLE_VARIABLES, name="signature")


def test_runtime_failure_is_wrapped() -> None:
    with pytest.raises(MailTemplateError, match="ZeroDivisionError"):
        render_strict("{{ 1 / 0 }}", SAMPLE_VARIABLES)


def test_send_time_falls_back_to_raw_text() -> None:
    rendered = render_or_raw("Dear {{ custmer_name }},", SAMPLE_VARIABLES, name="salutation")
    assert rendered.text == "Dear {{ custmer_name }},"
    assert isinstance(rendered.error, UnknownTemplateVariable)


def test_send_time_fallback_for_unsafe_template() -> None:
    rendered = render_or_raw("{{ ''.__class__ }}", SAMPLE_VARIABLES)
    assert rendered.text == "{{ ''.__class__ }}"
    assert isinstance(rendered.error, UnsafeTemplate)


def test_send_time_fallback_in_html_is_escaped() -> None:
    rendered = render_or_raw("<b>{{ nope }}</b>", SAMPLE_VARIABLES, html=True)
    assert rendered.text == "&lt;b&gt;{{ nope }}&lt;/b&gt;"


def test_send_time_success_has_no_error() -> None:
    rendered = render_or_raw("{{ queue }}", SAMPLE_VARIABLES)
    assert rendered.text == "Info-en" and rendered.error is None


def test_validate_template_checks_names_without_rendering() -> None:
    validate_template("{{ customer_name }} {{ 1 / 0 if false else '' }}")
    with pytest.raises(UnknownTemplateVariable):
        validate_template("{{ ticket }}")


def test_preview_uses_sample_values() -> None:
    assert preview("{{ agent_name }} <{{ system_email }}>") == "Alex Agent <info@firstline.example>"


@pytest.mark.parametrize("queue", DEMO_QUEUES)
def test_default_templates_are_valid(queue: str) -> None:
    assert validate_settings(default_queue_settings(queue)) == []


def test_validate_settings_lists_every_problem() -> None:
    settings = default_queue_settings("Info-en")
    broken = QueueMailSettings.model_validate(
        {**settings.model_dump(), "salutation": "{{ nme }}", "signature": "{% if %}"}
    )
    problems = validate_settings(broken)
    assert [type(p) for p in problems] == [UnknownTemplateVariable, TemplateSyntaxInvalid]
    assert [p.template for p in problems] == ["salutation", "signature"]

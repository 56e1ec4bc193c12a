"""The Go-template subset of `--format`: what Go's text/template prints for the common cases."""

from __future__ import annotations

import pytest

from builder.util.gotemplate import Template, TemplateError, render_rows

DOC = {"Id": "sha256:ab", "RepoTags": ["x:1", "x:2"], "Size": 10, "Nil": None, "Ok": True,
       "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v", "a": "b"}, "Empty": []}}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.Id}}", "sha256:ab"),
    ("{{ .Id }}", "sha256:ab"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Labels}}", "map[a:b k:v]"),
    ("{{.Nil}} {{.Missing}} {{.Ok}} {{.Size}}", "<no value> <no value> true 10"),
    ("{{json .Config.Env}}", '["A=1","B=2"]'),
    ("{{json .Nil}}", "null"),
    ("{{.Config.Env | json}}", '["A=1","B=2"]'),
    ("{{range .Config.Env}}{{.}};{{end}}", "A=1;B=2;"),
    ("{{range .Config.Empty}}x{{else}}none{{end}}", "none"),
    ("{{index .Config.Labels \"k\"}} {{index .RepoTags 1}}", "v x:2"),
    ("{{if .Nil}}yes{{else}}no{{end}} {{if .Ok}}yes{{end}}", "no yes"),
    ("{{with .Config}}{{.Env}}{{end}}", "[A=1 B=2]"),
    ("{{join .RepoTags \", \"}}", "x:1, x:2"),
    ("{{upper .Id}} {{len .RepoTags}}", "SHA256:AB 2"),
    ('{{printf "%s has %d tags" .Id 2}}', "sha256:ab has 2 tags"),
    ("a  {{- .Id -}}  b", "asha256:abb"),
])
def test_go_template_output(template: str, expected: str) -> None:
    assert Template(template).render(DOC) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Id", "unclosed action"),
    ("{{range .RepoTags}}x", "without {{end}}"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{nosuch .Id}}", 'function "nosuch" not defined'),
    ("{{.Id.Deeper}}", "can't evaluate field Deeper"),
])
def test_template_mistakes_are_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        Template(template).render(DOC)


def test_table_prints_headers_and_aligns_columns() -> None:
    rows = [{"Repository": "busybox", "Tag": "latest", "ID": "abc"}, {"Repository": "a", "Tag": "1", "ID": "d"}]
    out = render_rows("table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}", rows, {"ID": "IMAGE ID"})
    assert out == "REPOSITORY   TAG      IMAGE ID\nbusybox      latest   abc\na            1        d\n"
    assert render_rows("{{.Tag}}", rows) == "latest\n1\n"
    assert render_rows("table {{.CreatedSince}}", [{"CreatedSince": "now"}]) == "CREATED SINCE\nnow\n"

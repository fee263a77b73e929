"""Ollama's Go prompt templates rendered in Python: Go's text/template semantics, Ollama's data
(`template.Execute`, its legacy collation, fill-in-the-middle, tools) and the errors.

The model templates and their expected prompts are those of Ollama's own template tests
(ollama/ollama template/*.gotmpl and template/testdata), rewritten as tables here.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from vllama.translate.gotemplate import TemplateError, execute, parse, prompt_data, render, uses

# --- Go text/template semantics ---------------------------------------------------------------

DATA: dict[str, Any] = {
    "S": "hello",
    "Empty": "",
    "N": 3,
    "Zero": 0,
    "F": 2.5,
    "Big": 1000000.0,
    "T": True,
    "L": ["a", "b", "c"],
    "EL": [],
    "M": {"b": 2, "a": 1, "c": {"x": "y"}},
    "Nil": None,
    "Msgs": [
        {"Role": "user", "Content": "hi"},
        {"Role": "assistant", "Content": "yo"},
        {"Role": "user", "Content": "bye"},
    ],
    "Q": 'a"b<c>&',
    "U": "héllo",
}

RENDER_CASES = [
    # text, fields, printing
    ("text only", "plain text", "plain text"),
    ("field", "{{ .S }}", "hello"),
    ("nested map field", "{{ .M.c.x }}", "y"),
    ("missing key prints <no value>", "[{{ .Missing }}]", "[<no value>]"),
    ("nil prints <no value>", "[{{ .Nil }}]", "[<no value>]"),
    ("numbers and bools", "{{ .N }} {{ .F }} {{ .Big }} {{ .T }} {{ 1.0 }} {{ 0.00001 }}", "3 2.5 1e+06 true 1 1e-05"),
    ("slice and map print as Go does", "{{ .L }} {{ .M }} {{ .EL }}", "[a b c] map[a:1 b:2 c:map[x:y]] []"),
    ("dot is the data root", "{{ with .M.c }}{{ . }}{{ end }}", "map[x:y]"),
    ("string escapes", r'{{ "tab\tq\"\x41\u00e9\101" }}', 'tab\tq"AéA'),
    ("raw string", "{{ `no \\n escapes` }}", "no \\n escapes"),
    ("character constant", "{{ 'a' }} {{ '\\n' }}", "97 10"),
    ("number literals", "{{ 0x1F }} {{ 017 }} {{ 1_000 }} {{ 1e3 }} {{ -3 }} {{ .5 }}", "31 15 1000 1000 -3 0.5"),
    # trim markers and comments
    ("left trim", "a  \n\t {{- .S }} b", "ahello b"),
    ("right trim", "a {{ .S -}} \n\n b", "a hellob"),
    ("both trims", "a \n {{- .S -}} \n b", "ahellob"),
    ("trim marker needs a space", "x {{-3}} {{3 -}} y", "x -3 3y"),
    ("comment", "a {{/* a comment */}} b", "a  b"),
    ("trimmed comment", "a \n{{- /* a\nmultiline comment */ -}}\n b", "ab"),
    ("action across lines", '{{\n.S\n|\nprintf "%s!"\n}}', "hello!"),
    ("delimiters inside strings", '{{ "}}" }}{{ "{{" }}', "}}{{"),
    # if / else if / else
    ("if true", "{{ if .T }}yes{{ end }}", "yes"),
    ("if empty string", "{{ if .Empty }}yes{{ else }}no{{ end }}", "no"),
    ("else if chain", "{{ if .Zero }}z{{ else if .EL }}l{{ else if .N }}n{{ else }}e{{ end }}", "n"),
    ("falsy values", "{{ if or .Zero .Empty .EL .Nil .Missing }}t{{ else }}f{{ end }}", "f"),
    ("if declares a variable", "{{ if $x := .S }}{{ $x }}{{ end }}", "hello"),
    # with
    ("with rebinds dot", "{{ with .M }}{{ .a }}{{ end }}", "1"),
    ("with else", "{{ with .Empty }}x{{ else }}empty{{ end }}", "empty"),
    ("else with", "{{ with .Nil }}x{{ else with .S }}{{ . }}{{ end }}", "hello"),
    # range
    ("range rebinds dot", "{{ range .L }}[{{ . }}]{{ end }}", "[a][b][c]"),
    ("range index and element", "{{ range $i, $v := .L }}{{ $i }}={{ $v }};{{ end }}", "0=a;1=b;2=c;"),
    ("range element only", "{{ range $v := .L }}{{ $v }}{{ end }}", "abc"),
    ("range over a map in key order", "{{ range $k, $v := .M }}{{ $k }};{{ end }}", "a;b;c;"),
    ("range else", "{{ range .EL }}x{{ else }}empty{{ end }}{{ range .Nil }}x{{ else }}nil{{ end }}", "emptynil"),
    ("range over an integer", "{{ range 3 }}{{ . }}{{ end }}", "012"),
    ("break", '{{ range .L }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}', "a"),
    ("continue", '{{ range .L }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}{{ end }}', "ac"),
    ("$ is the root inside range", "{{ range .L }}{{ $.S }}{{ end }}", "hellohellohello"),
    (
        "fields of range elements",
        "{{ range .Msgs }}{{ .Role }}:{{ .Content }} {{ end }}",
        "user:hi assistant:yo user:bye ",
    ),
    (
        "last element via len (slice ...)",
        "{{ range $i, $_ := .Msgs }}{{ if eq (len (slice $.Msgs $i)) 1 }}LAST {{ end }}{{ .Content }} {{ end }}",
        "hi yo LAST bye ",
    ),
    # variables
    ("declare and assign", "{{ $x := 1 }}{{ $x }}{{ $x = 2 }}{{ $x }}", "12"),
    ("assign from inside range", '{{ $last := "" }}{{ range .L }}{{ $last = . }}{{ end }}{{ $last }}', "c"),
    (
        "accumulate with printf",
        '{{ $s := "" }}{{ range .L }}{{ $s = printf "%s%s" $s . }}{{ end }}{{ $s }}',
        "abc",
    ),
    ("variable field chain", "{{ $m := .M }}{{ $m.c.x }}", "y"),
    ("$ alone", "{{ $.S }}", "hello"),
    # pipelines and functions
    ("pipeline into printf", '{{ .S | printf "<%s>" }}', "<hello>"),
    ("pipeline value is the last argument", '{{ "x" | printf "%s %s" "y" }}', "y x"),
    ("parenthesized pipeline", '{{ (.S | printf "%s-") | printf "%s+" }}', "hello-+"),
    ("field of a parenthesized pipeline", "{{ (index .Msgs 1).Content }}", "yo"),
    (
        "eq ne",
        '{{ eq .S "hello" }} {{ ne .S "x" }} {{ eq .S "a" "b" "hello" }} {{ eq .Missing "x" }}',
        "true true true false",
    ),
    ("lt le gt ge", '{{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }}', "true true true false"),
    (
        "and or return an operand",
        "{{ and .S .N }} {{ and .S .Empty .N }} {{ or .Empty .Zero .S }} {{ or .Empty .Zero }}",
        "3  hello 0",
    ),
    ("and or short-circuit", "{{ or .S .Missing.X }} {{ and .Empty .Missing.X }}", "hello "),
    ("not", "{{ not .T }} {{ not .Empty }} {{ not .L }}", "false true false"),
    ("len counts bytes of strings", "{{ len .L }} {{ len .M }} {{ len .S }} {{ len .U }}", "3 3 5 6"),
    (
        "index",
        '{{ index .L 1 }} {{ index .M "a" }} {{ index .M "c" "x" }} [{{ index .M "zz" }}] {{ index .S 0 }}',
        "b 1 y [<no value>] 104",
    ),
    ("slice", "{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .S 1 3 }} {{ slice .L }}", "[b c] [b] el [a b c]"),
    ("print adds spaces between non-strings", '{{ print 1 2 "a" "b" 3 .Nil }}', "1 2ab3 <nil>"),
    ("println", '{{ println 1 "a" }}', "1 a\n"),
    (
        "printf verbs",
        '{{ printf "%s|%q|%v|%d|%5d|%-3d|%03d|%x|%t|%c|%%" "s" "q" .L 42 42 7 7 255 true 65 }}',
        's|"q"|[a b c]|42|   42|7  |007|ff|true|A|%',
    ),
    (
        "printf floats",
        '{{ printf "%f|%.2f|%e|%g|%v|%6.1f" 3.14159 3.14159 1234.5 0.000012 2.5 3.14159 }}',
        "3.141590|3.14|1.234500e+03|1.2e-05|2.5|   3.1",
    ),
    ("printf wrong and missing operands", '{{ printf "%d|%s|%s" "x" 5 }}', "%!d(string=x)|%!s(int=5)|%!s(MISSING)"),
    ("printf extra operands", '{{ printf "%s" "a" "b" 3 }}', "a%!(EXTRA string=b, int=3)"),
    (
        "html js urlquery",
        "{{ html .Q }} {{ js .Q }} {{ urlquery .Q }}",
        'a&#34;b&lt;c&gt;&amp; a\\"b\\u003Cc\\u003E\\u0026 a%22b%3Cc%3E%26',
    ),
    # Ollama's json: Go's encoding/json (map keys sorted, HTML-safe)
    ("json of a map", "{{ json .M }}", '{"a":1,"b":2,"c":{"x":"y"}}'),
    (
        "json of values",
        "{{ json .L }} {{ json .Q }} {{ json .Nil }} {{ json .F }} {{ json .Big }}",
        '["a","b","c"] "a\\"b\\u003cc\\u003e\\u0026" null 2.5 1000000',
    ),
    ("json in a pipeline", "{{ .L | json }}", '["a","b","c"]'),
    (
        "json over range",
        "{{ range .Msgs }}{{ json . }}{{ end }}",
        '{"Content":"hi","Role":"user"}{"Content":"yo","Role":"assistant"}{"Content":"bye","Role":"user"}',
    ),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in RENDER_CASES], ids=[c[0] for c in RENDER_CASES])
def test_render(source: str, expected: str) -> None:
    assert render(source, DATA) == expected


def test_render_dates() -> None:
    before = datetime.date.today()
    out = render('{{ currentDate }} {{ yesterdayDate }} {{ currentDate "2006-01-02" }}', {})
    today, yesterday, again = out.split()
    assert datetime.date.fromisoformat(today) in (before, datetime.date.today())
    assert datetime.date.fromisoformat(yesterday) == datetime.date.fromisoformat(today) - datetime.timedelta(days=1)
    assert again == today


def test_parse_is_cached_by_source() -> None:
    assert parse("{{ .Prompt }}") is parse("{{ .Prompt }}")


# --- errors -------------------------------------------------------------------------------------

ERROR_CASES = [
    # syntax
    ("unclosed action", "{{ .Prompt ", "template:1:1: unclosed action"),
    ("unclosed action on a later line", "ok\nthen {{ if .X ", "template:2:6: unclosed action"),
    ("end without an opener", "a {{ end }}", "template:1:3: unexpected {{end}}"),
    ("else without an opener", "{{ else }}", "template:1:1: unexpected {{else}}"),
    ("missing end", "{{ if .X }}x", "template:1:1: unexpected EOF: {{if}} has no {{end}}"),
    (
        "missing end in range",
        "{{ range .X }}{{ if .Y }}{{ end }}",
        "template:1:1: unexpected EOF: {{range}} has no {{end}}",
    ),
    ("two elses", "{{ if .X }}a{{ else }}b{{ else }}c{{ end }}", "template:1:24: expected {{end}}; found {{else}}"),
    (
        "else if in range",
        "{{ range .X }}{{ else if .Y }}{{ end }}",
        "template:1:15: {{else if}} is only allowed in {{if}}",
    ),
    ("unknown function", "{{ frobnicate .X }}", 'template:1:4: function "frobnicate" not defined'),
    ("undefined variable", "{{ $x }}", 'template:1:4: undefined variable "$x"'),
    ("variable out of scope", "{{ range $i, $m := .X }}{{ end }}{{ $m }}", 'template:1:37: undefined variable "$m"'),
    ("break outside range", "{{ break }}", "template:1:1: {{break}} outside {{range}}"),
    ("empty if", "{{ if }}x{{ end }}", "template:1:7: missing value for if"),
    ("unclosed comment", "{{/* never closed", "template:1:1: unclosed comment"),
    ("comment ends before the delimiter", "{{/* c */ x}}", "template:1:1: comment ends before closing delimiter"),
    ("unterminated string", '{{ "abc }}', "template:1:4: unterminated quoted string"),
    ("bad number", "{{ 12abc }}", 'template:1:4: bad number syntax: "12a"'),
    ("unclosed paren", "{{ (.X }}", "template:1:8: unclosed left paren"),
    ("literal after a pipe", '{{ .X | "y" }}', "template:1:9: non executable command in pipeline stage 2"),
    (
        "too many range variables",
        "{{ range $a, $b, $c := .X }}{{ end }}",
        "template:1:16: too many declarations in range",
    ),
    # rejected
    ("define", '{{ define "x" }}y{{ end }}', "template:1:4: {{define}} is not supported"),
    ("template", '{{ template "x" }}', "template:1:4: {{template}} is not supported"),
    ("block", '{{ block "x" . }}y{{ end }}', "template:1:4: {{block}} is not supported"),
    ("call", "{{ call .F }}", 'template:1:4: function "call" is not supported'),
    # execution
    ("field of nil", "{{ .Nil.X }}", "template:1:4: at <.Nil.X>: nil pointer evaluating .Nil.X"),
    ("field of a string", "{{ .S.X }}", "template:1:4: at <.S.X>: can't evaluate field X in type string"),
    ("field with arguments", "{{ .S 1 }}", "template:1:4: at <.S>: S is not a method but has arguments"),
    (
        "incomparable types",
        '{{ eq .N "3" }}',
        'template:1:4: at <eq .N "3">: error calling eq: incompatible types for comparison',
    ),
    (
        "index out of range",
        "{{ index .L 5 }}",
        "template:1:4: at <index .L 5>: error calling index: index out of range: 5",
    ),
    ("len of a number", "{{ len .N }}", "template:1:4: at <len .N>: error calling len: len of type int"),
    ("wrong argument count", "{{ not }}", "template:1:4: at <not>: wrong number of args for not: want 1 got 0"),
    ("range over a string", "{{ range .S }}{{ end }}", "template:1:10: at <.S>: range can't iterate over hello"),
    (
        "printf format not a string",
        "{{ printf 3 }}",
        "template:1:4: at <printf 3>: error calling printf: wrong type for value; expected string; got int",
    ),
]


@pytest.mark.parametrize(("source", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, {"S": "hello", "N": 3, "L": ["a"], "Nil": None})
    assert str(info.value) == message


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


# --- uses (Ollama's Template.Vars) --------------------------------------------------------------

FIM = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}"

USES_CASES = [
    ("{{ .Prompt }}", {"Prompt"}, {"System", "Response", "Messages"}),
    ("{{ .System }} {{ .Prompt }} {{ .Response }}", {"System", "Prompt", "Response"}, {"Messages"}),
    ("{{ with .Tools }}{{ . }}{{ end }} {{ .System }}", {"Tools", "System"}, {"Prompt"}),
    ("{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}", {"Messages", "Role", "Content"}, {"Tools", "Prompt"}),
    (
        '{{ range .Messages }}{{ if eq .Role "tool" }}{{ .ToolName }}{{ end }}{{ end }}',
        {"Messages", "ToolName"},
        {"Tools"},
    ),
    ("{{ range $i, $_ := .Messages }}{{ if eq (len (slice $.Messages $i)) 1 }}{{ end }}{{ end }}", {"Messages"}, set()),
    (FIM, {"Suffix", "Prompt", "suffix", ".Suffix"}, {"Messages", "Tools"}),
    ("Suffix and Tools in text only {{/* .Tools */}}", set(), {"Suffix", "Tools"}),
    ('{{ "{{ .Tools }}" }}', set(), {"Tools"}),
]


@pytest.mark.parametrize(("source", "present", "absent"), USES_CASES)
def test_uses(source: str, present: set[str], absent: set[str]) -> None:
    assert all(uses(source, name) for name in present)
    assert not any(uses(source, name) for name in absent)


# --- Ollama's model templates over its test conversations ---------------------------------------

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
LLAMA3_INSTRUCT = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n"
    "\n"
    "{{ .Content }}<|eot_id|>\n"
    "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
)
MISTRAL_INSTRUCT = (
    "[INST] {{ range $index, $_ := .Messages }}\n"
    '{{- if eq .Role "system" }}{{ .Content }}\n'
    "\n"
    '{{ else if eq .Role "user" }}{{ .Content }}[/INST]\n'
    '{{- else if eq .Role "assistant" }} {{ .Content }}</s>[INST] {{ end }}\n'
    "{{- end }}"
)
GEMMA_INSTRUCT = (
    '{{- $system := "" }}\n'
    "{{- range .Messages }}\n"
    '{{- if eq .Role "system" }}\n'
    "{{- if not $system }}{{ $system = .Content }}\n"
    '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n'
    "{{- end }}\n"
    "{{- continue }}\n"
    '{{- else if eq .Role "user" }}<start_of_turn>user\n'
    "{{- if $system }}\n"
    "{{ $system }}\n"
    '{{- $system = "" }}\n'
    "{{- end }}\n"
    '{{- else if eq .Role "assistant" }}<start_of_turn>model\n'
    "{{- end }}\n"
    "{{ .Content }}<end_of_turn>\n"
    "{{ end }}<start_of_turn>model\n"
)
GEMMA3_INSTRUCT = (
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    '{{- if eq .Role "user" }}<start_of_turn>user\n'
    "{{- if and (eq $i 1) $.System }}\n"
    "{{ $.System }}\n"
    "{{ end }}\n"
    "{{ .Content }}<end_of_turn>\n"
    '{{ else if eq .Role "assistant" }}<start_of_turn>model\n'
    "{{ .Content }}<end_of_turn>\n"
    "{{ end }}\n"
    "{{- if $last }}<start_of_turn>model\n"
    "{{ end }}\n"
    "{{- end }}\n"
)
ALPACA = (
    '{{- $system := "" }}\n'
    "{{- range .Messages }}\n"
    '{{- if eq .Role "system" }}\n'
    "{{- if not $system }}{{ $system = .Content }}\n"
    '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n'
    "{{- end }}\n"
    '{{- else if eq .Role "user" }}\n'
    "{{- if $system }}{{ $system }}\n"
    "\n"
    '{{ $system = "" }}\n'
    "{{- end }}### Instruction:\n"
    "{{ .Content }}\n"
    "\n"
    '{{ else if eq .Role "assistant" }}### Response:\n'
    "{{ .Content }}\n"
    "\n"
    "{{ end }}\n"
    "{{- end }}### Response:\n"
)
LLAMA2_CHAT = (
    '{{- $system := "" }}[INST] {{ range .Messages }}\n'
    '{{- if eq .Role "system" }}\n'
    "{{- if not $system }}{{ $system = .Content }}\n"
    '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n'
    "{{- end }}\n"
    '{{- else if eq .Role "user" }}<<SYS>>\n'
    "{{- if $system }}\n"
    "{{ $system }}\n"
    '{{ $system = "" }}\n'
    "{{- end }}<</SYS>>\n"
    "\n"
    "{{ .Content }} [/INST]\n"
    '{{- else if eq .Role "assistant" }} {{ .Content }}</s><s>[INST] {{ end }}\n'
    "{{- end }}"
)
SOLAR_INSTRUCT = (
    "{{- range .Messages }}\n"
    '{{- if eq .Role "system" }}### System:\n'
    '{{- else if eq .Role "user" }}### User:\n'
    '{{- else if eq .Role "assistant" }}### Assistant:\n'
    "{{ .Content }}</s>\n"
    "\n"
    "{{ continue }}\n"
    "{{- end }}\n"
    "{{ .Content }}\n"
    "\n"
    "{{ end }}### Assistant:\n"
)

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER1 = {"role": "user", "content": "Hello, how are you?"}
ASSISTANT = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
USER2 = {"role": "user", "content": "I'd like to show off how chat templating works!"}
CONVERSATIONS = {
    "user": [USER1],
    "user-assistant-user": [USER1, ASSISTANT, USER2],
    "system-user-assistant-user": [SYSTEM, USER1, ASSISTANT, USER2],
}

MODEL_CASES = [
    ("chatml", CHATML, "user", "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n"),
    (
        "chatml",
        CHATML,
        "system-user-assistant-user",
        (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello, how are you?<|im_end|>\n"
            "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
            "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n<|im_start|>assistant\n"
        ),
    ),
    (
        "llama3-instruct",
        LLAMA3_INSTRUCT,
        "user-assistant-user",
        (
            "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating works!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
    ),
    (
        "llama3-instruct",
        LLAMA3_INSTRUCT,
        "system-user-assistant-user",
        (
            "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating works!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
    ),
    ("mistral-instruct", MISTRAL_INSTRUCT, "user", "[INST] Hello, how are you?[/INST]"),
    (
        "mistral-instruct",
        MISTRAL_INSTRUCT,
        "system-user-assistant-user",
        (
            "[INST] You are a helpful assistant.\n\nHello, how are you?[/INST] I'm doing great. How can I help you today?</s>"
            "[INST] I'd like to show off how chat templating works![/INST]"
        ),
    ),
    (
        "gemma-instruct",
        GEMMA_INSTRUCT,
        "system-user-assistant-user",
        (
            "<start_of_turn>user\nYou are a helpful assistant.\nHello, how are you?<end_of_turn>\n"
            "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
            "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n<start_of_turn>model\n"
        ),
    ),
    (
        "gemma3-instruct",
        GEMMA3_INSTRUCT,
        "user",
        "<start_of_turn>user\nHello, how are you?<end_of_turn>\n<start_of_turn>model\n\n",
    ),
    (
        "gemma3-instruct",
        GEMMA3_INSTRUCT,
        "system-user-assistant-user",
        (
            "<start_of_turn>user\nYou are a helpful assistant.\n\nHello, how are you?<end_of_turn>\n"
            "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
            "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n<start_of_turn>model\n\n"
        ),
    ),
    ("alpaca", ALPACA, "user", "### Instruction:\nHello, how are you?\n\n### Response:\n"),
    (
        "alpaca",
        ALPACA,
        "system-user-assistant-user",
        (
            "You are a helpful assistant.\n\n### Instruction:\nHello, how are you?\n\n"
            "### Response:\nI'm doing great. How can I help you today?\n\n"
            "### Instruction:\nI'd like to show off how chat templating works!\n\n### Response:\n"
        ),
    ),
    (
        "llama2-chat",
        LLAMA2_CHAT,
        "system-user-assistant-user",
        (
            "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello, how are you? [/INST] "
            "I'm doing great. How can I help you today?</s><s>[INST] <<SYS>><</SYS>>\n\n"
            "I'd like to show off how chat templating works! [/INST]"
        ),
    ),
    (
        "solar-instruct",
        SOLAR_INSTRUCT,
        "user-assistant-user",
        (
            "### User:\nHello, how are you?\n\n### Assistant:\nI'm doing great. How can I help you today?</s>\n\n"
            "### User:\nI'd like to show off how chat templating works!\n\n### Assistant:\n"
        ),
    ),
]


@pytest.mark.parametrize(
    ("template", "conversation", "expected"), [c[1:] for c in MODEL_CASES], ids=[f"{c[0]}:{c[2]}" for c in MODEL_CASES]
)
def test_model_templates(template: str, conversation: str, expected: str) -> None:
    assert execute(template, CONVERSATIONS[conversation]) == expected
    assert render(template, prompt_data(CONVERSATIONS[conversation])) == expected


# --- Ollama's Execute: messages, legacy System/Prompt/Response, fill-in-the-middle -------------

MISTRAL_LEGACY_NO_RESPONSE = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
MISTRAL_LEGACY = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] {{ .Response }}"
MISTRAL_MESSAGES = (
    "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n"
    "{{- range .Messages }}\n"
    '{{- if eq .Role "user" }}{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n'
    "{{- end }}"
)
MISTRAL_ASSISTANT_MESSAGES = (
    "\n{{- range $i, $m := .Messages }}\n"
    '{{- if eq .Role "user" }}[INST] {{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}{{ end }}\n'
    "{{- end }}"
)
CHATML_LEGACY = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
CHATML_INDEX = "\n{{- range $index, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"

FRIEND = [
    {"role": "user", "content": "Hello friend!"},
    {"role": "assistant", "content": "Hello human!"},
    {"role": "user", "content": "What is your name?"},
]
FRIEND_SYSTEM = [{"role": "system", "content": "You are a helpful assistant!"}, *FRIEND]
CHATML_FRIEND = (
    "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n"
    "<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n<|im_start|>assistant\n"
)

EXECUTE_CASES = [
    # ollama's TestExecuteWithMessages: legacy and messages templates render the same prompt
    (
        "mistral no response",
        MISTRAL_LEGACY_NO_RESPONSE,
        FRIEND,
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
    ),
    (
        "mistral response",
        MISTRAL_LEGACY,
        FRIEND,
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
    ),
    (
        "mistral messages",
        MISTRAL_MESSAGES,
        FRIEND,
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
    ),
    (
        "mistral system no response",
        MISTRAL_LEGACY_NO_RESPONSE,
        FRIEND_SYSTEM,
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] ",
    ),
    (
        "mistral system response",
        MISTRAL_LEGACY,
        FRIEND_SYSTEM,
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] ",
    ),
    (
        "mistral system messages",
        MISTRAL_MESSAGES,
        FRIEND_SYSTEM,
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] ",
    ),
    (
        "mistral assistant no response",
        "[INST] {{ .Prompt }}[/INST] ",
        [*FRIEND, {"role": "assistant", "content": "My name is Ollama and I"}],
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I",
    ),
    (
        "mistral assistant response",
        "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
        [*FRIEND, {"role": "assistant", "content": "My name is Ollama and I"}],
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I",
    ),
    (
        "mistral assistant messages",
        MISTRAL_ASSISTANT_MESSAGES,
        [*FRIEND, {"role": "assistant", "content": "My name is Ollama and I"}],
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I",
    ),
    ("chatml response", CHATML_LEGACY, FRIEND_SYSTEM, CHATML_FRIEND),
    ("chatml messages", CHATML_INDEX, FRIEND_SYSTEM, CHATML_FRIEND),
    # legacy details
    (
        "{{ .Response }} is appended",
        "{{ .System }}|{{ .Prompt }}|",
        [SYSTEM, USER1, ASSISTANT, USER2],
        "You are a helpful assistant.|Hello, how are you?|I'm doing great. How can I help you today?|I'd like to show off how chat templating works!|",
    ),
    (
        "tool messages are not in the legacy turns",
        "<{{ .Prompt }}>{{ .Response }}",
        [USER1, {"role": "tool", "content": "x"}],
        "<Hello, how are you?>",
    ),
    # collation: consecutive messages of a role merge, the system messages gather in .System
    (
        "consecutive user messages merge",
        "{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}",
        [{"role": "user", "content": "Hello"}, {"role": "user", "content": "How are you?"}],
        "[user:Hello\n\nHow are you?]",
    ),
    (
        "consecutive tool messages do not merge",
        "{{ range .Messages }}[{{ .Role }}:{{ .ToolName }}:{{ .Content }}]{{ end }}",
        [
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
            {"role": "tool", "content": "72F", "tool_name": "get_temperature"},
        ],
        "[tool:get_weather:sunny][tool:get_temperature:72F]",
    ),
    (
        "system messages gather in .System",
        "{{ .System }}|{{ range .Messages }}{{ .Role }} {{ end }}",
        [{"role": "system", "content": "a"}, USER1, {"role": "system", "content": "b"}],
        "a\n\nb|system user system ",
    ),
    (
        "thinking",
        "{{ range .Messages }}{{ .Thinking }}/{{ .Content }}{{ end }}",
        [{"role": "assistant", "content": "c", "thinking": "t"}],
        "t/c",
    ),
    # ollama's TestDateFunctions
    (
        "currentDate",
        "{{- range .Messages }}{{ .Content }}{{ end }} Today is {{ currentDate | len }}",
        [{"role": "user", "content": "Hello"}],
        "Hello Today is 10",
    ),
]


@pytest.mark.parametrize(
    ("template", "messages", "expected"), [c[1:] for c in EXECUTE_CASES], ids=[c[0] for c in EXECUTE_CASES]
)
def test_execute(template: str, messages: list[dict[str, Any]], expected: str) -> None:
    assert execute(template, messages) == expected


CODELLAMA_FIM = "<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>"
GENERATE_CASES = [
    # ollama's TestExecuteWithSuffix
    ("fim message", FIM, {"prompt": "hello"}, "hello"),
    ("fim prompt suffix", FIM, {"prompt": "def add(", "suffix": "return x"}, "<PRE> def add( <SUF>return x <MID>"),
    (
        "codellama fim",
        CODELLAMA_FIM,
        {"prompt": "def add(a, b):", "suffix": "    return c"},
        "<PRE> def add(a, b): <SUF>    return c <MID>",
    ),
    # Ollama's fill-in-the-middle data has no System: it prints as a missing key does
    (
        "suffix ignores system",
        "{{ .System }}[{{ .Prompt }}|{{ .Suffix }}]",
        {"system": "s", "prompt": "p", "suffix": "x"},
        "<no value>[p|x]",
    ),
    # /api/generate: system, then the prompt as the user's turn
    (
        "generate system prompt",
        CHATML,
        {"system": "Be brief.", "prompt": "Hi"},
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    ),
    ("generate default template", "{{ .Prompt }}", {"system": "ignored", "prompt": "Hi"}, "Hi"),
    (
        "generate legacy system",
        "{{ if .System }}S:{{ .System }} {{ end }}P:{{ .Prompt }} R:",
        {"system": "sys", "prompt": "Hi"},
        "S:sys P:Hi R:",
    ),
    # think values
    (
        "think level",
        "{{ .Think }} {{ .ThinkLevel }} {{ .IsThinkSet }}{{ range .Messages }}{{ end }}",
        {"prompt": "p", "think": "high"},
        "true high true",
    ),
    (
        "think true",
        "{{ .Think }} {{ .ThinkLevel }} {{ .IsThinkSet }}{{ range .Messages }}{{ end }}",
        {"prompt": "p", "think": True},
        "true medium true",
    ),
    (
        "think unset",
        "{{ .Think }} [{{ .ThinkLevel }}] {{ .IsThinkSet }}{{ range .Messages }}{{ end }}",
        {"prompt": "p"},
        "false [] false",
    ),
    (
        "think false in legacy",
        "{{ .Think }} {{ .IsThinkSet }} {{ .Prompt }}",
        {"prompt": "p", "think": False},
        "false true p",
    ),
]


@pytest.mark.parametrize(
    ("template", "kwargs", "expected"), [c[1:] for c in GENERATE_CASES], ids=[c[0] for c in GENERATE_CASES]
)
def test_execute_generate(template: str, kwargs: dict[str, Any], expected: str) -> None:
    assert execute(template, **kwargs) == expected


# --- tools ------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {
                "unit": {"type": "string", "enum": ["c", "f"], "description": "Unit"},
                "city": {"type": "string", "description": "City name"},
                "days": {"type": ["integer", "null"]},
            },
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
WEATHER_JSON = (
    '{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":'
    '{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"City name"},'
    '"days":{"type":["integer","null"]},"unit":{"type":"string","description":"Unit","enum":["c","f"]}}}}}'
)
TIME_JSON = '{"type":"function","function":{"name":"get_time","description":"","parameters":{"type":"object","properties":null}}}'
CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"function": {"name": "get_weather", "arguments": {"unit": "c", "city": "Paris", "days": 3}}}],
}
RESULT = {"role": "tool", "content": "sunny", "tool_name": "get_weather"}

# Mistral v0.3's template (Ollama's docs): tools before the last user turn, calls as JSON
MISTRAL_TOOLS = (
    "{{- range $index, $_ := .Messages }}\n"
    '{{- if eq .Role "user" }}\n'
    "{{- if and (le (len (slice $.Messages $index)) 2) $.Tools }}[AVAILABLE_TOOLS] {{ json $.Tools }}[/AVAILABLE_TOOLS]\n"
    "{{- end }}[INST] {{ if and (eq (len (slice $.Messages $index)) 1) $.System }}{{ $.System }}\n"
    "\n"
    "{{ end }}{{ .Content }}[/INST]\n"
    '{{- else if eq .Role "assistant" }}\n'
    "{{- if .Content }} {{ .Content }}</s>\n"
    "{{- else if .ToolCalls }}[TOOL_CALLS] [\n"
    '{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}\n'
    "{{- end }}]</s>\n"
    "{{- end }}\n"
    '{{- else if eq .Role "tool" }}[TOOL_RESULTS] {"content": {{ .Content }}}[/TOOL_RESULTS]\n'
    "{{- end }}\n"
    "{{- end }}"
)

TOOL_CASES = [
    (
        "mistral tools",
        MISTRAL_TOOLS,
        [{"role": "user", "content": "Weather in Paris?"}],
        [WEATHER_TOOL, TIME_TOOL],
        f"[AVAILABLE_TOOLS] [{WEATHER_JSON},{TIME_JSON}][/AVAILABLE_TOOLS][INST] Weather in Paris?[/INST]",
    ),
    (
        "mistral tool call and result",
        MISTRAL_TOOLS,
        [{"role": "user", "content": "Weather in Paris?"}, CALL, RESULT, {"role": "user", "content": "Thanks"}],
        [WEATHER_TOOL],
        (
            "[INST] Weather in Paris?[/INST]"
            '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city":"Paris","days":3,"unit":"c"}}]</s>'
            '[TOOL_RESULTS] {"content": sunny}[/TOOL_RESULTS]'
            f"[AVAILABLE_TOOLS] [{WEATHER_JSON}][/AVAILABLE_TOOLS][INST] Thanks[/INST]"
        ),
    ),
    ("mistral without tools", MISTRAL_TOOLS, [{"role": "user", "content": "Hi"}], None, "[INST] Hi[/INST]"),
    (
        "range over tools with json",
        "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ json . }}\n{{ end }}",
        [],
        [WEATHER_TOOL, TIME_TOOL],
        f"{WEATHER_JSON}\n{TIME_JSON}\n",
    ),
    (
        "a tool prints as its JSON",
        "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ . }}{{ end }}",
        [],
        [TIME_TOOL],
        TIME_JSON,
    ),
    ("tools print as JSON", "{{ range .Messages }}{{ end }}{{ .Tools }}", [], [TIME_TOOL], f"[{TIME_JSON}]"),
    (
        "tool fields",
        "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ .Type }} {{ .Function.Name }}: {{ .Function.Description }} {{ .Function.Parameters.Required }}{{ end }}",
        [],
        [WEATHER_TOOL],
        "function get_weather: Get the weather [city]",
    ),
    (
        # ollama's TestTemplatePropertiesRange and TestTemplatePropertiesJSON
        "range over properties",
        (
            "{{- range .Messages }}{{- end }}{{- range .Tools }}{{- range $name, $prop := .Function.Parameters.Properties }}"
            "{{ $name }}:{{ $prop.Type }}:{{ toTypeScriptType $prop }};{{- end }}{{- end }}"
        ),
        [],
        [WEATHER_TOOL],
        "city:string:string;days:[integer null]:number | null;unit:string:string;",
    ),
    (
        "properties print as JSON",
        "{{- range .Messages }}{{- end }}{{- range .Tools }}{{ .Function.Parameters.Properties }}{{- end }}",
        [],
        [
            TIME_TOOL,
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}},
            },
        ],
        '{}{"a":{"type":"string"}}',
    ),
    (
        # ollama's TestTemplateArgumentsJSON and TestTemplateArgumentsRange
        "arguments print as JSON",
        "{{- range .Messages }}{{- range .ToolCalls }}{{ .Function.Arguments }}{{- end }}{{- end }}",
        [CALL],
        None,
        '{"city":"Paris","days":3,"unit":"c"}',
    ),
    (
        "range over arguments",
        "{{- range .Messages }}{{- range .ToolCalls }}{{- range $k, $v := .Function.Arguments }}{{ $k }}={{ $v }};{{- end }}{{- end }}{{- end }}",
        [CALL],
        None,
        "city=Paris;days=3;unit=c;",
    ),
    (
        "tool call fields",
        "{{ range .Messages }}{{ range .ToolCalls }}{{ .ID }}/{{ .Function.Index }}/{{ .Function.Name }}/{{ .Function.Arguments }}{{ end }}{{ end }}",
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "function": {"index": 2, "name": "get_time"}}],
            }
        ],
        None,
        "c1/2/get_time/{}",
    ),
    ("no tools is falsy", "{{ range .Messages }}{{ end }}{{ if .Tools }}tools{{ else }}none{{ end }}", [], [], "none"),
]


@pytest.mark.parametrize(
    ("template", "messages", "tools", "expected"), [c[1:] for c in TOOL_CASES], ids=[c[0] for c in TOOL_CASES]
)
def test_tools(
    template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, expected: str
) -> None:
    assert execute(template, messages, tools=tools) == expected


# --- prompt_data ------------------------------------------------------------------------------


def test_prompt_data_messages() -> None:
    data = prompt_data([USER1, CALL, RESULT], system="sys", tools=[TIME_TOOL], think="low")
    assert data["System"] == "sys"
    assert data["Messages"] == [
        {
            "Role": "system",
            "Content": "sys",
            "Thinking": "",
            "Images": [],
            "ToolCalls": [],
            "ToolName": "",
            "ToolCallID": "",
        },
        {
            "Role": "user",
            "Content": USER1["content"],
            "Thinking": "",
            "Images": [],
            "ToolCalls": [],
            "ToolName": "",
            "ToolCallID": "",
        },
        {
            "Role": "assistant",
            "Content": "",
            "Thinking": "",
            "Images": [],
            "ToolCalls": [
                {
                    "ID": "",
                    "Function": {
                        "Index": 0,
                        "Name": "get_weather",
                        "Arguments": {"unit": "c", "city": "Paris", "days": 3.0},
                    },
                }
            ],
            "ToolName": "",
            "ToolCallID": "",
        },
        {
            "Role": "tool",
            "Content": "sunny",
            "Thinking": "",
            "Images": [],
            "ToolCalls": [],
            "ToolName": "get_weather",
            "ToolCallID": "",
        },
    ]
    assert str(data["Tools"]) == f"[{TIME_JSON}]"
    assert (data["Response"], data["Think"], data["ThinkLevel"], data["IsThinkSet"]) == ("", True, "low", True)
    assert "Prompt" not in data and "Suffix" not in data


def test_prompt_data_generate_and_fim() -> None:
    data = prompt_data(system="s", prompt="p")
    assert [(m["Role"], m["Content"]) for m in data["Messages"]] == [("system", "s"), ("user", "p")]
    assert prompt_data(prompt="p", suffix="x") == {
        "Prompt": "p",
        "Suffix": "x",
        "Response": "",
        "Think": False,
        "ThinkLevel": "",
        "IsThinkSet": False,
    }


def test_prompt_data_does_not_mutate_messages() -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    before = json.dumps(messages)
    prompt_data(messages)
    assert json.dumps(messages) == before

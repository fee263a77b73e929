"""Ollama's prompt templates: the subset of Go's `text/template` they use, in pure Python.

Ollama models carry a Go template (a Modelfile's `TEMPLATE`, `/api/create`'s `template`), and
`/api/generate` may override it per request (`template`). This module renders them as Ollama
does, so the engine can tokenize the result verbatim:

- `render(source, data)`: Go's `text/template` semantics over Python data (mappings are Go
  maps, lists and tuples slices, None is nil), with Ollama's functions (`json`, `currentDate`,
  `yesterdayDate`, `toTypeScriptType`) beside Go's built-ins.
- `execute(source, messages, ...)`: Ollama's `template.Execute` itself: the data it builds,
  the fill-in-the-middle values, and the legacy System/Prompt/Response collation for templates
  that do not range over `.Messages`. `prompt_data(...)` is the mapping it gives a template
  that does.
- `uses(source, name)`: whether the template mentions a variable (Ollama's `Template.Vars`),
  how Ollama tells that a model supports tools (`.Tools`) or insertion (`.Suffix`).

Tool call arguments are Go maps of JSON values: keys print in order, numbers are float64 (as
Ollama decodes them: 1000000 prints as 1e+06 but marshals as 1000000).

Supported: text with `{{- ` / ` -}}` trim markers, `{{/* comments */}}`, `if`/`else if`/
`else`/`end`, `range` (slices, maps in key order, integers) with `else`, `break` and
`continue`, `with`/`else with`, variables (`$x := ...`, `$x = ...`, `$`), pipelines, field
chains on mappings and on the structs Ollama passes, parenthesized pipelines, string (with Go's
escapes), raw, character, number, bool and nil literals, and the functions `and or not eq ne lt
le gt ge len index slice print printf println html js urlquery` plus Ollama's. Rejected with a
`TemplateError`: `define`, `template`, `block`, method calls, `call`, complex numbers.

Pure: standard library only. Modules, each importing only those listed before it: `errors`,
`values` (Go values, %v, JSON), `printf`, `lexer`, `nodes`, `functions`, `parser` (`parse`,
`uses`), `execute` (`render`), `ollama` (`execute`, `prompt_data`).
"""

from vllama.translate.gotemplate.errors import TemplateError
from vllama.translate.gotemplate.execute import render
from vllama.translate.gotemplate.ollama import execute, prompt_data
from vllama.translate.gotemplate.parser import Template, parse, uses

__all__ = ["Template", "TemplateError", "execute", "parse", "prompt_data", "render", "uses"]

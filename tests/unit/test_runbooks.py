"""docs/runbooks/ against what ships: the pages, their links, and every command they tell an operator to type.

A runbook is read at the worst moment, so a command that does not exist, an option the CLI refuses or
a metric nobody exposes costs minutes nobody has. These tests hold the pages to the real things:

- the page set is the one the alert rules and the issue name, each with Symptom, Check, Fix, Related;
- every relative link (and anchor into a markdown page) resolves;
- every ``alga-worker`` command line in a ``bash`` block walks the real Click command tree built from
  the Typer app and uses only options that command has, with the right number of arguments;
- every ``temporal`` command line names a real subcommand path of the ``temporal`` binary the project
  ships, and each long flag appears in that command's ``--help`` (or in ``temporal options``, the
  global and connection flags);
- every ``helm --set`` key exists in the chart's values;
- every PromQL query parses, uses only metric names the worker exposes (its catalogue and the SDK
  families of the real scrape) or documented kube-state-metrics / cAdvisor ones, and selects the
  worker's series by the job the alert rules use;
- each alert's page states the severity its rule carries, and the dashboard panels it names exist.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from tests.support.runbook_pages import ALERT_PAGES, RUNBOOK_BASE_URL, SITUATION_PAGES
from typer.main import get_command

from alga_worker.cli import app
from alga_worker.runtime import metrics
from alga_worker.runtime.devstack import find_binary

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks"
ALERT_RULES = ROOT / "deploy" / "monitoring" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "dashboard.json"
CHART_VALUES = ROOT / "deploy" / "helm" / "temporal-worker" / "values.yaml"
PAGES = (*ALERT_PAGES.values(), *SITUATION_PAGES)
SECTIONS = ["Symptom", "Check", "Fix", "Related"]

# Metric families a runbook query may use besides the worker's own catalogue: the Temporal SDK's as a
# real scrape exposes them (docs/observability.md), and documented kube-state-metrics / cAdvisor ones.
SDK_COUNTERS = (
    "temporal_activity_task_received_total", "temporal_activity_execution_failed_total",
    "temporal_long_request_total", "temporal_request_total", "temporal_request_failure_total",
    "temporal_sticky_cache_hit_total", "temporal_worker_start_total", "temporal_workflow_completed_total",
    "temporal_workflow_failed_total", "temporal_workflow_task_queue_poll_succeed_total",
)
SDK_GAUGES = ("temporal_num_pollers", "temporal_sticky_cache_size", "temporal_worker_task_slots_available",
              "temporal_worker_task_slots_used")
SDK_HISTOGRAMS = (
    "temporal_activity_execution_latency_seconds", "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_activity_succeed_endtoend_latency_seconds", "temporal_local_activity_execution_latency_seconds",
    "temporal_long_request_latency_seconds", "temporal_request_latency_seconds",
    "temporal_workflow_endtoend_latency_seconds", "temporal_workflow_task_execution_latency_seconds",
    "temporal_workflow_task_replay_latency_seconds", "temporal_workflow_task_schedule_to_start_latency_seconds",
)
KUBE_METRICS = (
    "kube_pod_container_status_restarts_total", "kube_pod_container_status_last_terminated_reason",
    "kube_pod_container_status_waiting_reason", "kube_pod_container_status_ready",
    "kube_pod_container_resource_limits", "kube_pod_init_container_status_running",
    "kube_pod_init_container_status_waiting_reason", "kube_pod_init_container_status_terminated_reason",
    "kube_pod_init_container_status_restarts_total", "kube_deployment_status_replicas_available",
    "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
)
WORKER_JOB = "alga-temporal-worker"

PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z0-9_.-]*>")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
HEREDOC = re.compile(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?")
SHELL_OPERATOR = re.compile(r"^[();<>|&]+$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HELM_SET_FLAGS = ("--set", "--set-string", "--set-json")
# "- Dashboard *<dashboard title>*: *<panel>*, *<panel>* ..." in a Symptom section.
DASHBOARD_BULLET = re.compile(r"^- Dashboard \*([^*]+)\*:(.*?)(?=^- |^\s*$)", re.M | re.S)


def _histogram_series(names: tuple[str, ...]) -> set[str]:
    return {f"{name}{suffix}" for name in names for suffix in ("_bucket", "_sum", "_count")}


def _catalogue_names() -> set[str]:
    names: set[str] = set()
    for spec in metrics.CATALOGUE:
        names.add(spec.exposed_name)
        if spec.kind == "histogram":
            names |= _histogram_series((spec.exposed_name,))
    return names


ALLOWED_METRICS = (_catalogue_names() | set(SDK_COUNTERS) | set(SDK_GAUGES) | _histogram_series(SDK_HISTOGRAMS)
                   | set(KUBE_METRICS) | {"up"})
# Families the worker's own scrape serves: their selectors must name the job the alert rules use.
WORKER_METRIC_PREFIXES = ("alga_", "temporal_")


# ---------------------------------------------------------------- reading the pages


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, its text (dedented to the fence) and where it starts."""

    lang: str
    text: str
    line: int


def _read(page: str) -> str:
    return (RUNBOOKS / page).read_text(encoding="utf-8")


def _blocks(text: str) -> list[Block]:
    """Every fenced block, indented ones (inside list items) included."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if opening is None:
            i += 1
            continue
        indent, lang, start = len(opening.group(1)), opening.group(2), i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append(Block(lang, "\n".join(body), start))
        i += 1
    return blocks


def _prose(text: str) -> str:
    """The page without fenced blocks and inline code: what renders as markdown text."""
    without_blocks = re.sub(r"^\s*```.*?^\s*```\s*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`]*`", "", without_blocks)


def _headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of every heading outside code blocks (a ``# comment`` in bash is no heading)."""
    prose = re.sub(r"^\s*```.*?^\s*```\s*$", "", text, flags=re.S | re.M)
    return [(len(m.group(1)), m.group(2).strip()) for m in re.finditer(r"^(#{1,6})\s+(.+)$", prose, re.M)]


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but ``-`` and ``_``), spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _command_lines(block: Block) -> list[str]:
    """Logical shell lines of a bash block: continuations joined, heredoc bodies left out."""
    lines: list[str] = []
    pending = ""
    heredoc_end: str | None = None
    for raw in block.text.splitlines():
        if heredoc_end is not None:
            if raw.strip() == heredoc_end:
                heredoc_end = None
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = pending + raw
        pending = ""
        marker = HEREDOC.search(line)
        if marker is not None:
            heredoc_end = marker.group(1)
        if line.strip():
            lines.append(line)
    assert not pending, f"line {block.line}: a continuation '\\' ends the block"
    return lines


def _segments(line: str) -> list[list[str]]:
    """Simple commands of a shell line, split at pipes, lists, redirections and subshell parentheses.

    ``<placeholders>`` become one word first (``<`` and ``>`` are redirections to the shell lexer), and
    a redirection's target is not an argument of the command before it."""
    lexer = shlex.shlex(PLACEHOLDER.sub("PLACEHOLDER", line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    after_redirect = False
    for token in lexer:
        if SHELL_OPERATOR.match(token):
            if segments[-1] and re.fullmatch(r"\d", segments[-1][-1]) and token.startswith(">"):
                segments[-1].pop()  # the fd of "2>/dev/null"
            after_redirect = token in (">", ">>", "<", "&>")
            segments.append([])
        elif after_redirect:
            after_redirect = False
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def _invocations(words: list[str]) -> list[tuple[str, list[str]]]:
    """(program, arguments) of the programs we check: the command word itself, or the command run by
    ``kubectl exec ... -- <command>`` (``alga-worker`` runs inside a worker pod)."""
    words = list(words)
    while words and ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words:
        return []
    program = Path(words[0]).name
    if program == "kubectl" and "--" in words:
        return _invocations(words[words.index("--") + 1:])
    if program in ("alga-worker", "temporal", "helm"):
        return [(program, words[1:])]
    return []


def _page_invocations(page: str, program: str) -> list[tuple[int, str, list[str]]]:
    """(block line, shell line, arguments) of every invocation of ``program`` in the page's bash blocks."""
    found: list[tuple[int, str, list[str]]] = []
    for block in _blocks(_read(page)):
        if block.lang != "bash":
            continue
        for line in _command_lines(block):
            for segment in _segments(line):
                for name, args in _invocations(segment):
                    if name == program:
                        found.append((block.line, line, args))
    return found


# ---------------------------------------------------------------- the real commands


# The Click command tree Typer builds from the app (Typer vendors its Click: the objects are duck-typed
# here, by ``commands`` for groups and ``param_type_name`` for parameters).
ROOT_COMMAND: Any = get_command(app)


def alga_worker_problems(args: list[str]) -> list[str]:
    """What is wrong with ``alga-worker <args>``: an unknown command, an unknown option, a missing value,
    too few or too many arguments. Empty: the CLI would accept it."""
    command: Any = ROOT_COMMAND
    path: list[str] = []
    i = 0
    while hasattr(command, "commands"):
        if i >= len(args) or args[i].startswith("-"):
            return [] if args[i:i + 1] == ["--help"] else [f"'alga-worker {' '.join(path)}' needs a subcommand"]
        sub = command.commands.get(args[i])
        if sub is None:
            return [f"no command '{args[i]}' in 'alga-worker {' '.join(path)}' (has: {sorted(command.commands)})"]
        command, path = sub, [*path, args[i]]
        i += 1
    name = f"alga-worker {' '.join(path)}"
    options: dict[str, Any] = {}
    for param in command.params:
        if param.param_type_name == "option":
            for opt in (*param.opts, *param.secondary_opts):
                options[opt] = param
    problems: list[str] = []
    positionals = 0
    rest = args[i:]
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--help":
            return []
        if token.startswith("-") and token != "-":
            flag, has_value, _ = token.partition("=")
            option = options.get(flag)
            if option is None:
                problems.append(f"{name}: no option {flag} (has: {sorted(options)})")
            elif not (option.is_flag or option.count) and not has_value:
                if j + 1 >= len(rest):
                    problems.append(f"{name}: {flag} needs a value")
                j += 1
        else:
            positionals += 1
        j += 1
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    required = sum(1 for p in arguments if p.required)
    unbounded = any(p.nargs == -1 for p in arguments)
    maximum = sum(max(p.nargs, 0) for p in arguments)
    if positionals < required or (not unbounded and positionals > maximum):
        problems.append(f"{name}: {positionals} argument(s), takes {required}..{'*' if unbounded else maximum}")
    return problems


TEMPORAL = find_binary("temporal")


@functools.cache
def temporal_help(path: tuple[str, ...]) -> str:
    """``temporal <path> --help``, once per path. Cobra answers an unknown subcommand with the parent's
    help and exit 0, so the path is walked from the parents' command lists, never trusted."""
    done = subprocess.run([TEMPORAL, *path, "--help"], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@functools.cache
def temporal_global_options() -> str:
    """``temporal options``: the global and connection flags every command accepts."""
    done = subprocess.run([TEMPORAL, "options"], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def _subcommands(help_text: str) -> set[str]:
    block = re.search(r"^Available Commands:\n((?:  \S.*\n)+)", help_text, re.M)
    return set() if block is None else {line.split()[0] for line in block.group(1).splitlines()}


def _runnable(path: tuple[str, ...], help_text: str) -> bool:
    usage = re.search(r"^Usage:\n((?:  .*\n)+)", help_text, re.M)
    return usage is not None and f"temporal {' '.join(path)} [flags]" in usage.group(1)


def temporal_problems(args: list[str]) -> list[str]:
    """What is wrong with ``temporal <args>``: a subcommand that does not exist, a command that needs a
    subcommand, a long flag neither the command nor ``temporal options`` documents."""
    path: tuple[str, ...] = ()
    words = list(args)
    while words and not words[0].startswith("-"):
        known = _subcommands(temporal_help(path))
        if words[0] not in known:
            return [f"no command '{words[0]}' in 'temporal {' '.join(path)}' (has: {sorted(known)})"]
        path = (*path, words.pop(0))
    help_text = temporal_help(path)
    name = f"temporal {' '.join(path)}"
    problems = [] if _runnable(path, help_text) else [f"'{name}' needs a subcommand"]
    for token in args:
        if not token.startswith("--") or token == "--":
            continue
        flag = token.partition("=")[0]
        pattern = rf"(?<![\w-]){re.escape(flag)}(?![\w-])"
        if not re.search(pattern, help_text) and not re.search(pattern, temporal_global_options()):
            problems.append(f"{name}: no flag {flag}")
    return problems


def _values_has(path: str) -> bool:
    node: Any = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def helm_set_problems(args: list[str]) -> list[str]:
    """``--set key=value`` (and -string, -json) keys that the chart's values do not have: helm would
    take them silently and change nothing."""
    problems: list[str] = []
    for index, token in enumerate(args):
        flag, has_value, value = token.partition("=")
        if flag not in HELM_SET_FLAGS:
            continue
        assignments = value if has_value else (args[index + 1] if index + 1 < len(args) else "")
        for assignment in assignments.split(",") if flag != "--set-json" else [assignments]:
            key = assignment.partition("=")[0]
            if not _values_has(key):
                problems.append(f"helm {flag} {key}: not a key of the chart's values.yaml")
    return problems


def _selectors(expr: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    return found


def promql_problems(query: str) -> list[str]:
    """A query that does not parse, a metric name nothing exposes, a worker series without the job."""
    try:
        expr = promql_parser.parse(query)
    except Exception as err:  # the parser's own error type is not part of its API
        return [f"does not parse: {err}"]
    problems: list[str] = []
    for selector in _selectors(expr):
        name = selector.name
        if name not in ALLOWED_METRICS:
            problems.append(f"metric {name!r} is not exposed by the worker, kube-state-metrics or cAdvisor")
        if name == "up" or str(name).startswith(WORKER_METRIC_PREFIXES):
            matchers = {(m.name, m.value) for m in selector.matchers.matchers}
            if ("job", WORKER_JOB) not in matchers:
                problems.append(f'{name}: select the worker\'s series with job="{WORKER_JOB}"')
    return problems


def _alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule}


# ---------------------------------------------------------------- tests: pages and links


def test_the_runbook_folder_holds_exactly_the_named_pages() -> None:
    assert sorted(p.name for p in RUNBOOKS.glob("*.md")) == sorted([*PAGES, "README.md"])


@pytest.mark.parametrize("page", PAGES)
def test_page_has_the_four_sections_in_order(page: str) -> None:
    text = _read(page)
    assert [title for level, title in _headings(text) if level == 2] == SECTIONS
    assert [title for level, title in _headings(text) if level == 1], "a title"
    blocks = _blocks(text)
    assert any(b.lang == "bash" for b in blocks), "exact commands in a bash block"


@pytest.mark.parametrize("page", PAGES)
def test_every_section_has_content(page: str) -> None:
    parts = re.split(r"^## .+$", re.sub(r"^\s*```.*?^\s*```\s*$", "CODE", _read(page), flags=re.S | re.M),
                     flags=re.M)
    assert all(part.strip() for part in parts[1:]), "an empty section"


def test_readme_indexes_every_page_with_its_alert() -> None:
    readme = _read("README.md")
    linked = {target for target in LINK.findall(_prose_links_only(readme))}
    assert set(PAGES) <= linked
    rows = {line for line in readme.splitlines() if line.startswith("|")}
    for alert, page in ALERT_PAGES.items():
        assert any(f"`{alert}`" in row and f"({page})" in row for row in rows), alert
    for page in SITUATION_PAGES:
        assert any(f"({page})" in row for row in rows), page


def _prose_links_only(text: str) -> str:
    return re.sub(r"^\s*```.*?^\s*```\s*$", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("page", [*PAGES, "README.md"])
def test_every_relative_link_resolves(page: str) -> None:
    problems: list[str] = []
    text = re.sub(r"`[^`\n]*`", "", _prose_links_only(_read(page)))
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        path = (RUNBOOKS / file_part).resolve() if file_part else RUNBOOKS / page
        if not path.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and path.suffix == ".md":
            anchors = {_slug(title) for _, title in _headings(path.read_text(encoding="utf-8"))}
            if anchor not in anchors:
                problems.append(f"{target}: no heading with anchor #{anchor}")
    assert not problems


@pytest.mark.parametrize("page", [*PAGES, "README.md"])
def test_no_placeholder_is_swallowed_as_html(page: str) -> None:
    """``<tenant-id>`` outside code renders as an (invisible) HTML tag on GitHub."""
    assert not re.findall(r"<[a-z][a-z0-9 _-]*>", _prose(_read(page)))


def test_the_projects_readme_and_deployment_guide_link_the_runbooks() -> None:
    assert "(docs/runbooks/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(runbooks/README.md)" in (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- tests: alerts


def test_every_alert_rule_has_its_page_and_the_pages_name_every_alert() -> None:
    rules = _alert_rules()
    assert set(rules) == set(ALERT_PAGES)
    for alert, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == RUNBOOK_BASE_URL + ALERT_PAGES[alert], alert


@pytest.mark.parametrize("alert", sorted(ALERT_PAGES))
def test_alert_page_states_the_rules_severity(alert: str) -> None:
    text = _read(ALERT_PAGES[alert])
    severity = _alert_rules()[alert]["labels"]["severity"]
    assert f"**Alert:** `{alert}`" in text
    assert re.findall(r"\*\*Severity:\*\* `(\w+)`", text) == [severity]
    readme_row = next(line for line in _read("README.md").splitlines() if f"`{alert}`" in line)
    assert readme_row.rstrip(" |").endswith(severity)
    assert "**What the expression means:**" in text
    assert any(b.lang == "promql" for b in _blocks(text)), "a query to check with"


def _dashboard() -> tuple[str, set[str]]:
    """The dashboard's title and every panel title (rows included)."""
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles: set[str] = set()

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            titles.add(panel.get("title", ""))
            walk(panel.get("panels", []))

    walk(doc["panels"])
    return doc["title"], titles


@pytest.mark.parametrize("page", PAGES)
def test_dashboard_panels_a_page_names_exist(page: str) -> None:
    title, panels = _dashboard()
    bullets = list(DASHBOARD_BULLET.finditer(_read(page)))
    if page in ALERT_PAGES.values():
        assert bullets, "an alert page says where the dashboard shows it"
    for bullet in bullets:
        assert bullet.group(1) == title
        named = {" ".join(name.split()) for name in re.findall(r"\*([^*]+)\*", bullet.group(2))}
        assert named, bullet.group(0)
        assert named <= panels, sorted(named - panels)


# ---------------------------------------------------------------- tests: commands and queries


@pytest.mark.parametrize("page", [*PAGES, "README.md"])
def test_alga_worker_commands_exist_with_their_options(page: str) -> None:
    problems = [f"line {line_no}: {problem}\n    {line}"
                for line_no, line, args in _page_invocations(page, "alga-worker")
                for problem in alga_worker_problems(args)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [*PAGES, "README.md"])
def test_temporal_commands_exist_with_their_flags(page: str) -> None:
    problems = [f"line {line_no}: {problem}\n    {line}"
                for line_no, line, args in _page_invocations(page, "temporal")
                for problem in temporal_problems(args)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [*PAGES, "README.md"])
def test_helm_set_keys_exist_in_the_chart(page: str) -> None:
    problems = [f"line {line_no}: {problem}" for line_no, _, args in _page_invocations(page, "helm")
                for problem in helm_set_problems(args)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_promql_queries_parse_and_use_exposed_metrics(page: str) -> None:
    problems: list[str] = []
    for block in _blocks(_read(page)):
        if block.lang != "promql":
            continue
        for query in (q.strip() for q in block.text.splitlines()):
            if query and not query.startswith("#"):
                problems += [f"line {block.line}: {problem}\n    {query}" for problem in promql_problems(query)]
    assert not problems, "\n".join(problems)


def test_the_pages_command_most_things_through_the_checked_tools() -> None:
    """The parsers above must see the commands: a change that hid them would pass every check vacuously."""
    counts = {program: sum(len(_page_invocations(page, program)) for page in (*PAGES, "README.md"))
              for program in ("alga-worker", "temporal", "helm")}
    assert counts["alga-worker"] >= 40 and counts["temporal"] >= 25 and counts["helm"] >= 5, counts
    used = {" ".join(word for word in args[:2] if not word.startswith("-") and word != "PLACEHOLDER")
            for page in PAGES for _, _, args in _page_invocations(page, "alga-worker")}
    assert {"check", "health-check", "tenant status", "tenant cancel", "checkout status", "checkout resend",
            "deployment status", "deployment rollback", "user resend-welcome"} <= used, sorted(used)


# ---------------------------------------------------------------- tests: the checkers themselves


@pytest.mark.parametrize(("args", "fragment"), [
    (["tenant", "stauts", "x"], "no command 'stauts'"),
    (["tenant"], "needs a subcommand"),
    (["tenant", "status"], "0 argument(s)"),
    (["tenant", "cancel", "wf", "--why", "x"], "no option --why"),
    (["checkout", "resend", "cs_1", "cs_2"], "2 argument(s)"),
    (["health-check", "--timeout"], "--timeout needs a value"),
])
def test_the_alga_worker_checker_refuses_what_click_refuses(args: list[str], fragment: str) -> None:
    problems = alga_worker_problems(args)
    assert any(fragment in p for p in problems), problems


def test_the_alga_worker_checker_accepts_real_lines() -> None:
    for line in ("tenant cancel wf-1 --reason 'dup order' --by ops", "user list t --active-only",
                 "customer track t --no-create-portal-user", "deployment rollback --to abc --wait=60",
                 "health-check --expect-build-id abc --routed", "email send account_deactivated --to a@b.c "
                 "--var tenant_name=X --var first_name=Y --var email=a@b.c", "--help"):
        assert alga_worker_problems(shlex.split(line)) == [], line


@pytest.mark.parametrize(("line", "fragment"), [
    ("workflow lst --namespace default", "no command 'lst'"),
    ("worker deployment --name x", "needs a subcommand"),
    ("workflow describe --workflow-id x --run-idd y", "no flag --run-idd"),
    ("task-queue describe --taskqueue q", "no flag --taskqueue"),
])
def test_the_temporal_checker_refuses_what_the_cli_lacks(line: str, fragment: str) -> None:
    problems = temporal_problems(shlex.split(line))
    assert any(fragment in p for p in problems), problems


def test_the_temporal_checker_accepts_global_and_command_flags() -> None:
    assert temporal_problems(shlex.split(
        "workflow list --namespace default --address localhost:7233 --query 'X=1' --limit 5 -o json")) == []


def test_the_shell_reader_finds_commands_behind_kubectl_exec_pipes_and_placeholders() -> None:
    block = Block("bash", "kubectl -n msp exec deploy/x -c worker -- alga-worker tenant status <workflow-id> "
                          "2>/dev/null | jq .\nFOO=1 temporal workflow show \\\n  --workflow-id <id>\n"
                          "kubectl -n temporal get pods\npython -c x <<'SQL'\nSELECT 1\nSQL\n", 1)
    found = [(name, args) for line in _command_lines(block) for segment in _segments(line)
             for name, args in _invocations(segment)]
    assert found == [("alga-worker", ["tenant", "status", "PLACEHOLDER"]),
                     ("temporal", ["workflow", "show", "--workflow-id", "PLACEHOLDER"])]


def test_the_promql_checker_refuses_unknown_metrics_and_missing_job() -> None:
    assert promql_problems('sum(alga_worker_ready{job="alga-temporal-worker"})') == []
    assert promql_problems('kube_pod_container_status_restarts_total{namespace="msp"}') == []
    assert any("not exposed" in p for p in promql_problems('alga_tenants_total{job="alga-temporal-worker"}'))
    assert any("job=" in p for p in promql_problems("temporal_num_pollers"))
    assert any("parse" in p for p in promql_problems("sum(rate(x[5m])"))

"""Configuration: every bad, missing or unknown key is an error that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stb_widget.cli import main
from stb_widget.config import config_doc, iter_settings, load_config
from stb_widget.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "deploy" / "stb-widget.toml"

GOOD = """
box_id = "stb-000123"
data_dir = "/var/lib/stb-widget"
[collector]
url = "https://collector.example.net/"
token = "abc"
[player]
source = "mpv"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


def test_minimal_config_takes_the_contract_defaults(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    assert c.collector.upload_delay_s == 60 and c.collector.boot_jitter_s == 300
    assert c.player.mpv_socket == "/run/mpv.sock"
    assert c.player.events_socket == "/run/stb-widget.sock"
    s = c.survey
    assert (s.enabled, s.sample_rate, s.min_watch_s) == (True, 0.05, 600)
    assert (s.cooldown_answered_days, s.cooldown_dismissed_days, s.timeout_s) == (90, 30, 60)
    assert (s.locale, s.service_name, s.tty) == ("nl", "IPTV", "")
    assert "abc" not in repr(c)  # the token never shows up in logs


def test_example_config_is_valid_once_its_token_is_set(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    token = next(line for line in text.splitlines() if line.startswith("token ="))
    c = load_config(write(tmp_path, text.replace(token, 'token = "k3Q9vX2mZ8"')))
    assert c.box_id == "stb-000123" and c.survey.settle_s == 3


def test_the_shipped_example_refuses_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    """Installed as shipped, the agent would upload with a placeholder token (401 for ever):
    it stops with exit 2 and says what to put there."""
    assert main(["run", "--config", str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "collector.token: is still the example's placeholder" in err, err
    assert "nps-collector box-token" in err
    assert "REPLACE" not in err  # the value is not echoed (whatever sits there)


@pytest.mark.parametrize("token", ["...", "<token>", "CHANGEME", "your-token-here",
                                   "REPLACE-WITH-THE-OUTPUT-OF-nps-collector-box-token"])
def test_placeholder_tokens_are_refused(tmp_path: Path, token: str) -> None:
    with pytest.raises(ConfigError, match=r"collector\.token: is still the example.s placeholder"):
        load_config(write(tmp_path, GOOD.replace('token = "abc"', f'token = "{token}"')))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "[survey]\nsample_rate = 1.5\n",
         "survey.sample_rate: must be a number between 0 and 1"),
        (GOOD + "[survey]\nsample_rate = \"high\"\n", "survey.sample_rate: must be a number"),
        (GOOD + "[survey]\nenabled = 1\n", "survey.enabled: must be true or false"),
        (GOOD + "[survey]\ncolour = \"red\"\n", "survey.colour: unknown key"),
        (GOOD + "[survey]\nquiet_hours = \"late\"\n", "survey.quiet_hours: must be"),
        (GOOD + "[surveys]\n", "surveys: unknown key"),
        (GOOD + "extra = 1\n", "player.extra: unknown key"),
        ("extra = 1\n" + GOOD, "extra: unknown key"),
        (GOOD.replace('source = "mpv"', 'source = "vlc"'), "player.source: must be one of"),
        (GOOD.replace('box_id = "stb-000123"', 'box_id = "a b"'), "box_id: must be"),
        # A trailing newline passed `$` with re.match (issue 16, finding 10).
        (GOOD.replace('box_id = "stb-000123"', 'box_id = "nlbox\\n"'), "box_id: must be"),
        (GOOD.replace('box_id = "stb-000123"\n', ""), "box_id: is required"),
        (GOOD.replace('token = "abc"\n', ""), "collector.token: is required"),
        (GOOD.replace('url = "https://collector.example.net/"', 'url = "ftp://x"'),
         "collector.url: must be an http"),
        (GOOD + "[buffer]\nmax_records = 1.5\n", "buffer.max_records: must be an integer"),
        (GOOD + "[box]\nmodel = 7\n", "box.model: must be a string"),
        ("survey = 3\n" + GOOD, "survey: must be a table"),
        ("box_id = \n", "config: "),
        (GOOD + "channel_pattern = \"(unclosed\"\n",
         "player.channel_pattern: not a valid regular expression"),
        (GOOD + "[survey]\nsettle_s = -1\n", "survey.settle_s: must be a number between 0"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value).startswith(message), str(info.value)


def test_cli_reports_the_key_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD + "[survey]\nsample_rate = -1\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "survey.sample_rate: must be a number between 0 and 1" in err


def test_doc_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    doc = config_doc()
    for key, *_ in iter_settings():
        assert f"`{key}`" in doc
    assert main(["config-doc"]) == 0
    assert "survey.sample_rate" in capsys.readouterr().out


def test_operator_doc_is_generated_from_the_settings() -> None:
    text = (Path(__file__).parents[2] / "docs" / "agent.md").read_text()
    assert config_doc() in text, "docs/agent.md is stale: run scripts/agent-doc or config-doc"

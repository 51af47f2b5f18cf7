"""The xchat command as a person uses it: real processes, real files, real terminals."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

NIP06_PHRASE = "leader monkey parrot ring guide accident before fence cannon height naive bean"
NIP06_NPUB = "npub1zutzeysacnf9rru6zqwmxd54mud0k44tst6l70ja5mhv8jjumytsd2x7nu"
NIP06_NSEC = "nsec10allq0gjx7fddtzef0ax00mdps9t2kmtrldkyjfs8l5xruwvh2dq0lhhkp"
PASS = "a long enough passphrase"


def xchat(
    *args: str, home: Path, stdin: str = "", passphrase: str | None = PASS, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    environment["XCHAT_DEFAULT_RELAYS"] = ""  # nothing in the tests reaches the internet
    if passphrase is not None:
        environment["XCHAT_PASSPHRASE"] = passphrase
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "xchat", "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_init_shows_a_new_phrase_once_and_card_needs_no_passphrase(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    result = xchat("init", "--relay", "wss://relay.example.com", home=home)
    assert result.returncode == 0, result.stderr
    words = re.findall(r"\b\d+\. ([a-z]+)", result.stdout)
    assert len(words) == 12
    npub = re.search(r"npub1[02-9ac-hj-np-z]+", result.stdout)
    assert npub is not None
    card = xchat("card", "--json", home=home, passphrase=None)
    assert card.returncode == 0, card.stderr
    data = json.loads(card.stdout)
    assert set(data) == {"npub", "nprofile", "uri", "relays"}
    assert data["npub"] == npub.group(0)
    assert data["relays"] == ["wss://relay.example.com"]
    assert data["uri"] == "nostr:" + data["nprofile"]
    # The phrase is never written in clear, and the home is private.
    for path in home.iterdir():
        assert not any(w.encode() in path.read_bytes() for w in words if len(w) > 4)
        assert path.stat().st_mode & 0o077 == 0
    assert home.stat().st_mode & 0o077 == 0
    # It is shown again only on request, after the passphrase.
    shown = xchat("phrase", home=home)
    assert shown.stdout.split() == words


def test_init_with_24_words(tmp_path: Path) -> None:
    result = xchat("init", "--words", "24", home=tmp_path / "h")
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"\b\d+\. ([a-z]+)", result.stdout)) == 24


def test_restore_from_a_piped_phrase_gives_the_nip06_identity(tmp_path: Path) -> None:
    result = xchat("init", "--restore", home=tmp_path / "h", stdin=NIP06_PHRASE + "\n")
    assert result.returncode == 0, result.stderr
    assert NIP06_NPUB in result.stdout
    assert "leader" not in result.stdout  # a restored phrase is not echoed back


def test_import_nsec(tmp_path: Path) -> None:
    result = xchat("init", "--import-nsec", home=tmp_path / "h", stdin=NIP06_NSEC + "\n")
    assert result.returncode == 0, result.stderr
    assert NIP06_NPUB in result.stdout
    assert NIP06_NSEC not in result.stdout + result.stderr
    no_phrase = xchat("phrase", home=tmp_path / "h")
    assert no_phrase.returncode == 1
    assert "no recovery phrase" in no_phrase.stderr


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        (NIP06_PHRASE.replace("parrot", "parot"), "word 3 of the recovery phrase, 'parot'"),
        (NIP06_PHRASE.replace("bean", "zoo"), "checksum does not match"),
        (" ".join(NIP06_PHRASE.split()[:11]), "this one has 11"),
    ],
)
def test_bad_phrases_are_explained(tmp_path: Path, phrase: str, expected: str) -> None:
    result = xchat("init", "--restore", home=tmp_path / "h", stdin=phrase + "\n")
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "h" / "keystore.json").exists()


def test_wrong_passphrase_is_one_line_and_non_zero(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert xchat("init", home=home).returncode == 0
    result = xchat("phrase", home=home, passphrase="not my passphrase")
    assert result.returncode == 1
    assert result.stderr == "xchat: wrong passphrase: it does not open this identity's keystore\n"
    assert result.stdout == ""


def test_no_passphrase_without_a_terminal_says_how_to_give_one(tmp_path: Path) -> None:
    result = xchat("init", home=tmp_path / "h", passphrase=None)
    assert result.returncode == 1
    assert "XCHAT_PASSPHRASE" in result.stderr
    assert "--passphrase-file" in result.stderr


def test_passphrase_file_and_short_passphrases(tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("from a file, long enough\n")
    home = tmp_path / "h"
    ok = xchat("init", "--passphrase-file", str(secret), home=home, passphrase=None)
    assert ok.returncode == 0, ok.stderr
    assert (
        xchat("phrase", "--passphrase-file", str(secret), home=home, passphrase=None).returncode
        == 0
    )
    short = xchat("init", home=tmp_path / "h2", passphrase="short")
    assert short.returncode == 1
    assert "at least 8" in short.stderr


def test_init_twice_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert xchat("init", home=home).returncode == 0
    again = xchat("init", home=home)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_change_passphrase(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert xchat("init", home=home).returncode == 0
    changed = xchat("change-passphrase", home=home, XCHAT_NEW_PASSPHRASE="the new passphrase")
    assert changed.returncode == 0, changed.stderr
    assert xchat("phrase", home=home).returncode == 1
    assert xchat("phrase", home=home, passphrase="the new passphrase").returncode == 0


def test_qr_codes_in_the_terminal_and_as_files(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert xchat("init", home=home).returncode == 0
    terminal = xchat("card", "--qr", home=home, passphrase=None)
    assert terminal.returncode == 0
    assert "█" in terminal.stdout
    png, svg = tmp_path / "card.png", tmp_path / "card.svg"
    assert xchat("card", "--qr-file", str(png), home=home).returncode == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert xchat("card", "--qr-file", str(svg), home=home).returncode == 0
    assert b"<svg" in svg.read_bytes()
    bad = xchat("card", "--qr-file", str(tmp_path / "card.gif"), home=home)
    assert bad.returncode == 1
    assert ".png or .svg" in bad.stderr


def test_card_without_an_identity_says_how_to_make_one(tmp_path: Path) -> None:
    result = xchat("card", home=tmp_path / "nothing", passphrase=None)
    assert result.returncode == 1
    assert "xchat init" in result.stderr


def test_xchat_home_environment_variable(tmp_path: Path) -> None:
    home = tmp_path / "from-env"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    environment.update(XCHAT_HOME=str(home), XCHAT_PASSPHRASE=PASS)
    result = subprocess.run(
        [sys.executable, "-m", "xchat", "init"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (home / "keystore.json").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = xchat("init", "--words", "13", home=tmp_path / "h")
    assert result.returncode == 2
    assert xchat("frobnicate", home=tmp_path / "h").returncode == 2


PROMPTS = (b"Recovery phrase:", b"Passphrase:", b"Passphrase again:", b"(nsec1\xe2\x80\xa6):")


def _interact(
    args: list[str],
    answers: list[str],
    timeout: float = 30,
    env: dict[str, str] | None = None,
    prompts: tuple[bytes, ...] = PROMPTS,
) -> tuple[int, str]:
    """Run xchat on a real pseudo-terminal, typing ``answers`` at its prompts."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the terminal is its controlling tty, so getpass reads from it
        environment = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
        environment["XCHAT_DEFAULT_RELAYS"] = ""  # nothing in the tests reaches the internet
        environment.update(env or {})
        os.execve(sys.executable, [sys.executable, "-m", "xchat", *args], environment)
    output = b""
    answered = 0
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            shown = output.rstrip()  # a prompt is answered once, not again after its newline
            if pending and shown.endswith(prompts) and len(shown) > answered:
                os.write(fd, pending.pop(0).encode() + b"\n")
                answered = len(shown)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_interactive_init_confirms_the_passphrase_and_hides_it(tmp_path: Path) -> None:
    home = str(tmp_path / "tty")
    code, screen = _interact(["--home", home, "init"], [PASS, "a different one!!"])
    assert code == 1
    assert "the two passphrases differ" in screen
    code, screen = _interact(["--home", home, "init"], [PASS, PASS])
    assert code == 0, screen
    assert PASS not in screen  # not echoed
    assert "Your recovery phrase (12 words)" in screen
    code, screen = _interact(["--home", home, "phrase"], ["wrong passphrase"])
    assert code == 1
    assert "wrong passphrase" in screen


def test_interactive_restore_hides_the_phrase(tmp_path: Path) -> None:
    home = str(tmp_path / "tty")
    code, screen = _interact(["--home", home, "init", "--restore"], [NIP06_PHRASE, PASS, PASS])
    assert code == 0, screen
    assert NIP06_NPUB in screen
    assert "monkey" not in screen

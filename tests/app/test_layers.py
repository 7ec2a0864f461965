"""Service seams: ``wedgenet serve`` is an entry-point command of the service, not an import of
the engine."""

from __future__ import annotations

import pytest


def test_serve_is_an_entry_point_command_of_the_service() -> None:
    from app.cli import serve_main
    from wedgenet.cli import COMMANDS_GROUP, plugin_commands

    assert COMMANDS_GROUP == "wedgenet.commands"
    ep = plugin_commands()["serve"]
    assert ep.value == "app.cli:serve_main"
    assert ep.load() is serve_main


def test_wedgenet_serve_dispatches_to_the_entry_point(monkeypatch, capsys) -> None:
    from importlib.metadata import EntryPoint

    import wedgenet.cli as cli

    seen: list[list[str]] = []
    monkeypatch.setattr("app.cli.serve_main", lambda argv: seen.append(argv) or 0)
    ep = EntryPoint("serve", "app.cli:serve_main", cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "plugin_commands", lambda: {"serve": ep})
    assert cli.main(["serve", "--port", "1234"]) == 0
    assert seen == [["--port", "1234"]]
    assert cli.main(["--help"]) == 0
    assert "{solve,plot,serve}" in capsys.readouterr().out


def test_wedgenet_serve_without_the_service_says_which_extra(monkeypatch, capsys) -> None:
    """Library-only install: no entry point, or one whose module cannot be imported."""
    from importlib.metadata import EntryPoint

    import wedgenet.cli as cli

    monkeypatch.setattr(cli, "plugin_commands", lambda: {})
    assert cli.main(["serve"]) == 2
    assert "pip install 'wedgenet[service]'" in capsys.readouterr().err
    broken = EntryPoint("serve", "no_such_service_module.cli:serve_main", cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "plugin_commands", lambda: {"serve": broken})
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "needs the service extra" in err and "no_such_service_module" in err


def test_serve_without_service_dependencies_says_what_is_missing(monkeypatch, capsys) -> None:
    import app.cli

    monkeypatch.setattr(app.cli, "missing_service_modules", lambda: ["fastapi", "uvicorn"])
    assert app.cli.serve_main(["--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "wedgenet[service]" in err and "fastapi, uvicorn" in err


def test_python_m_app_usage(capsys) -> None:
    from app.cli import main

    assert main([]) == 2
    assert "python -m app serve" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0

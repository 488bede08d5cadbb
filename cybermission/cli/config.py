"""``cybermission config env-example``: every setting with its default, from the settings."""

import typer

from cybermission.cli.runtime import command_group

app = command_group("The settings.")


@app.command("env-example")
def env_example() -> None:
    """Print the env example (deploy/cybermission.env.example is this output)."""
    from cybermission.config_example import render_env_example

    typer.echo(render_env_example(), nl=False)

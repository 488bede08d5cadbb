"""``cybermission db upgrade``: apply the migrations (other commands only check the revision)."""

from cybermission.cli.runtime import command_group, err, open_store, start, store_location

app = command_group("The store.")


@app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to the configured database."""
    settings = start()
    open_store(settings, migrate=True).dispose()
    err().print(f"database at head: {store_location(settings)}")
